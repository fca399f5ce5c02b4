"""Input validation with the official BIDS validator (``bids-validator-deno``, runs offline).

Only errors block (exit 16); warnings are logged.  The validator's JSON report is kept in the
work dir so a user can read every issue.

With ``--participant-label`` only the selected subjects are validated, as fMRIPrep does: the
validator reads a temporary tree of symbolic links to the dataset's top-level files and the selected
``sub-*`` folders, so one broken subject stops its own array task, not every task of the array.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from latentbids.errors import MissingInputError, ValidationFailed

LOGGER = logging.getLogger("latentbids")
VALIDATOR = "bids-validator-deno"


def find_validator() -> str | None:
    """Path of the validator executable: beside this Python (venv/container), then on PATH."""
    beside = Path(sys.executable).parent / VALIDATOR
    if beside.is_file():
        return str(beside)
    return shutil.which(VALIDATOR)


def run_validator(bids_dir: str | os.PathLike, report_path: str | os.PathLike | None = None,
                  ignore_nifti_headers: bool = False) -> dict:
    """Run the validator on ``bids_dir`` and return its parsed JSON report."""
    exe = find_validator()
    if exe is None:
        raise MissingInputError(
            f"{VALIDATOR} not found: pip install bids-validator-deno, or pass --skip-bids-validation"
        )
    cmd = [exe, "--format", "json", str(bids_dir)]
    if ignore_nifti_headers:
        cmd.insert(1, "--ignoreNiftiHeaders")
    env = dict(os.environ)
    if report_path:
        # deno wants a writable cache; keep it beside the report (the work dir), never in $HOME.
        env.setdefault("DENO_DIR", str(Path(report_path).parent / "deno"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise MissingInputError(
            f"{VALIDATOR} failed (exit {proc.returncode}): {proc.stderr.strip()[:300] or 'no output'}; "
            "pass --skip-bids-validation to run without it"
        ) from None
    if report_path:
        from latentbids.utils.atomic import write_json

        write_json(report_path, report)
    return report


def errors_of(report: dict) -> list[dict]:
    """The issues of severity ``error`` in a validator report."""
    return [i for i in report.get("issues", {}).get("issues", []) if i.get("severity") == "error"]


#: Top-level folders the validator does not validate anyway (BIDS: not part of the raw data).
NOT_VALIDATED = ("derivatives", "sourcedata", "code")


def selection_tree(bids_dir: str | os.PathLike, subjects: list[str], where: str | os.PathLike) -> Path:
    """A folder of symlinks: every top-level entry of ``bids_dir`` but other subjects' folders.

    ``subjects`` are labels without ``sub-``.  The tree is created under ``where`` (the work dir);
    the caller removes it.
    """
    bids_dir = Path(bids_dir).absolute()
    Path(where).mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix="bids-validation_", dir=where)) / bids_dir.name
    tree.mkdir()
    keep = {f"sub-{s}" for s in subjects}
    for entry in bids_dir.iterdir():
        name = entry.name
        if name in NOT_VALIDATED or (name.startswith("sub-") and name not in keep):
            continue
        (tree / name).symlink_to(entry)
    return tree


def validate_dataset(bids_dir: str | os.PathLike, report_path: str | os.PathLike | None = None,
                     participant_label: list[str] | None = None) -> None:
    """Validate ``bids_dir`` (only the ``participant_label`` subjects when given); raise
    :class:`ValidationFailed` (exit 16) if it has errors."""
    if participant_label:
        where = Path(report_path).parent if report_path else Path(tempfile.gettempdir())
        tree = selection_tree(bids_dir, participant_label, where)
        try:
            _validate(tree, report_path, shown=f"{bids_dir} (subjects {', '.join(participant_label)})")
        finally:
            shutil.rmtree(tree.parent, ignore_errors=True)
        return
    _validate(bids_dir, report_path, shown=str(bids_dir))


def _validate(bids_dir: str | os.PathLike, report_path, shown: str) -> None:
    report = run_validator(bids_dir, report_path)
    issues = report.get("issues", {}).get("issues", [])
    warnings = Counter(i.get("code") for i in issues if i.get("severity") == "warning")
    if warnings:
        LOGGER.info("BIDS validator warnings: %s", ", ".join(f"{c} x{n}" for c, n in warnings.items()))
    errors = errors_of(report)
    if errors:
        for issue in errors[:20]:
            LOGGER.error("BIDS validator: %s %s", issue.get("code"), issue.get("location", ""))
        codes = Counter(i.get("code") for i in errors)
        first = errors[0]
        where = f" (see {report_path})" if report_path else ""
        raise ValidationFailed(
            f"{shown} failed BIDS validation with {len(errors)} error(s) "
            f"[{', '.join(f'{c} x{n}' for c, n in codes.items())}], first: {first.get('code')} at "
            f"{first.get('location', '?')}{where}: fix the dataset or pass --skip-bids-validation"
        )
    LOGGER.info("BIDS validation passed (%d warning(s))", sum(warnings.values()))
