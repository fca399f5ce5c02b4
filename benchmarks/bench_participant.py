"""Participant-level timing per step, default vs ``--sloppy`` settings, on real IXI scans.

Runs the pure functions of ``latentbids.anat`` (the same ones the Nipype nodes call) on one or more
ds-ixi10 subjects and prints seconds per step, the total, the sloppy/default ratio, and the GM Dice
against DLMUSE where it exists.  Usage::

    .venv/bin/python benchmarks/bench_participant.py [--subjects IXI012 IXI014] [--threads 2]

Results go into BENCHMARKS.md ("Participant level").
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
IXI = (REPO / ".." / "shared" / "data" / "ds-ixi10").resolve()



def settings(sloppy: bool) -> dict:
    """The step settings the participant workflow uses with and without ``--sloppy``."""
    from latentbids.config import RunConfig
    from latentbids.workflows.participant import anat_settings

    cfg = RunConfig()
    cfg.execution.sloppy = sloppy
    s = anat_settings(cfg)
    return dict(brain=s.brain_extraction, transform=s.registration, n4=s.n4_iterations,
                atropos_iter=s.atropos_iterations, prior_weight=s.prior_weight, mrf=s.mrf)


def run_one(sub: str, setting: dict, tpl: dict, work: Path, threads: int) -> tuple[dict, float | None]:
    from latentbids.anat import measures, preprocess as pp, registration as rg, segmentation as sg

    t1 = IXI / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
    times: dict[str, float] = {}

    def step(name, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        times[name] = time.perf_counter() - t
        return out

    ras = step("reorient", pp.reorient_to_ras, t1, work / "ras.nii.gz")
    n4 = step("n4", pp.n4_bias_correct, ras, work / "n4.nii.gz", iterations=setting["n4"], nthreads=threads)
    if setting["brain"] == "hdbet":
        mask = step("brain_extraction", pp.hdbet_brain_mask, n4, work / "mask.nii.gz", nthreads=threads)
    else:
        mask = step("brain_extraction", pp.template_brain_mask, n4, work / "mask.nii.gz", tpl["t1w"],
                    tpl["mask"], nthreads=threads)
    brain = pp.apply_mask(n4, mask, work / "brain.nii.gz")
    reg = step("register", rg.register_to_template, brain, tpl["t1w"], work, transform=setting["transform"],
               nthreads=threads)
    priors = step("warp_priors", lambda: [rg.apply_transform(tpl[k], n4, [reg["inverse"]], work / f"p_{k}.nii.gz",
                                                             nthreads=threads) for k in ("csf", "gm", "wm")])
    seg = step("atropos", sg.atropos_segment, n4, mask, priors, work, iterations=setting["atropos_iter"],
               prior_weight=setting["prior_weight"], mrf=setting["mrf"], nthreads=threads)

    def to_template():
        g = rg.apply_transform(seg["GM"], tpl["t1w"], [reg["forward"]], work / "g.nii.gz", nthreads=threads)
        j = rg.jacobian_determinant(reg["forward"], tpl["t1w"], work / "j.nii.gz", nthreads=threads)
        return measures.modulate(g, j, work / "m.nii.gz")

    step("to_template", to_template)
    times["total"] = sum(times.values())
    dl = IXI / "derivatives" / "dlmuse" / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-dlmuse_dseg.nii.gz"
    score = None
    if dl.is_file():
        labels = json.loads((IXI / "derivatives" / "dlmuse" / "dataset_description.json").read_text())
        ref = np.isin(np.asarray(nib.as_closest_canonical(nib.load(str(dl))).dataobj), labels["GrayMatterLabels"])
        score = measures.dice(np.asarray(nib.load(seg["GM"]).dataobj) > 0.5, ref)
    return times, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", nargs="+", default=["IXI012"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    from latentbids.resources import get_template

    template = get_template("MNI152NLin2009aSym", 2)
    with tempfile.TemporaryDirectory() as tmp:
        tpl = {}
        for key in ("t1w", "mask", "csf", "gm", "wm"):
            tpl[key] = str(Path(tmp) / f"tpl_{key}.nii.gz")
            nib.save(getattr(template, key), tpl[key])
        results = {}
        for name, setting in (("default", settings(False)), ("sloppy", settings(True))):
            for sub in args.subjects:
                work = Path(tmp) / f"{name}_{sub}"
                work.mkdir()
                results[(name, sub)] = run_one(sub, setting, tpl, work, args.threads)
    steps = list(next(iter(results.values()))[0])
    print(f"threads={args.threads} cpu_count={os.cpu_count()}")
    print(f"{'setting':8s} {'subject':8s} " + " ".join(f"{s:>16s}" for s in steps) + "   dice")
    for (name, sub), (times, score) in results.items():
        d = f"{score:.3f}" if score is not None else "  n/a"
        print(f"{name:8s} {sub:8s} " + " ".join(f"{times[s]:16.1f}" for s in steps) + f"   {d}")
    for sub in args.subjects:
        ratio = results[("sloppy", sub)][0]["total"] / results[("default", sub)][0]["total"]
        print(f"sloppy/default total time, sub-{sub}: {ratio:.2f}")


if __name__ == "__main__":
    main()
