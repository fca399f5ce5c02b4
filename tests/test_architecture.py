"""The package's layers, kept by a test: which part of latentbids may import which.

The table below is the one drawn in docs/architecture.md.  Reading down, each part builds only on
the parts above it: the science (``analysis``, ``model``) never reads the config or the command line
(it takes its parameters as arguments, scikit-learn style), only ``settings`` resolves the config,
only ``workflows`` wires stages together, and only ``cli`` knows about all of them.  A new import
that crosses a layer fails here with the file and line, so the drawing cannot go stale silently.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentbids"

#: part -> the parts it may import (beyond itself and third-party libraries)
ALLOWED = {
    "errors": set(),
    "utils": {"errors"},
    "config_checks": {"errors", "utils"},
    "config": {"config_checks", "errors", "utils"},
    "bids": {"config", "errors", "utils"},
    "anat": {"config", "errors", "utils"},
    "resources": {"bids", "errors", "utils"},
    "analysis": {"bids", "errors", "utils"},
    "model": {"bids", "errors", "utils"},
    "reports": {"analysis", "errors", "utils"},
    "simulate": {"bids", "errors", "resources", "utils"},
    "calibration": {"analysis", "config", "errors", "simulate", "utils"},
    "settings": {"config", "config_checks", "errors", "model", "resources", "utils"},
    "interfaces": {"anat", "bids", "config", "config_checks", "errors", "reports", "utils"},
    "workflows": {"analysis", "anat", "bids", "config", "config_checks", "errors", "interfaces", "model",
                  "reports", "resources", "settings", "utils"},
    "cli": {"analysis", "anat", "bids", "config", "config_checks", "errors", "model", "resources", "settings",
            "simulate", "utils", "workflows"},  # analysis: the power table, the methods text
    "__main__": {"cli"},
    "__init__": set(),
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0][:-3] if len(rel) == 1 else rel[0]


def _imports(path: Path):
    """(line, imported latentbids part) for every import in ``path``, relative ones resolved."""
    rel = path.relative_to(PACKAGE)
    here = ["latentbids", *rel.parts[:-1]]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "latentbids" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_every_part_of_the_package_is_in_the_layer_table():
    parts = {_part(p) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(ALLOWED), f"add {sorted(parts - set(ALLOWED))} to ALLOWED and docs/architecture.md"


def test_no_import_crosses_a_layer():
    crossings = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _part(path)
        for line, dst in _imports(path):
            if dst != src and dst not in ALLOWED.get(src, set()):
                crossings.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {src} imports {dst}")
    assert not crossings, "\n".join(crossings)


def test_the_layer_table_has_no_cycle():
    done, stack = set(), []

    def visit(node):
        assert node not in stack, f"cycle: {' -> '.join(stack[stack.index(node):] + [node])}"
        if node in done:
            return
        stack.append(node)
        for dst in ALLOWED[node]:
            visit(dst)
        stack.pop()
        done.add(node)

    for node in ALLOWED:
        visit(node)


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _is_main_block(node) -> bool:
    """``if __name__ == "__main__":`` (a script entry point, not an import of the module)."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Compare) and getattr(test.left, "id", "") == "__name__"


def _module_imports(path: Path, modules: set) -> set:
    """The latentbids modules ``path`` imports at import time (module level, ``TYPE_CHECKING`` blocks
    included: a type-only circle is still a circle to a reader); imports inside functions are deferred
    by design and do not count."""
    found = set()
    nodes = list(ast.parse(path.read_text(), str(path)).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.If, ast.Try)) and not _is_main_block(node):
            nodes += node.body + getattr(node, "orelse", []) + [h for t in getattr(node, "handlers", [])
                                                                for h in t.body]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentbids"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("latentbids")}
    return found & modules


def test_no_two_modules_import_each_other():
    """No import circle between modules (issue 11 found anat/preprocess <-> anat/registration)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: _module_imports(p, set(paths)) - {m} for m, p in paths.items()}
    done, circles = set(), []

    def visit(node, stack):
        if node in stack:
            circles.append(" -> ".join(stack[stack.index(node):] + [node]))
            return
        if node in done:
            return
        for dst in sorted(graph[node]):
            visit(dst, stack + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_architecture_doc_names_every_part():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [p for p in ALLOWED if not p.startswith("__") and f"{p}" not in doc]
    assert not missing, f"docs/architecture.md does not mention {missing}"


#: the size of a room a newcomer can read in one sitting (issue 11)
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 80


def _code_lines(node) -> int:
    """Lines of a function from the end of its docstring (or its ``def``) to its last line."""
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
        first.value.value, str)
    return node.end_lineno - (first.end_lineno + 1 if has_doc else node.lineno) + 1


def test_no_module_is_over_400_lines():
    big = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in sorted(PACKAGE.rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them by job):\n" + "\n".join(big)


def test_no_function_is_over_80_lines_of_code():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (n := _code_lines(node)) > \
                    MAX_FUNCTION_CODE_LINES:
                long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_CODE_LINES} lines of code:\n" + "\n".join(long)


def test_analysis_and_model_export_their_api_lazily():
    """``from latentbids.analysis import LRCP`` works, every exported name resolves to an object of its
    own package, and importing the packages imports neither torch, UMAP nor SHAP (a subprocess, so the
    test does not depend on what other tests imported)."""
    import subprocess
    import sys

    code = ("import sys, latentbids.analysis as a, latentbids.model as m\n"
            "heavy = [x for x in ('torch', 'umap', 'shap') if x in sys.modules]\n"
            "assert not heavy, heavy\n"
            "for pkg in (a, m):\n"
            "    for name in pkg.__all__:\n"
            "        obj = getattr(pkg, name)\n"
            "        assert obj.__module__.startswith(pkg.__name__), (name, obj.__module__)\n"
            "from latentbids.analysis import LRCP\n"
            "from latentbids.model import AutoEncoder3D\n"
            "assert LRCP.__name__ == 'LRCP' and AutoEncoder3D.__name__ == 'AutoEncoder3D'\n"
            "try:\n"
            "    a.NoSuchThing\n"
            "except AttributeError:\n"
            "    pass\n"
            "else:\n"
            "    raise SystemExit('no AttributeError')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _annotation_names(node) -> set[str]:
    return {n.id if isinstance(n, ast.Name) else n.attr
            for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute))}


def test_no_workflow_takes_the_run_config():
    """Workflows take the frozen settings (``latentbids.settings``), never a ``RunConfig``: no parameter
    named ``config`` or annotated ``RunConfig``, no import of ``RunConfig``, no ``.execution`` /
    ``.model.`` section read off a config object."""
    found = []
    for path in sorted((PACKAGE / "workflows").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                    hint = _annotation_names(arg.annotation) if arg.annotation is not None else set()
                    if arg.arg in ("config", "cfg", "run_config") or "RunConfig" in hint:
                        found.append(f"{where}:{node.lineno}: {node.name}({arg.arg})")
            elif isinstance(node, ast.ImportFrom) and any(a.name == "RunConfig" for a in node.names):
                found.append(f"{where}:{node.lineno}: imports RunConfig")
            elif isinstance(node, ast.Attribute) and node.attr in ("execution", "spatial") \
                    and isinstance(node.value, ast.Name) and node.value.id in ("config", "cfg"):
                found.append(f"{where}:{node.lineno}: reads config.{node.attr}")
    assert not found, "take latentbids.settings objects instead:\n" + "\n".join(found)
