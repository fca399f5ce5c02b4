#!/usr/bin/env python
"""Does the space-to-depth stem keep what the conv stem reconstructs and what LRCP finds?

One simulated cohort with a known truth (``latentbids.simulate``: GM maps on the 4 mm MNI grid, CN
and AD, GM loss planted in four AAL regions), one stratified k-fold split, and for every stem the
same training (same settings, seeds, batches) on each fold, then what the group level reads:

* ``val_loss``: the best validation loss (masked MSE of the early-stopping subset), mean over folds;
* ``test_loss``: the mean masked MSE of the held-out subjects, each encoded by its fold's model;
* LRCP on every map encoded by every fold's model (as the group analysis runs it, see
  :mod:`latentbids.workflows.group.analysis.contrast`), against the regional mean GM of the input maps:
  ``recall`` = planted regions that are LRCP-positive / planted regions, ``false_positives`` =
  LRCP-positive regions that were not planted, and ``top_recall`` = planted regions among the
  top-ranked ``len(planted)`` regions of the consensus ranking (a graded measure that moves before
  the verdict does);
* training throughput (volumes/s of the steady epochs) on this machine.

The default stem may change only when the new stem's numbers are within the tolerances of
:func:`quality_holds` of the old stem's, at equal epochs or, written ``NAME@EPOCHS``, at the epochs
the old stem's training time buys (BENCHMARKS.md has both)::

    python benchmarks/stem_quality.py --n-subjects 40 --folds 2 --epochs 20 --latent 32 --threads 2 \
        --stems conv patch patch@60                    # the default network: validation loss
    python benchmarks/stem_quality.py --n-subjects 120 --folds 3 --epochs 40 --channels 4 8 16 32 --latent 16 \
        --regions Temporal_Inf_L,Temporal_Inf_R,Insula_L,Insula_R --percent 8 --stems conv patch
                                                       # the demo's network, 60 per group: LRCP recall
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass

import numpy as np

PLANTED = ("Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Amygdala_R")

#: the tolerances a new stem must meet against the old one to become the default
VAL_LOSS_RATIO_MAX = 1.10  # best validation loss at most 10 % above the conv stem's
RECALL_DROP_MAX = 0.0  # LRCP must find every planted region the conv stem finds (no recall lost)
FALSE_POSITIVES_MAX = 0  # ... and no region that was not planted


@dataclass
class PlantedCohort:
    """GM maps on the network's box with the truth of their simulation."""

    data: np.ndarray  # (N, X, Y, Z) float32, GM probability
    mask: np.ndarray  # (X, Y, Z) float32 loss mask (template brain mask united with the atlas)
    atlas: np.ndarray  # (X, Y, Z) int atlas labels on the box
    region_index: np.ndarray  # (J,) atlas labels with voxels on the box
    region_names: list
    planted: list  # names of the planted regions
    records: "object"  # pandas DataFrame: participant_id, group (CN | AD), severity
    resolution: float


def planted_cohort(n_subjects=40, seed=3, percent=18.0, resolution=4.0, regions=PLANTED,
                   gm_variability=None) -> PlantedCohort:
    """Simulate ``n_subjects`` GM maps (CN and AD alternating) with ``percent`` % GM loss in
    ``regions`` at AD severity, fitted to the network's box as the group level fits them."""
    import pandas as pd

    from latentbids.model.grid import fit_grid
    from latentbids.simulate.anatomy import head_model
    from latentbids.simulate.cohort import build_spec, simulate_subject
    from latentbids.simulate.effects import get_atlas_grid

    options = {} if gm_variability is None else {"gm_variability": float(gm_variability)}
    spec = build_spec(int(n_subjects), int(seed), effects=[f"{','.join(regions)}:{percent:g}"],
                      gm_only=True, resolution=float(resolution), **options)
    head = head_model(float(resolution), spec.space)
    atlas = get_atlas_grid(head, spec.atlas)
    mask = (np.asarray(head.mask) > 0) | (atlas.labels > 0)
    fit = fit_grid(mask, levels=4)
    subjects = [simulate_subject(spec, i) for i in range(1, int(n_subjects) + 1)]
    data = fit.crop(np.stack([s.gm for s in subjects]).astype(np.float32))
    atlas_box = fit.crop(atlas.labels.astype(np.int32))
    present = np.unique(atlas_box[atlas_box > 0])
    names = {label: name for name, label in atlas.index.items()}
    records = pd.DataFrame([s.row for s in subjects])[["participant_id", "group", "severity"]]
    return PlantedCohort(
        data=np.ascontiguousarray(data), mask=fit.crop(mask.astype(np.float32)), atlas=atlas_box,
        region_index=present, region_names=[names[int(i)] for i in present], planted=list(regions),
        records=records, resolution=float(resolution),
    )


def regional_means(data: np.ndarray, atlas: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Mean GM of every region (columns in ``index`` order) of every map: ``(N, J)``."""
    from latentbids.utils.regions import region_means

    return region_means(data, atlas, index)[0]


def compare_stems(cohort: PlantedCohort, stems=("conv", "space_to_depth"), *, folds=2, epochs=12,
                  channels=(16, 32, 64, 128), latent=16, batch=8, learning_rate=1e-3, seed=7,
                  n_permutations=200, deterministic=True) -> dict:
    """Train every stem on the same folds; return ``{stem: metrics}`` (see the module docstring).

    A stem may be written ``name@E`` to train it ``E`` epochs instead of ``epochs`` (a comparison at
    equal training time: the faster network gets the epochs the slower one's time buys)."""
    import torch

    from latentbids.analysis.lrcp import LRCP
    from latentbids.model.encoding import encode_all
    from latentbids.model.splits import make_splits
    from latentbids.model.training import TrainSettings, train_autoencoder

    records = cohort.records
    splits = make_splits(records, n_folds=int(folds), seed=int(seed))
    y = (records["group"] == "AD").to_numpy(int)
    G = regional_means(cohort.data, cohort.atlas, cohort.region_index)
    rows = np.arange(len(records))
    results = {}
    for label in stems:
        stem, _, own = label.partition("@")
        n_epochs = int(own or epochs)
        settings = TrainSettings(latent_dim=int(latent), channels=tuple(channels), batch_size=int(batch),
                                 max_epochs=n_epochs, patience=n_epochs + 1, seed=int(seed),
                                 learning_rate=float(learning_rate), deterministic=deterministic, stem=stem)
        Z, val, test, speed, seconds = {}, [], [], [], 0.0
        for fold, part in splits.groupby("fold", sort=False):
            role = dict(zip(part["participant_id"], part["role"]))
            fold_roles = records["participant_id"].map(role).to_numpy()
            pick = {r: rows[fold_roles == r] for r in ("train", "validation", "test")}
            t0 = time.perf_counter()
            res = train_autoencoder(cohort.data, cohort.mask, pick["train"], pick["validation"], settings, "cpu")
            seconds += time.perf_counter() - t0
            steady = res.history.iloc[1:] if len(res.history) > 1 else res.history
            speed.append(len(pick["train"]) * len(steady) / float(steady["seconds"].sum()))
            z, e = encode_all(res.model, cohort.data, rows, cohort.mask, "cpu", batch_size=int(batch))
            Z[str(fold)] = z
            val.append(res.best_val_loss)
            test.append(float(e[pick["test"]].mean()))
        lrcp = LRCP(n_permutations=int(n_permutations), random_state=int(seed)).fit(
            Z, G, y, region_index=cohort.region_index, region_names=cohort.region_names)
        cons = lrcp.consensus_
        positive = set(cons.loc[cons["lrcp_positive"], "region"])
        top = list(cons.sort_values("rank")["region"].head(len(cohort.planted)))
        planted = set(cohort.planted)
        results[label] = {
            "epochs": n_epochs,
            "val_loss": float(np.mean(val)),
            "test_loss": float(np.mean(test)),
            "recall": len(positive & planted) / len(planted),
            "false_positives": len(positive - planted),
            "top_recall": len(set(top) & planted) / len(planted),
            "units_relevant": int(lrcp.summary_["n_units_relevant"]),
            "train_vol_s": float(np.mean(speed)),
            "seconds": seconds,
            "n_parameters": int(sum(p.numel() for p in res.model.parameters())),
            "threads": torch.get_num_threads(),
        }
    return results


def quality_holds(new: dict, old: dict) -> tuple[bool, list]:
    """Whether ``new`` (a stem's metrics) is within the tolerances of ``old``; the reasons if not."""
    reasons = []
    if new["val_loss"] > VAL_LOSS_RATIO_MAX * old["val_loss"]:
        reasons.append(f"validation loss {new['val_loss']:.3g} > {VAL_LOSS_RATIO_MAX:g} x {old['val_loss']:.3g}")
    if new["recall"] < old["recall"] - RECALL_DROP_MAX:
        reasons.append(f"LRCP recall {new['recall']:.2f} < {old['recall']:.2f}")
    if new["false_positives"] > max(FALSE_POSITIVES_MAX, old["false_positives"]):
        reasons.append(f"{new['false_positives']} LRCP-positive regions that were not planted")
    return not reasons, reasons


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-subjects", type=int, default=40)
    parser.add_argument("--seed", type=int, default=3, help="simulation seed")
    parser.add_argument("--percent", type=float, default=18.0, help="planted GM loss at AD severity")
    parser.add_argument("--regions", default=",".join(PLANTED), help="planted AAL regions, comma-separated")
    parser.add_argument("--gm-variability", type=float, default=None,
                        help="SD of the individual GM modulation (default: the simulator's)")
    parser.add_argument("--stems", nargs="+", default=["conv", "space_to_depth"],
                        help="stems to compare, NAME or NAME@EPOCHS; the first is the reference the others "
                             "must hold against")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cohort = planted_cohort(args.n_subjects, args.seed, args.percent, regions=tuple(args.regions.split(",")),
                            gm_variability=args.gm_variability)
    print(f"# stem_quality: {args.n_subjects} simulated subjects (seed {args.seed}, {args.percent:g} % GM loss in "
          f"{', '.join(cohort.planted)} at AD severity), box {cohort.data.shape[1:]} at {cohort.resolution:g} mm, "
          f"{len(cohort.region_index)} regions; built in {time.perf_counter() - t0:.1f} s")
    print(f"# {args.folds} folds, {args.epochs} epochs, channels {args.channels}, K {args.latent}, batch {args.batch}, "
          f"lr {args.lr:g}, LRCP {args.permutations} permutations; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f}")
    res = compare_stems(cohort, stems=tuple(args.stems), folds=args.folds, epochs=args.epochs, channels=args.channels,
                        latent=args.latent, batch=args.batch, learning_rate=args.lr, n_permutations=args.permutations)
    cols = ("epochs", "val_loss", "test_loss", "recall", "false_positives", "top_recall", "units_relevant",
            "train_vol_s", "seconds", "n_parameters")
    print("| stem | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for stem, r in res.items():
        print(f"| {stem} | " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    ref = args.stems[0]
    for stem in args.stems[1:]:
        ok, reasons = quality_holds(res[stem], res[ref])
        print(f"# {stem} vs {ref}: val loss x{res[stem]['val_loss'] / res[ref]['val_loss']:.3f}, training "
              f"x{res[stem]['train_vol_s'] / res[ref]['train_vol_s']:.2f} faster; quality "
              f"{'holds' if ok else 'does NOT hold: ' + '; '.join(reasons)}")
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    return res


if __name__ == "__main__":
    main()
