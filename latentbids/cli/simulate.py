"""``latentbids-simulate``: write a ground-truth cohort as a BIDS dataset.

    latentbids-simulate OUT_DIR --n-subjects N --seed S [--effect REGION[,REGION]:PERCENT ...]
        [--effect blob:X,Y,Z,RADIUS_MM:PERCENT ...] [--effect-atlas AAL|AAL3|HCPEx|PATH]

Raw mode (default) writes T1w head scans plus ``derivatives/truth`` (each subject's true GM map on
the template grid); ``--gm-only`` writes only the GM maps as a derivative dataset (sMRIPrep naming,
readable with ``latentbids -d``).  Region effects name regions of ``--effect-atlas`` (AAL by
default); a blob is a hard-edged sphere around an MNI point.  ``simulation.json`` records, per
planted effect, the regions of AAL, AAL3 and HCPEx that hold its loss (``PlantedEffectsOverlap``).
User errors print one line and return 64.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from latentbids import __version__
from latentbids.errors import EXIT_FAILURE, EXIT_OK, LatentbidsError, UsageError

LOG = logging.getLogger("latentbids.simulate")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are UsageErrors (exit 64) instead of argparse's exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see 'latentbids-simulate --help')")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="latentbids-simulate",
        description="Simulate a ground-truth cohort (T1w scans or GM maps) with planted GM loss in "
        "atlas regions (AAL by default, or AAL3, HCPEx, a label NIfTI) or in spheres, from the MNI152 "
        "2009a template. simulation.json records each planted effect and, for AAL, AAL3 and HCPEx, "
        "the regions holding at least 5 % of its GM loss with their shares (PlantedEffectsOverlap).",
        epilog="Examples: latentbids-simulate sim --n-subjects 20 --seed 1 "
        "--effect Hippocampus_L,Hippocampus_R:20 --effect Precuneus_L:10; "
        "latentbids-simulate sim2 --n-subjects 20 --seed 1 --effect-atlas AAL3 --effect ACC_sub_L:20 "
        "--effect blob:-54,-6,28,8:15",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to create (a BIDS dataset)")
    p.add_argument("--n-subjects", "--n_subjects", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, required=True, metavar="S", help="master random seed")
    p.add_argument("--groups", default="CN,AD", metavar="G1,G2[,...]",
                   help="groups from healthy to most affected, assigned cyclically; mean severity "
                   "0 for the first, 1 for the last, evenly spaced between (NAME:SEV sets one); "
                   "default CN,AD (try CN,MCI,AD)")
    p.add_argument("--effect", action="append", default=[], metavar="REGION[,REGION]:PERCENT",
                   help="GM loss of PERCENT %% (0-100, at severity 1) in regions of --effect-atlas, "
                   "e.g. Hippocampus_L,Hippocampus_R:20, or in a hard-edged sphere: "
                   "blob:X,Y,Z,RADIUS_MM:PERCENT removes PERCENT %% of the GM of every template voxel "
                   "within RADIUS_MM (> 0) of the MNI point X,Y,Z mm (e.g. blob:-54,-6,28,8:15 "
                   "straddles AAL's Precentral_L and Postcentral_L; voxels without GM lose nothing); "
                   "where effects overlap their losses multiply; repeatable; default: no effect")
    p.add_argument("--effect-atlas", default="AAL", metavar="ATLAS",
                   help="the atlas whose region names --effect uses: AAL (default, 116 regions), AAL3 "
                   "(170), HCPEx (426), all shipped, or a path to an integer-label NIfTI in MNI space "
                   "with an index<TAB>name TSV beside it")
    p.add_argument("--severity-spread", type=float, default=0.5, metavar="F",
                   help="individual severity = group mean * U(1-F, 1+F) (default 0.5)")
    p.add_argument("--age-range", type=float, nargs=2, default=(60.0, 85.0), metavar=("MIN", "MAX"),
                   help="uniform age range in years (default 60 85)")
    p.add_argument("--age-effect", type=float, default=0.0, metavar="PCT",
                   help="global GM loss in %% per decade above MIN age (default 0 = off)")
    p.add_argument("--tiv-confound", type=float, nargs="?", const=0.1, default=0.0, metavar="F",
                   help="make the effect correlate with TIV: TIV shrinks by F*severity "
                   "(flag alone: 0.1; default 0 = off)")
    p.add_argument("--deformation", type=float, default=3.0, metavar="MM",
                   help="RMS of the smooth nonlinear deformation in mm (default 3)")
    p.add_argument("--gm-variability", type=float, default=0.05, metavar="F",
                   help="SD of the smooth individual GM modulation (default 0.05)")
    p.add_argument("--noise-scale", type=float, default=1.0, metavar="F",
                   help="multiplies the random T1w noise level (default 1)")
    p.add_argument("--resolution", type=float, default=2.0, metavar="MM",
                   help="template grid of the GM maps, and T1w voxel size unless "
                   "--voxel-size (default 2)")
    p.add_argument("--voxel-size", type=float, default=None, metavar="MM",
                   help="T1w voxel size in mm")
    p.add_argument("--gm-only", action="store_true",
                   help="write a derivative dataset of GM maps on the template grid instead "
                   "of T1w scans")
    p.add_argument("--group-ready", action="store_true",
                   help="also place the true GM maps where the participant level writes them "
                   "(OUT_DIR/derivatives/latentbids), so that 'latentbids OUT_DIR "
                   "OUT_DIR/derivatives/latentbids group --skip-bids-validation --output-spaces "
                   "MNI152NLin2009aSym:res-<grid>' trains on them without the participant level")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT_DIR if it holds an earlier latentbids-simulate output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log each subject")
    p.add_argument("--version", action="version", version=f"latentbids-simulate {__version__}")
    return p


def _setup_logging(verbose: int) -> None:
    logger = logging.getLogger("latentbids")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)
    LOG.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the exit code (0 ok, 64 usage error, 1 failure)."""
    _setup_logging(0)
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args.verbose)
        from latentbids.simulate.cohort import simulate_cohort

        start = time.perf_counter()
        table = simulate_cohort(
            args.out_dir,
            args.n_subjects,
            args.seed,
            effects=args.effect,
            groups=args.groups,
            atlas=args.effect_atlas,
            gm_only=args.gm_only,
            resolution=args.resolution,
            overwrite=args.overwrite,
            group_ready=args.group_ready,
            voxel_size=args.voxel_size,
            severity_spread=args.severity_spread,
            age_range=tuple(args.age_range),
            age_effect=args.age_effect,
            tiv_confound=args.tiv_confound,
            deformation_mm=args.deformation,
            gm_variability=args.gm_variability,
            noise_scale=args.noise_scale,
        )
        counts = table["group"].value_counts().to_dict()
        kind = "GM maps" if args.gm_only else "T1w scans"
        print(
            f"latentbids-simulate: {len(table)} subjects "
            f"({', '.join(f'{k} {v}' for k, v in counts.items())}) "
            f"as {kind} in {args.out_dir} ({time.perf_counter() - start:.1f} s)"
        )
        return EXIT_OK
    except LatentbidsError as exc:
        print(f"latentbids-simulate: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("latentbids-simulate: interrupted; OUT_DIR was not created", file=sys.stderr)
        return 130
    except MemoryError:
        print("latentbids-simulate: error: out of memory; lower --resolution/--voxel-size",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
