"""Every public function of ``latentbids.anat`` says in numpydoc what it takes and what it gives back
(``Parameters``, and ``Returns``, or ``Yields`` for a context manager; a function annotated ``-> None``
returns nothing to describe), shapes and units included.

The source is parsed, not imported (fast, and independent of antspyx/torch).
"""
from __future__ import annotations

import ast
from pathlib import Path

import latentbids.anat

PACKAGE = Path(latentbids.anat.__file__).resolve().parent


def _missing_sections(path: Path) -> list[str]:
    out = []
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node) or ""
        gives = "Yields" if any(getattr(d, "attr", getattr(d, "id", "")) == "contextmanager"
                                for d in node.decorator_list) else "Returns"
        returns_none = isinstance(node.returns, ast.Constant) and node.returns.value is None
        need = ("Parameters",) if returns_none else ("Parameters", gives)
        missing = [s for s in need if f"{s}\n{'-' * len(s)}" not in doc]
        if missing:
            out.append(f"{path.name}:{node.lineno} {node.name}: missing {', '.join(missing)}")
    return out


def test_public_functions_have_numpydoc_sections():
    files = sorted(PACKAGE.glob("*.py"))
    expected = {"preprocess.py", "brain_mask.py", "registration.py", "segmentation.py", "measures.py", "reuse.py"}
    assert expected <= {p.name for p in files}
    problems = [line for path in files for line in _missing_sections(path)]
    assert not problems, "public functions without numpydoc sections:\n" + "\n".join(problems)
