"""The atlas caution on null cohorts: how often any atlas supports a regional claim where nothing is planted.

Runs :func:`atlas_caution.run_shape` ("no effect") for seeds ``--first`` .. ``--first + --n-seeds - 1`` and counts
the cohorts where the primary atlas (AAL, at eta), a sensitivity atlas (AAL3 or HCPEx, each at eta / 2) or any
atlas supports a claim of the region family.  The primary's rate should stay at or below eta; the sensitivity
atlases together at or below eta (their shared budget).

    python benchmarks/atlas_caution_null.py --first 10 --n-seeds 30
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atlas_caution as ac  # noqa: E402


def main(argv=None) -> int:
    from latentbids.calibration.families import machine, wilson

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--first", type=int, default=10)
    p.add_argument("--n-seeds", type=int, default=30)
    p.add_argument("--n", type=int, default=60, help="subjects per group")
    args = p.parse_args(argv)
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first, args.first + args.n_seeds):
            res = ac.run_shape("no effect", args.n, 8.0, seed, 999, 0.05, Path(tmp))
            counts[seed] = {a: len(v) for a, v in res["supported"].items()}
            print(seed, counts[seed], flush=True)
    n = len(counts)
    rows = {"primary (AAL, eta)": sum(v["AAL"] > 0 for v in counts.values()),
            "sensitivity (AAL3 or HCPEx, eta/2 each)": sum(v["AAL3"] > 0 or v["HCPEx"] > 0 for v in counts.values()),
            "any atlas": sum(any(x > 0 for x in v.values()) for v in counts.values())}
    print(f"# {n} null cohorts, {args.n} per group; {machine()}")
    for name, k in rows.items():
        lo, hi = wilson(k, n)
        print(f"{name}: {k}/{n} = {100 * k / n:.1f} % (95 % CI {100 * lo:.1f}-{100 * hi:.1f} %)")
    print(json.dumps({"n": n, **rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
