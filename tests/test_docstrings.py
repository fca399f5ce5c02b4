"""Every public function and class of the science packages has a numpydoc docstring with its sections.

The science packages are ``latentbids.anat``, ``latentbids.model`` and ``latentbids.analysis``: the
plain functions and estimators a user may call from a notebook, whose arguments carry shapes and units.

Functions need ``Parameters`` and ``Returns`` (``Yields`` for a generator or context manager); classes
(and dataclasses) need ``Parameters`` or ``Attributes``.  Only module-level definitions whose names do not
start with ``_`` are checked.  The source is parsed, not imported, so the check is fast and independent of
optional dependencies.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import latentbids

ROOT = Path(latentbids.__file__).resolve().parent
SCIENCE = ("anat", "model", "analysis")


def _missing_sections(path: Path, root: Path = ROOT) -> list[str]:
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node) or ""
        need = ("Parameters",) if isinstance(node, ast.ClassDef) else ("Parameters", "Returns")
        alternative = {"Parameters": "Attributes", "Returns": "Yields"}  # a dataclass; a generator
        missing = [s for s in need if s not in doc and alternative[s] not in doc]
        if missing:
            out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: "
                       f"missing {', '.join(missing)}")
    return out


def test_the_scan_finds_the_modules():
    files = sorted((ROOT / "analysis").rglob("*.py"))
    assert len(files) > 10, f"found only {len(files)} modules under {ROOT / 'analysis'}"
    assert any(p.parent.name == "agnostic" for p in files), "the agnostic subpackage was not scanned"


def test_the_check_catches_a_missing_section(tmp_path):
    path = tmp_path / "latentbids" / "mod.py"
    path.parent.mkdir()
    path.write_text('def f(x):\n    """Only prose.\n\n    Parameters\n    ----------\n    x : int\n    """\n'
                    'def _private(y):\n    pass\n')
    found = _missing_sections(path, root=path.parent)
    assert [p.split(" ", 1)[1] for p in found] == ["f: missing Returns"]


@pytest.mark.parametrize("package", SCIENCE)
def test_public_api_has_numpydoc_sections(package):
    problems = [line for path in sorted((ROOT / package).rglob("*.py")) for line in _missing_sections(path)]
    assert not problems, "public functions/classes without numpydoc sections:\n" + "\n".join(problems)
