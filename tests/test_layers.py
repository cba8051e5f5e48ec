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
    assert "stnas.core.weights" not in graph["stnas.analysis.ranking"]  # only inside a function
    assert "stnas.core.weights" in import_graph(False)["stnas.analysis.ranking"]


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


def test_imports_run_down_the_floors():
    assert layer_violations() == []


# ------------------------------------------------------------------ config at the seam
# Only pipeline/ and cli/ read the resolved config dict (stnas.pipeline.settings turns it into
# the explicit settings the floors below take).
BELOW_PIPELINE = [pkg for names in FLOORS[:FLOORS.index(("pipeline", "analysis"))] for pkg in names]
CONFIG_NAMES = {"cfg", "config"}


def _sections() -> set[str]:
    from stnas.pipeline.config import DEFAULTS  # imports without torch

    return set(DEFAULTS)


def _is_config(node: ast.AST) -> bool:
    """``cfg``, ``config``, ``self.cfg``, ``x.config``."""
    return ((isinstance(node, ast.Name) and node.id in CONFIG_NAMES)
            or (isinstance(node, ast.Attribute) and node.attr in CONFIG_NAMES))


def _text(node: ast.AST | None):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def config_reads(source: str, where: str = "<source>") -> list[str]:
    """Where ``source`` reads the config dict: a config-named value subscripted with (or
    ``.get`` of) a config section name, or an import of ``stnas.pipeline``."""
    sections, found = _sections(), []
    for node in ast.walk(ast.parse(source)):
        key = None
        if isinstance(node, ast.Subscript) and _is_config(node.value):
            key = _text(node.slice)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and _is_config(node.func.value) and node.args):
            key = _text(node.args[0])
        if key in sections:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [f"{where}:{node.lineno}: imports {n}" for n in names if n.split(".")[:2] == ["stnas", "pipeline"]]
    return found


def test_config_reads_finds_what_the_seam_removed():
    snippets = {  # the shapes of the reads issue #37 removed from the floors below pipeline/
        'def enabled(cfg):\n    return bool(cfg["search"].get("latency_budgets"))': 1,
        'class P:\n    def __init__(self, cfg):\n        self.cfg = cfg\n        m = self.cfg["proxy"]["mode"]': 1,
        'def split_seed(cfg):\n    ss = cfg["data"].get("split_seed")\n'
        '    return cfg.get("seed") if ss is None else ss': 2,
        'def f(run):\n    from stnas.pipeline.config import load_run_config\n    return load_run_config(run)': 1,
        "import stnas.pipeline.config as c": 1,
    }
    for source, n in snippets.items():
        assert len(config_reads(source)) == n, source
    # not a config read: other sections' dicts, other keys, relative imports of the own package
    assert config_reads('def f(cfg_search, settings, cfg):\n    return cfg_search["budgets"], settings["data"], '
                        'cfg["top"]\nfrom .x import y') == []


def test_nothing_below_the_pipeline_reads_the_config():
    found = []
    for pkg in BELOW_PIPELINE:
        for path in sorted((SRC / "stnas" / pkg).rglob("*.py")):
            found += config_reads(path.read_text(), str(path.relative_to(SRC)))
    assert found == []


# ---------------------------------------------------------------------------- research and benchmarks
ROOT = SRC.parent
OUTSIDE = ("experiments", "benchmarks")  # packages of their own that use stnas; stnas never imports them
BOOTSTRAP = "sys.path.insert(0, str(Path(__file__).resolve().parents[1]))"  # experiments/__init__.py


def _all_imports(tree: ast.Module) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import statement, at any depth."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.append((node.module, [a.name for a in node.names], node.lineno))
    return out


def _outside_files() -> list[Path]:
    return sorted(p for d in OUTSIDE for p in (ROOT / d).glob("*.py"))


def test_src_never_imports_research_nor_benchmarks():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in (SRC / "stnas").rglob("*.py")
           for mod, _, line in _all_imports(ast.parse(p.read_text(), str(p))) if mod.split(".")[0] in OUTSIDE]
    assert not bad, bad


def _private_uses(path: Path) -> list[str]:
    """Private names (``_x``) of stnas or of experiments that ``path`` imports or reaches
    through an imported module (``lat._x`` after ``from stnas.latency import table as lat``)."""
    tree = ast.parse(path.read_text(), str(path))
    modules, bad = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module.split(".")[0] in ("stnas", *OUTSIDE):
            for a in node.names:
                if any(p.startswith("_") and not p.startswith("__") for p in [*node.module.split("."), a.name]):
                    bad.append(f"{path.name}:{node.lineno} from {node.module} import {a.name}")
                target = ROOT / ("src" if node.module.startswith("stnas") else "") / node.module.replace(".", "/")
                if (target / f"{a.name}.py").is_file() or (target / a.name / "__init__.py").is_file():
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name.split(".")[0] for a in node.names
                        if a.name.split(".")[0] in ("stnas", *OUTSIDE)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return bad


def test_research_and_benchmarks_use_public_names_only():
    bad = [b for p in _outside_files() for b in _private_uses(p)]
    assert not bad, bad


def test_the_private_name_check_can_fail(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from stnas.core.fileio import _tmp\nfrom stnas.latency import table as lat\nfrom experiments "
                 "import fidelity\nlat._x\nfidelity._tau\nlat.load_table\nfrom stnas.core.errors import StnasError\n")
    assert [b.split(" ", 1)[1] for b in _private_uses(f)] == ["from stnas.core.fileio import _tmp", "lat._x",
                                                              "fidelity._tau"]


def _bootstrap_line(tree: ast.Module) -> int | None:
    """The line of the documented ``if not __package__: sys.path.insert(...)``, if any."""
    for node in tree.body:
        if (isinstance(node, ast.If) and ast.unparse(node.test) == "not __package__" and len(node.body) == 1
                and ast.unparse(node.body[0]) == BOOTSTRAP):
            return node.lineno
    return None


def test_research_scripts_import_each_other_as_a_package():
    """No sibling imports (``import fidelity``), no importlib loading, no other sys.path edit;
    a script that imports experiments.* puts the repository root on its path first."""
    scripts = {p.stem for p in _outside_files()}
    bad = []
    for p in _outside_files():
        text = p.read_text()
        tree = ast.parse(text, str(p))
        imports = _all_imports(tree)
        bad += [f"{p.name}:{line} imports its sibling {mod}" for mod, _, line in imports if mod in scripts]
        bad += [f"{p.name} loads modules by path" for word in ("importlib", "spec_from_file_location")
                if word in text]
        boot = _bootstrap_line(tree)
        edits = sum(isinstance(n, ast.Attribute) and ast.unparse(n) == "sys.path" for n in ast.walk(tree))
        if edits != (1 if boot else 0):
            bad.append(f"{p.name} edits sys.path other than by the documented line")
        first = min((line for mod, _, line in imports if mod.split(".")[0] in OUTSIDE), default=None)
        if first is not None and (boot is None or boot > first):
            bad.append(f"{p.name}:{first} imports {OUTSIDE} before putting the repository root on its path")
    assert not bad, bad


def test_a_research_script_runs_by_its_path_from_anywhere(tmp_path):
    """``python experiments/NAME.py`` finds the package whatever the working directory."""
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "fidelity_power.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert proc.returncode == 0 and "--tau-proxy" in proc.stdout, proc.stderr
