"""The package's import graph: config without torch, and no import cycle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _statements(nodes, module_level: bool):
    """The statements that run on import (module level), or all of them; never those under
    ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.stmt):
            yield node
        if not module_level:
            yield from _statements([c for c in ast.iter_child_nodes(node)
                                    if isinstance(c, (ast.stmt, ast.excepthandler))], module_level)


def _imports(tree: ast.Module, module: str, is_package: bool, module_level: bool) -> set[str]:
    """The stnas modules that ``module`` imports (at module level only, or anywhere)."""
    out = set()
    for node in _statements(tree.body, module_level):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}  # `from stnas import dist`
    return {m for m in out if m.split(".")[0] == "stnas"}


def import_graph(module_level: bool = True) -> dict[str, set[str]]:
    """{module: the package modules it imports}, from the source files (no import is run)."""
    files = {_module_name(p): p for p in (SRC / "stnas").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        found = _imports(tree, name, path.name == "__init__.py", module_level)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_the_known_edges():
    graph = import_graph()
    assert "stnas.space.searchspace" in graph["stnas.nn.supernet"]
    assert "stnas.core.dist" in graph["stnas.train.engine"]  # `from stnas import dist`
    assert "stnas.space.searchspace" not in graph["stnas.space.arch"]  # only under TYPE_CHECKING
    assert "stnas.proxy.scorer" not in graph["stnas.analysis.ranking"]
    assert "stnas.proxy.scorer" in import_graph(False)["stnas.analysis.ranking"]


@pytest.mark.parametrize("module_level", [True, False], ids=["module-level", "with-function-imports"])
def test_no_import_cycle(module_level):
    graph = import_graph(module_level)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_config_imports_without_torch():
    code = ("import sys, stnas.pipeline.config, stnas.pipeline.checks, stnas.space.presets; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr or "stnas.pipeline.config imported torch"


# The subpackages from the bottom up; a module imports its own subpackage or lower floors only
# (docs/usage.md, "Package layout"). Packages on one floor do not import each other.
FLOORS = [("core",), ("space",), ("nn", "data"), ("train", "latency"), ("proxy",), ("search",), ("deploy",),
          ("pipeline", "analysis"), ("cli",)]


def _floor(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if len(parts) == 1:  # stnas/__init__.py: the public API, above everything
        return len(FLOORS), "stnas"
    for i, names in enumerate(FLOORS):
        if parts[1] in names:
            return i, parts[1]
    raise AssertionError(f"{module} lies in no subpackage of FLOORS")


def test_every_module_lies_in_a_subpackage():
    for name in import_graph():
        _floor(name)


def layer_violations() -> list[str]:
    bad = []
    for name, targets in import_graph(False).items():
        fl, pkg = _floor(name)
        for t in targets:
            tf, tpkg = _floor(t)
            if tpkg != pkg and (tf > fl or (tf == fl)):
                bad.append(f"{name} -> {t}")
    return sorted(bad)


# modules below pipeline/ that still read a run's config (the seam issue #37 removes them)
_SEAMS_TO_CUT = {"stnas.deploy.export -> stnas.pipeline.config", "stnas.proxy.few_shot -> stnas.pipeline.config",
                 "stnas.proxy.scorer -> stnas.pipeline.config", "stnas.train.inherited -> stnas.pipeline.config"}


def test_imports_run_down_the_floors():
    assert set(layer_violations()) <= _SEAMS_TO_CUT
