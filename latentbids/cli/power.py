"""``latentbids-power``: what each claim family can find, before a study is scanned or after a silent report.

    latentbids-power --n 60            # the smallest GM loss each family finds with 80 % power at 60 per group
    latentbids-power --loss 8          # how many subjects per group each family needs for an 8 % loss

Both read the power table shipped with this version (``latentbids/data/calibration.json``, key ``power``;
METHOD.md section 10, BENCHMARKS.md "Power"), the same table the group report quotes when a family supports
no claim.  The table was measured on simulated cohorts (a loss planted in a few regions, IXI regional GM
correlation, a linear stand-in for the autoencoder): for the families that depend on the network it is the
best case, and the output says so.  User errors print one line and return 64.
"""
from __future__ import annotations

import argparse
import math
import sys

from latentbids import __version__
from latentbids.analysis.power import NETWORK_DEPENDENT, detectable_loss, load_power_table, required_n
from latentbids.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"latentbids-power: error: {message} (see 'latentbids-power --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="latentbids-power",
                description="What each claim family finds with 80 % power, from the shipped power table.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--n", type=int, metavar="N", help="subjects in the smaller group: the smallest GM loss found")
    what.add_argument("--loss", type=float, metavar="PERCENT",
                      help="GM loss in percent: the subjects per group each family needs")
    p.add_argument("--family", action="append", metavar="FAMILY", help="only this family (repeatable)")
    p.add_argument("--version", action="version", version=f"latentbids {__version__}")
    return p


def _check(args, table, parser) -> list[str]:
    if args.n is not None and not 2 <= args.n <= 10**6:
        parser.error(f"--n {args.n} is out of range: give the subjects in the smaller group (2 to 1000000)")
    if args.loss is not None and not (math.isfinite(args.loss) and 0 < args.loss < 100):
        parser.error(f"--loss {args.loss:g} is out of range: give a GM loss in percent, above 0 and below 100")
    families = list(table["families"])
    unknown = [f for f in args.family or [] if f not in families]
    if unknown:
        parser.error(f"no power was measured for {', '.join(unknown)}: choose from {', '.join(families)}")
    return args.family or families


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    table = load_power_table()
    if table is None:
        print("latentbids-power: error: this version ships no power table (latentbids/data/calibration.json has "
              "no 'power'); reinstall latentbids", file=sys.stderr)
        return EXIT_FAILURE
    families = _check(args, table, parser)
    regions, top = int(table.get("regions", 4)), max(float(x) for x in table["losses"])
    sizes = [int(x) for x in table["n_per_group"]]
    if args.n is not None:
        print(f"Smallest GM loss (in {regions} regions) found with 80 % power at {args.n} subjects per group:")
        for f in families:
            loss, row = detectable_loss(f, args.n, table)
            text = (f"not measured below {min(sizes)} per group" if loss is None else
                    f"more than {top:g} % (read at {row} per group)" if math.isinf(loss) else
                    f"{loss:.0f} % (read at {row} per group)")
            print(f"  {f:<14} {text}{' *' if f in NETWORK_DEPENDENT else ''}")
    else:
        print(f"Subjects per group needed to find a {args.loss:g} % GM loss (in {regions} regions) with 80 % power:")
        for f in families:
            n = required_n(f, args.loss, table)
            print(f"  {f:<14} {n if n is not None else f'more than {max(sizes)} (the largest size measured)'}"
                  f"{' *' if f in NETWORK_DEPENDENT else ''}")
    print("* best case: measured with a linear stand-in for the autoencoder; a short-trained network or small "
          "regions need more.")
    print(f"Source: {table.get('source', '?')}; {table.get('machine', '?')}, {table.get('date', '?')}.")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
