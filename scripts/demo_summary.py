"""Print what a group report found: its headline, then one line per claim family (what was tested,
how many items were supported, which).  Used by scripts/demo.sh; README.md quotes its output.

Usage: python scripts/demo_summary.py NAME DERIVATIVES_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from latentbids.analysis.claims import FAMILY_MEANING

SHOWN = 6  # items named per family; the rest are counted


def summarize(name: str, out: Path) -> list[str]:
    """The lines printed for one cohort's derivatives folder."""
    summary_file = next(out.glob("group/*/analysis.json"), None)
    if summary_file is None:
        return [f"{name}: no analysis.json under {out}/group: the group level did not finish"]
    summary = json.loads(summary_file.read_text())
    lines = [f"{name}: {summary['Headline']}"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for claim in summary["Claims"]:
        groups.setdefault((claim["contrast"], claim["family"]), []).append(claim)
    for (contrast, family), claims in groups.items():
        supported = [c for c in claims if c["supported"] and not c.get("exploratory")]
        items = [(f"fold {c['fold']} " if c.get("fold") else "") + str(c["item"]) for c in supported]
        shown = ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
        where = f"{contrast}: " if contrast else ""
        lines.append(f"  {where}{FAMILY_MEANING.get(family, family)}: {len(supported)} of {len(claims)} supported"
                     + (f" ({shown})" if shown.strip() else ""))
    report = next(out.glob("group_*.html"), None)
    lines.append(f"  report: {report}")
    return lines


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 64
    print("\n".join(summarize(args[0], Path(args[1]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
