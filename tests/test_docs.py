"""Every command the README and docs show parses as written: `stnas` lines go through the
real argument parser, scripts under benchmarks/ and experiments/ exist and know the flags
used with them, and the cheap read-only commands are run for real."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from stnas.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
STARTS = ("stnas ", "python benchmarks/", "python experiments/", "torchrun ")


def _prose(text: str) -> str:
    """``text`` without fenced blocks and table rows."""
    return re.sub(r"^\|.*$", "", re.sub(r"```.*?```", "", text, flags=re.S), flags=re.M)


def _commands(text: str) -> list[str]:
    """Command lines of fenced bash blocks and of inline code spans."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        found += [line.split("  #")[0].strip() for line in block.splitlines()]
    # inline spans outside tables: whole commands (4+ words), not mentions such as `stnas rank --json`
    found += [c for c in re.findall(r"`([^`\n]+)`", _prose(text))
              if len(c.split()) >= 4]
    return [c for c in found if c.startswith(STARTS) and "<" not in c and "..." not in c]


def _all() -> list[tuple[str, str]]:
    return [(f"{p.relative_to(ROOT)}", c) for p in DOCS for c in _commands(p.read_text(encoding="utf-8"))]


COMMANDS = _all()


def test_the_docs_show_commands():
    assert len([c for _, c in COMMANDS if c.startswith("stnas ")]) >= 15


def _stnas_argv(cmd: str) -> list[str]:
    words = shlex.split(cmd)
    if words[0] == "torchrun":  # torchrun [opts] -m stnas.cli ARGS
        words = words[words.index("stnas.cli") + 1:]
    else:
        words = words[1:]
    return words


def _refusal(cmd: str) -> str | None:
    """Why the real parser refuses ``cmd`` (None: it parses)."""
    try:
        args, extra = build_parser().parse_known_args(_stnas_argv(cmd))
    except SystemExit as exc:
        return f"exit {exc.code}"
    unknown = [e for e in extra if "=" not in e or e.startswith("-")]
    return f"unknown {unknown}" if unknown or not callable(args.func) else None


@pytest.mark.parametrize("where, cmd", [wc for wc in COMMANDS if not wc[1].startswith("python ")])
def test_stnas_commands_parse(where, cmd):
    assert _refusal(cmd) is None, f"{where}: `{cmd}` does not parse: {_refusal(cmd)}"


@pytest.mark.parametrize("where, cmd", [wc for wc in COMMANDS if wc[1].startswith("python ")])
def test_scripts_exist_and_know_their_flags(where, cmd):
    words = shlex.split(cmd)
    script = ROOT / words[1]
    assert script.is_file(), f"{where}: {words[1]} does not exist"
    source = script.read_text(encoding="utf-8")
    for flag in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
        assert f'"{flag}"' in source, f"{where}: {words[1]} has no option {flag}"


def test_the_bad_flag_case_is_caught():  # the check above can fail
    assert _refusal("stnas search runs/fm --no-such-flag 3") == "unknown ['--no-such-flag', '3']"
    assert _refusal("stnas space sample fashion-mnist --max-madds B") == "exit 2"
    assert _refusal("stnas search runs/fm --budget 3M,5M supernet.lr=0.05") is None
    assert _commands("```bash\nstnas space show paper  # x\n```\nand `stnas arch show A B`, `stnas rank`") == [
        "stnas space show paper", "stnas arch show A B"]


READ_ONLY = ("stnas space show", "stnas space sample", "stnas arch show")


@pytest.mark.parametrize("cmd", sorted({c for _, c in COMMANDS if c.startswith(READ_ONLY) and "--data" not in c}))
def test_read_only_commands_run(cmd, capsys):
    assert main(_stnas_argv(cmd)) == 0
    assert capsys.readouterr().out.strip()
