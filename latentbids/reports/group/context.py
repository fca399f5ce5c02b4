"""What the group report renders: the typed analysis result plus the run's facts (no analysis logic)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

import pandas as pd

from latentbids.analysis.results import AnalysisResult

#: package data written by ``benchmarks/calibration.py --write-package-data``
CALIBRATION_FILE = "calibration.json"


def load_calibration() -> dict | None:
    """The false-positive rates measured by the calibration benchmark, or None when not shipped."""
    try:
        text = resources.files("latentbids").joinpath("data", CALIBRATION_FILE).read_text()
    except (FileNotFoundError, OSError, ModuleNotFoundError):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class GroupReport:
    """The report's input: the analysis result, the participants and latent tables, run facts."""

    analysis: AnalysisResult
    participants: pd.DataFrame | None = None
    latents: pd.DataFrame | None = None
    curves_png: str = ""
    version: str = ""
    run_id: str = ""
    calibration: dict | None = field(default_factory=load_calibration)

    @property
    def title(self) -> str:
        return f"latentbids group report: {self.analysis.model_name}"

    @property
    def eta(self) -> float:
        return float(self.analysis.settings.eta)
