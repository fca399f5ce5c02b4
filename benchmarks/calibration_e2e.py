#!/usr/bin/env python
"""Calibration and power through the real group level: ``latentbids group`` on simulated cohorts.

The estimator-level calibration (``calibration.py``) analyses a linear-autoencoder stand-in; this one runs the
command users run, autoencoder, confounds, claims list and headline included (METHOD.md section 9):

* ``--null-runs N``: N null cohorts (``latentbids-simulate --gm-only --group-ready`` at 4 mm, no planted effect,
  labels drawn at random afterwards, so no label can be true), cycling over 40 and 100 subjects per group,
  balanced and 70/30 classes, and 3 labels (3 contrasts, for the report-wide rate).  One run is one replication
  of every family: a false positive is any supported claim about a contrast; the headline's report-wide false
  positive is a headline claim about any contrast.
* ``--power-runs N --losses 8 18``: N cohorts per loss with the loss planted in ``--regions`` (default
  Hippocampus_L/R and ParaHippocampal_L/R), 60 per group: which planted regions each family finds, and which
  other regions.

The network is the demo's (``scripts/demo.toml``: channels 4-8-16-32, K = 16, 3 folds, probability maps) with
``--epochs`` epochs; every analysis setting of the contrast families is the default but ``n_permutations =
200`` (the size of a permutation test does not depend on it, only its resolution), and the label-free SHAP
surrogates are made cheap (50 trees, 19 permutations).  ``--write-package-data`` adds the null rates
(key ``end_to_end``) and the power check (``end_to_end_power``) to ``latentbids/data/calibration.json``.

Commands (also in BENCHMARKS.md)::

    .venv/bin/python benchmarks/calibration_e2e.py --null-runs 60 --out benchmarks/results/e2e_null.tsv
    .venv/bin/python benchmarks/calibration_e2e.py --power-runs 10 --losses 8 18 --out benchmarks/results/e2e_power.tsv
    .venv/bin/python benchmarks/calibration_e2e.py --summarize benchmarks/results/e2e_null.tsv \
        benchmarks/results/e2e_power.tsv --write-package-data
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentbids import calibration as cal  # noqa: E402
from latentbids.analysis.claims import ClaimsList  # noqa: E402
from latentbids.analysis.headline import contrast_headline  # noqa: E402

BIN = Path(os.environ.get("LATENTBIDS_BIN") or Path(sys.executable).parent)  # where latentbids(-simulate) live
GRID = "MNI152NLin2009aSym:res-nilearn4"
#: the contrast families: a supported claim of one of these on a label null is a false positive
CONTRAST_FAMILIES = ("unit", "region", "lrcp", "sam", "latent_vector", "vector_bound", "rub")
#: the null designs cycled over: (subjects per group, labels, share of the first label)
NULL_DESIGNS = ((40, ("CN", "AD"), 0.5), (100, ("CN", "AD"), 0.5), (40, ("CN", "AD"), 0.7), (100, ("CN", "AD"), 0.7),
                (40, ("CN", "MCI", "AD"), None), (100, ("CN", "MCI", "AD"), None))


def _config(folder: Path, epochs: int) -> Path:
    """The demo network; the analysis at its defaults except two costs: 200 label permutations instead of 1000
    (the size of a permutation test does not depend on their number, only the resolution of its p) and the SHAP
    surrogates (label-free, so a label null does not measure them), to keep a run to minutes."""
    text = (f'[model]\nchannels = [4, 8, 16, 32]\nlatent_dim = 16\ninput_map = "probseg"\nmax_epochs = {epochs}\n'
            'n_folds = 3\n[analysis]\nn_permutations = 200\nshap_n_estimators = 50\nshap_permutations = 19\n')
    path = folder / "e2e.toml"
    path.write_text(text)
    return path


def _simulate(root: Path, n: int, seed: int, effect: str | None, extra=()) -> None:
    cmd = [str(BIN / "latentbids-simulate"), str(root), "--n-subjects", str(n), "--seed", str(seed), "--gm-only",
           "--group-ready", "--resolution", "4", *extra]
    if effect:
        cmd += ["--effect", effect]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _relabel(root: Path, labels: tuple, share, rng) -> None:
    """Null labels: drawn at random after simulation, so they are unrelated to every map."""
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    n = len(table)
    if share is None:
        y = np.array([labels[i % len(labels)] for i in range(n)], dtype=object)
    else:
        y = np.array([labels[0]] * int(round(share * n)) + [labels[1]] * (n - int(round(share * n))), dtype=object)
    table["group"] = y[rng.permutation(n)]
    table.to_csv(root / "participants.tsv", sep="\t", index=False)


def _group(root: Path, work: Path, config: Path, nprocs: int, extra=()) -> tuple[dict, float]:
    out = root / "derivatives" / "latentbids"
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "latentbids"), str(root), str(out), "group", "-w", str(work),
                           "--skip-bids-validation", "--output-spaces", GRID, "--config-file", str(config),
                           "--nprocs", str(nprocs), *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"latentbids group exited {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(next((out / "group").glob("*/analysis.json")).read_text()), seconds


def null_row(analysis: dict, eta: float) -> dict:
    """Per family: did the run support any claim about a contrast?  And did the headline name one?"""
    claims = ClaimsList.from_json(analysis["Claims"])
    contrasts = [c.replace(":", " vs ") for c in analysis["Contrasts"]]
    row = {f: any(c.supported and c.contrast for c in claims.select(f)) for f in CONTRAST_FAMILIES}
    level = eta / max(len(contrasts), 1)
    row["headline"] = any(contrast_headline(claims, name, level, eta) for name in contrasts)
    row["any_family"] = any(row[f] for f in CONTRAST_FAMILIES)
    row["failures"] = len(analysis.get("Failures") or {})
    return row


def power_row(analysis: dict, regions) -> dict:
    claims = ClaimsList.from_json(analysis["Claims"])
    planted = set(regions)
    row = {}
    for f in ("region", "lrcp", "sam"):
        hit = set(claims.supported_items(f))
        row[f"{f}_planted"], row[f"{f}_other"] = len(hit & planted), len(hit - planted)
    row["unit"] = bool(claims.select("unit", supported=True))
    row["latent_vector"] = bool(claims.select("latent_vector", supported=True))
    row["lrcp_regions"] = ", ".join(claims.supported_items("lrcp"))
    return row


def _stem(config: Path) -> str:
    """The network ends the runs train (the demo config's ``[model] stem``, else the default)."""
    import tomllib

    from latentbids.config import ModelConfig

    return str(tomllib.loads(Path(config).read_text()).get("model", {}).get("stem", ModelConfig().stem))


def run(args) -> pd.DataFrame:
    rows, rng = [], np.random.default_rng(args.seed if not args.first_run else [args.seed, args.first_run])
    scratch = Path(tempfile.mkdtemp(prefix="latentbids-e2e-", dir=args.scratch))
    config = _config(scratch, args.epochs)
    first = args.first_run
    jobs = [("null", i, *NULL_DESIGNS[i % len(NULL_DESIGNS)], 0) for i in range(first, first + args.null_runs)]
    jobs += [("power", i, 60, ("CN", "AD"), 0.5, loss) for loss in args.losses
             for i in range(first, first + args.power_runs)]
    for kind, i, per_group, labels, share, loss in jobs:
        root, work = scratch / f"{kind}{i}-{loss}", scratch / "work"
        seed = args.seed + 1000 * i + loss
        effect = f"{','.join(args.regions)}:{loss}" if kind == "power" else None
        _simulate(root, per_group * len(labels), seed, effect)
        if kind == "null":
            _relabel(root, labels, share, rng)
        analysis, seconds = _group(root, work, config, args.nprocs)
        row = {"kind": kind, "run": i, "stem": _stem(config), "n_per_group": per_group, "labels": len(labels),
               "regions": " ".join(args.regions),
               "balance": "3 labels" if share is None else f"{round(share * 100)}/{round((1 - share) * 100)}",
               "loss": loss, "seed": seed, "seconds": round(seconds, 1),
               **(null_row(analysis, args.eta) if kind == "null" else power_row(analysis, args.regions))}
        rows.append(row)
        print(json.dumps(row), flush=True)
        pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)  # kept after every run: a long sweep
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, eta: float) -> dict:
    out = {}
    null = table[table["kind"] == "null"]
    if len(null):
        def rate(part, f):
            k, n = int(part[f].astype(bool).sum()), len(part)
            lo, hi = cal.wilson(k, n)
            return {"replications": n, "false_positives": k, "rate": k / n, "lo": lo, "hi": hi}

        # a family's promise is per contrast: its rate over the 2-label runs (one contrast each); with 3 labels a
        # family may err in any of 3 contrasts (up to 3 eta), which only the headline's hierarchy bounds by eta
        two, three = null[null["labels"] == 2], null[null["labels"] == 3]
        fams = {f: rate(two, f) for f in CONTRAST_FAMILIES}
        fams.update(headline=rate(null, "headline"), any_family=rate(null, "any_family"))
        out["end_to_end"] = {
            "families": fams, "eta": eta, "runs": len(null),
            "families_3_labels": {f: rate(three, f) for f in (*CONTRAST_FAMILIES, "headline")},
            "rates": "contrast families: 2-label runs (one contrast each); headline and any_family: every run",
            "designs": sorted(set(f"{r.n_per_group}/group, {r.balance}" for r in null.itertuples())),
            "seconds_per_run": float(null["seconds"].median()),
            "network": "demo network (channels 4-8-16-32, K = 16, 3 folds, probability maps) on the 4 mm grid, "
                       + _stems_text(null),
        }
    power = table[table["kind"] == "power"]
    if len(power):
        out["end_to_end_power"] = {  # one entry per planted region set and loss
            f"{regions}: {int(loss)} %": {"runs": len(part), "n_per_group": 60, "regions": str(regions),
                                          "loss": int(loss),
                             "lrcp_planted_mean": float(part["lrcp_planted"].mean()),
                             "lrcp_at_least_2": int((part["lrcp_planted"] >= 2).sum()),
                             "lrcp_other_runs": int((part["lrcp_other"] > 0).sum()),
                             "region_planted_mean": float(part["region_planted"].mean()),
                             "region_other_runs": int((part["region_other"] > 0).sum()),
                             "sam_planted_mean": float(part["sam_planted"].mean()),
                             "unit_runs": int(part["unit"].astype(bool).sum()),
                             "latent_vector_runs": int(part["latent_vector"].astype(bool).sum())}
            for (regions, loss), part in power.groupby(["regions", "loss"])}
    return out


def _stems_text(part: pd.DataFrame) -> str:
    """Which network ends the runs trained, by run count (tables written before the column existed: conv)."""
    stems = part["stem"].fillna("conv") if "stem" in part else pd.Series(["conv"] * len(part))
    counts = stems.replace("", "conv").value_counts()
    return "; ".join(f"{stem} ends in {n} run(s)" for stem, n in counts.items())


def _commands(args) -> list[str]:
    """The commands that measured the tables: this run's, or for ``--summarize`` what each table's ``.command``
    file (written next to it) records."""
    if not args.summarize:
        return ["python benchmarks/calibration_e2e.py " + " ".join(sys.argv[1:])]
    return [cal.command_of(t, str(t)) for t in args.summarize]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--null-runs", type=int, default=0)
    p.add_argument("--power-runs", type=int, default=0)
    p.add_argument("--losses", type=int, nargs="+", default=[8, 18])
    p.add_argument("--regions", nargs="+", default=list(cal.PLANTED_NAMES), help="AAL regions of the planted loss")
    p.add_argument("--epochs", type=int, default=40, help="max_epochs of the demo network")
    p.add_argument("--eta", type=float, default=0.05)
    p.add_argument("--nprocs", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--seed", type=int, default=20261207)
    p.add_argument("--first-run", type=int, default=0,
                   help="number of the first run: a sweep continued with new cohorts (seeds follow the run number)")
    p.add_argument("--scratch", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "calibration_e2e.tsv")
    p.add_argument("--summarize", type=Path, nargs="+", metavar="TSV")
    p.add_argument("--write-package-data", action="store_true")
    args = p.parse_args(argv)
    if args.summarize:
        table = pd.concat([pd.read_csv(t, sep="\t", keep_default_na=False, na_values=[""]) for t in args.summarize],
                          ignore_index=True)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        print(f"end-to-end calibration on {cal.machine()}: {args.null_runs} null run(s), {args.power_runs} power "
              f"run(s) per loss {args.losses}, {args.epochs} epochs", flush=True)
        t0 = time.perf_counter()
        table = run(args)
        args.out.with_suffix(".command").write_text(
            f"{_commands(args)[0]}  # {cal.machine()}, {time.perf_counter() - t0:.0f} s\n")
    result = summary(table, args.eta)
    print(json.dumps(result, indent=1))
    if args.write_package_data:
        target = ROOT / "latentbids" / "data" / "calibration.json"
        data = json.loads(target.read_text())
        data.update(result)
        data["end_to_end_command"] = _commands(args)
        target.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
