"""Every public function and class of ``latentbids.analysis`` has a numpydoc docstring with its sections.

Functions need ``Parameters`` and ``Returns``; classes (and dataclasses) need ``Parameters`` or
``Attributes``.  Only module-level definitions whose names do not start with ``_`` are checked.  The
source is parsed, not imported, so the check is fast and independent of optional dependencies.
"""
from __future__ import annotations

import ast
from pathlib import Path

import latentbids.analysis

PACKAGE = Path(latentbids.analysis.__file__).resolve().parent


def _missing_sections(path: Path) -> list[str]:
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node) or ""
        need = ("Parameters",) if isinstance(node, ast.ClassDef) else ("Parameters", "Returns")
        missing = [s for s in need if s not in doc and not (s == "Parameters" and "Attributes" in doc)]
        if missing:
            out.append(f"{path.relative_to(PACKAGE.parent.parent)}:{node.lineno} {node.name}: "
                       f"missing {', '.join(missing)}")
    return out


def test_package_has_modules():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10, f"found only {len(files)} modules under {PACKAGE}"
    assert any(p.parent.name == "agnostic" for p in files), "the agnostic subpackage was not scanned"


def test_public_api_has_numpydoc_sections():
    problems = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _missing_sections(path)]
    assert not problems, "public functions/classes without numpydoc sections:\n" + "\n".join(problems)
