"""The package layout is the architecture: checked from the source, not from a diagram.

- nothing under ``polynet/polynomial`` imports ``polynet.expansion`` (the value does not know how
  it was computed);
- the operation modules under ``polynet/polynomial`` (functions over coefficient arrays and an
  index) import no value class at run time: the value classes bind them, as numpy.polynomial's
  classes bind its functions;
- the module-level imports inside each package form no circle;
- 0.2's ``polynet.poly.<module>`` still imports, as the very module at its new home, with a
  DeprecationWarning, and ``polynet.poly.expand`` stays the function.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "polynet"
VALUE_MODULES = {"network_polynomial", "sparse_polynomial", "store", "factored_polynomial"}


def _imports(path: Path, *, runtime_only: bool, top_level_only: bool) -> set[str]:
    """Absolute polynet modules imported by ``path`` (``from a import b`` counts a and a.b)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                if runtime_only:
                    for sub in child.orelse:
                        visit(sub, depth)
                    continue
            inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                if not (top_level_only and depth):
                    found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if not (top_level_only and depth):
                    found.add(child.module)
                    found.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child, depth + (1 if inner else 0))

    visit(tree, 0)
    return {m for m in found if m.startswith("polynet.")}


def _modules(package: str) -> dict[str, Path]:
    return {p.stem: p for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}


def test_polynomial_never_imports_the_expansion():
    offenders = {
        name: sorted(
            m
            for m in _imports(p, runtime_only=True, top_level_only=False)
            if m.startswith("polynet.expansion")
        )
        for name, p in _modules("polynomial").items()
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_operation_modules_import_no_value_class_at_run_time():
    values = {f"polynet.polynomial.{m}" for m in VALUE_MODULES}
    offenders = {}
    for name, p in _modules("polynomial").items():
        if name in VALUE_MODULES:
            continue
        bad = _imports(p, runtime_only=True, top_level_only=False) & values
        if bad:
            offenders[name] = sorted(bad)
    assert not offenders, offenders


@pytest.mark.parametrize("package", ["polynomial", "expansion"])
def test_module_level_imports_form_no_circle(package):
    modules = _modules(package)
    prefix = f"polynet.{package}."
    graph = {
        name: {
            m[len(prefix) :].split(".")[0]
            for m in _imports(p, runtime_only=True, top_level_only=True)
            if m.startswith(prefix)
        }
        & set(modules)
        for name, p in modules.items()
    }
    state: dict[str, int] = {}

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := cycle_from(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            assert (found := cycle_from(start, [])) is None, " -> ".join(found)


def test_old_module_paths_are_aliases_with_a_deprecation_warning():
    import polynet.poly
    from polynet.expansion import trace

    with pytest.warns(
        DeprecationWarning, match=r"polynet\.poly\.trace moved to polynet\.expansion"
    ):
        old = importlib.import_module("polynet.poly.trace")
    assert old is trace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module("polynet.poly.expand")
    # `import polynet.poly.expand` must not rebind the public function to the module.
    assert callable(polynet.poly.expand) and polynet.poly.expand.__name__ == "expand"
    assert polynet.poly.expand.estimate is importlib.import_module("polynet.expansion").estimate
