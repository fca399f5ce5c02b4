"""Calibration of every claim family (METHOD.md sections 9 and 10), importable from the package.

* :mod:`.families`: the families, their rules and how one cohort's outcome is read for each;
* :mod:`.sweeps`: the false-positive, power and 70/30 sweeps, and the summary in
  ``latentbids/data/calibration.json``.

The command lines live in ``benchmarks/`` (calibration.py, calibration_e2e.py, power_table.py); the
fast tests (tests/analysis/test_calibration.py) import from here.
"""

from latentbids.calibration.families import (
    FAMILIES,
    PLANTED_NAMES,
    POWER_FAMILIES,
    POWER_LOSSES,
    POWER_N,
    RULES,
    lrcp_outcome,
    machine,
    pc1_outcome,
    sam_outcome,
    shap_outcome,
    vector_outcome,
    wilson,
)
from latentbids.calibration.sweeps import (
    _cohort,
    command_of,
    package_summary,
    run_fpr,
    run_power,
    run_unbalanced,
    write_package_data,
)

__all__ = [
    "FAMILIES", "PLANTED_NAMES", "POWER_FAMILIES", "POWER_LOSSES", "POWER_N", "RULES", "command_of",
    "lrcp_outcome", "machine", "package_summary", "pc1_outcome", "run_fpr", "run_power", "run_unbalanced",
    "sam_outcome", "shap_outcome", "vector_outcome", "wilson", "write_package_data", "_cohort",
]
