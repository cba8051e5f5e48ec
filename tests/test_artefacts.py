"""One writer and one checking reader per artefact kind (stnas.core.verified's docstring):
no module but stnas.core.verified serializes JSON into a file, and the reader of every kind
refuses a plain or altered file in one line naming it."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from stnas.core.errors import ArchError, ConfigError, StnasError
from stnas.core.verified import write_json

ROOT = Path(__file__).resolve().parents[1]
WRITER = ROOT / "src" / "stnas" / "core" / "verified.py"


def _name(node) -> str:
    """``json.dumps``, ``path.write_text``, ... for a call's function."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def _calls(node, suffixes: tuple[str, ...]) -> list[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call) and _name(n.func).endswith(suffixes)]


def _sources(*folders: str):
    for folder in folders:
        yield from (p for p in sorted((ROOT / folder).rglob("*.py")) if p != WRITER)


def test_no_module_but_the_writer_writes_json_into_a_file():
    """``json.dump``, ``write_text(json.dumps(...))`` (or write_bytes, f.write) and a second
    ``write_json`` are the plain writes the issue found; the library, the experiments and the
    benchmarks write JSON through stnas.core.verified alone."""
    found = []
    for path in _sources("src", "experiments", "benchmarks"):
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(ROOT)
        found += [f"{where}:{n.lineno} def {n.name}" for n in ast.walk(tree)
                  if isinstance(n, ast.FunctionDef) and n.name in ("write_json", "write_jsonl", "append_jsonl")]
        found += [f"{where}:{c.lineno} json.dump" for c in _calls(tree, ("json.dump",))]
        for call in _calls(tree, ("write_text", "write_bytes", ".write")):
            if any(_calls(arg, ("json.dumps",)) for arg in call.args):
                found.append(f"{where}:{call.lineno} {_name(call.func)}(json.dumps(...))")
    assert found == []


def test_the_library_reads_no_json_file_past_its_checking_reader():
    """No ``json.load`` and no ``json.loads`` of a file read on the spot in src/: artefacts
    are read through their kind's checking reader."""
    found = []
    for path in _sources("src"):
        tree = ast.parse(path.read_text(), str(path))
        found += [f"{path.relative_to(ROOT)}:{c.lineno}" for c in _calls(tree, ("json.load",))]
        found += [f"{path.relative_to(ROOT)}:{c.lineno}" for c in _calls(tree, ("json.loads",))
                  if any(_calls(arg, ("read_text", "read_bytes", ".read")) for arg in c.args)]
    assert found == []


# ------------------------------------------------------------------ one reader per kind
def _plain(path: Path, key: str = "sha256") -> None:
    """Rewrites a checksummed file as plain JSON (the object without its checksum)."""
    if path.suffix == ".jsonl":
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != key}) + "\n" for r in lines))
    else:
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != key}))


def _alter(path: Path) -> None:
    """Changes one number of a checksummed file, its checksum kept."""
    text = path.read_text()
    for digit in "123456789":
        i = text.find(digit)
        if i >= 0:
            break
    path.write_text(text[:i] + str(int(text[i]) - 1) + text[i + 1:])


def _search(tmp: Path) -> Path:
    from stnas.pipeline.checks import check_search
    from stnas.pipeline.config import DEFAULTS
    from stnas.proxy.score import Score
    from stnas.search.evolution import search
    from stnas.space.catalog import load_space

    space = load_space("digits")
    scorer = lambda archs: [Score(str(a), float(a.madds) / 1e6, 0.01) for a in archs]  # noqa: E731
    search(space, scorer, check_search(dict(DEFAULTS["search"], budgets=["300k"], population=4, parents=2,
                                            generations=1, screen=None)), tmp, progress=False)
    return tmp


def _arch(tmp: Path):
    from stnas.space.arch import save_arch
    from stnas.space.catalog import load_space

    return save_arch(load_space("digits").sample(np.random.default_rng(0)), tmp / "arch.json")


def _truth(tmp: Path):
    from stnas.space.catalog import load_space

    space = load_space("digits")
    rows = [{"arch": str(space.sample(np.random.default_rng(i))), "top1": 0.5 + i / 100} for i in range(4)]
    return write_json(tmp / "truth.json", {"format": "stnas-truth", "version": 1, "results": rows})


def _card(tmp: Path):
    from stnas.deploy.card import model_card, write_card
    from stnas.space.catalog import load_space

    arch = load_space("digits").sample(np.random.default_rng(0))
    return write_card(tmp / "model_card.json", model_card(arch, {"input_size": 8}, top1=0.75))


def _read(kind: str, path: Path):
    from stnas.analysis.ranking import load_truth
    from stnas.deploy.card import read_card
    from stnas.pipeline.report import read_report
    from stnas.search.history import read_search
    from stnas.space.catalog import load_arch, load_space

    if kind in ("summary", "best", "pareto", "history"):
        return read_search(path.parent, kind)
    return {"card": read_card, "report": read_report, "arch": lambda p: load_arch(p, "digits"),
            "truth": lambda p: load_truth(p, load_space("digits"))}[kind](path if kind != "report" else path.parent)


KINDS = {  # kind: (what makes one, its file, whether a hand-made plain file is a valid one)
    "summary": (_search, "search.json", False), "best": (_search, "best.json", False),
    "pareto": (_search, "pareto.json", False), "history": (_search, "search.jsonl", False),
    "card": (_card, "model_card.json", False),
    "report": (lambda t: write_json(t / "report.json", {"preset": "digits", "chosen": [{"budget": 300000}]}),
               "report.json", False),
    "arch": (_arch, "arch.json", True), "truth": (_truth, "truth.json", True),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kinds_reader_refuses_an_altered_file_and_a_plain_one_unless_people_write_it(kind, tmp_path):
    make, name, hand_made = KINDS[kind]
    make(tmp_path)
    path = tmp_path / name
    good = path.read_bytes()
    assert _read(kind, path)  # the intact file reads
    for damage in (_alter, _plain):
        path.write_bytes(good)
        damage(path)
        if damage is _plain and hand_made:
            assert _read(kind, path)  # validated field by field instead
            continue
        with pytest.raises((StnasError, ArchError, ConfigError)) as e:
            _read(kind, path)
        assert "\n" not in str(e.value) and name in str(e.value), str(e.value)
