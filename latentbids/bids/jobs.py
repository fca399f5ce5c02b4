"""The unit of participant-level work: one T1w image of one subject/session."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class T1wJob:
    """One T1w image to process, as selected from the BIDS layout.

    ``relpath`` is relative to the raw dataset root (used for ``bids:raw:`` Sources URIs).
    ``gm_map`` is set when ``-d/--derivatives`` supplied an existing GM map for this image: the
    participant level then only resamples it and writes the regional tables.
    """

    subject: str
    session: str | None
    path: Path
    relpath: str
    gm_map: Path | None = None
    gm_map_kind: str | None = None  # "smriprep" (template space probseg) | "cat12" (mwp1)

    @property
    def label(self) -> str:
        """``sub-01`` or ``sub-01_ses-1``: used in logs and crash-file folders."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")
