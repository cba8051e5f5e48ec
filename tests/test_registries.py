"""Every closed choice is one registry entry: the registries found in the package, the config
keys and CLI flags that take their names, and no ``if``/``elif`` over their names elsewhere."""

import argparse
import ast
import importlib
from pathlib import Path

import pytest

from stnas.cli import build_parser, main
from stnas.core.registry import Registry
from stnas.pipeline.checks import CHOICES

SRC = Path(__file__).resolve().parents[1] / "src" / "stnas"


def _registries() -> dict[str, Registry]:
    """{module.NAME: registry} of every module-level Registry, under the module that defines it."""
    found: dict[int, tuple[str, Registry]] = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        tree = ast.parse(path.read_text())
        defined = set()
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        for name in defined:
            obj = getattr(module, name, None)
            if isinstance(obj, Registry):
                found[id(obj)] = (f"{module.__name__}.{name}", obj)
    return dict(found.values())


REGISTRIES = _registries()


def test_the_registries_are_found():
    for name in ("stnas.proxy.modes.PROXY_MODES", "stnas.space.sampling.SAMPLING_MODES", "stnas.data.catalog.DATASETS",
                 "stnas.data.userdata.DATA_FORMATS", "stnas.space.ops.OP_FAMILIES", "stnas.space.cost.BUDGET_KINDS"):
        assert name in REGISTRIES
    assert all(any(r is reg for reg in REGISTRIES.values()) for r in CHOICES.values())


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_every_entry_has_a_name_and_a_help_text(name):
    registry = REGISTRIES[name]
    assert len(registry) >= 1
    for entry in registry.names():
        assert entry == entry.strip() and " " not in entry and registry.help(entry), f"{name}: {entry!r} has no help"


@pytest.mark.parametrize("key", sorted(CHOICES), ids=".".join)
def test_every_config_choice_takes_every_name_and_refuses_a_typo(key, tmp_path, capsys):
    from stnas.pipeline.config import resolve

    sec, name = key
    registry = CHOICES[key]
    for value in registry.names():  # quoted: YAML would read on and off as booleans
        assert resolve("digits", overrides=["proxy.mode=stabilized", f"{sec}.{name}='{value}'"])[sec][name] == value
    typo = registry.names()[0][:-1] + "q"
    assert main(["run", "--preset", "digits", "--out", str(tmp_path / "r"), f"{sec}.{name}={typo}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{sec}.{name} must be one of {', '.join(registry.names())}" in err
    assert not (tmp_path / "r").exists()


def _choice_flags(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _choice_flags(sub, (*path, name))
        elif action.choices is not None and action.option_strings:
            yield " ".join(path), action


def test_every_cli_choice_is_a_registrys_names():
    names = {r.names() for r in REGISTRIES.values()}
    flags = list(_choice_flags(build_parser()))
    assert len(flags) >= 8
    for command, action in flags:
        choices = tuple(action.choices)
        choices = choices[:-1] if choices[-1] == "all" else choices  # stnas rank --mode all
        assert choices in names, f"stnas {command} {action.option_strings[0]}: {choices} is no registry's"
        assert all(c in (action.help or "") for c in choices), f"stnas {command} {action.option_strings[0]}: help"


# ------------------------------------------------------------------ no if/elif over registered names
# words that registries share with other vocabularies: torch device types and the `device` key
# (cpu, cuda, auto), supernet.split's E:on / E:off
AMBIGUOUS = {"auto", "cpu", "cuda", "on", "off"}
ALLOWED: set[tuple[str, str]] = set()  # (file, name) pairs a comparison may name: none


def _string_values(node) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [v for e in node.elts for v in _string_values(e)]
    return []


def comparisons_with_registered_names(names: set[str], root: Path = SRC) -> list[str]:
    """``x == "name"``, ``x != "name"``, ``x in ("name", ...)`` anywhere under ``root`` (an if, an
    elif, a conditional expression or a boolean), for every registered name."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for op, right in zip(node.ops, node.comparators):
                sides = [node.left, right] if isinstance(op, (ast.Eq, ast.NotEq)) else [right]
                if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                    continue
                for value in (v for side in sides for v in _string_values(side)):
                    if value in names and value not in AMBIGUOUS and (rel, value) not in ALLOWED:
                        found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_comparison_with_a_registered_name_outside_the_registries():
    names = {n for r in REGISTRIES.values() for n in r.names()}
    assert comparisons_with_registered_names(names) == []


def test_the_scan_finds_a_comparison(tmp_path):  # the check above can fail
    (tmp_path / "m.py").write_text('def f(cfg, x):\n    if cfg["mode"] == "stabilized":\n        return 1\n'
                                   '    return 2 if x in ("single", "y") else "stabilized" != x\n')
    found = comparisons_with_registered_names({"stabilized", "single"}, tmp_path)
    assert [f.split(": ")[0] for f in found] == ["m.py:2", "m.py:4", "m.py:4"]
