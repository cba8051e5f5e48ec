import subprocess
import sys

import pytest

from stnas.cli import main

from archcases import MALFORMED


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_space_show_paper(capsys):
    rc, out, _ = run(capsys, "space", "show", "paper")
    assert rc == 0
    assert "34,359,738,368" in out
    assert f"{6**19 * 7**35:,}" in out


def test_space_sample_respects_budget(capsys):
    rc, out, _ = run(capsys, "space", "sample", "fashion-mnist", "-n", "4", "--max-madds", "4M", "--seed", "3")
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        madds = line.split("MAdds=")[1].split()[0]
        assert madds.endswith("M") and float(madds[:-1]) <= 4.0


def test_arch_show_and_draw(capsys, tmp_path):
    rc, out, _ = run(capsys, "arch", "show", "digits:012012/.1.0.....")
    assert rc == 0 and "stage" in out and "MAdds" in out
    png = tmp_path / "a.png"
    rc, _, _ = run(capsys, "arch", "draw", "digits:012012/.1.0.....", "-o", str(png))
    assert rc == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_arch_one_line_exit_2(kind, capsys, tmp_path):
    rc, out, err = run(capsys, "arch", "show", MALFORMED[kind](tmp_path))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("stnas: error:")
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["space", "show", "no-such-preset"],
    ["space", "sample", "digits", "-n", "0"],
    ["space", "sample", "digits", "--max-madds", "lots"],
    ["space", "sample", "fashion-mnist", "--max-madds", "1k"],
    ["nonsense"],
    # an unknown dataset, in every command that trains (it used to end in a KeyError)
    ["supernet", "train", "--preset", "digits", "--data", "mnist", "--out", "{tmp}/s"],
    ["run", "--preset", "digits", "--data", "/no/such/dir", "--out", "{tmp}/r"],
    ["retrain", "--arch", "digits:012012/.1.0.....", "--data", "mnist", "--out", "{tmp}/t"],
])
def test_bad_cli_input_exit_2(argv, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    if "--data" in argv:
        assert "data.dataset must be one of" in err and not list(tmp_path.iterdir())  # nothing written


def test_real_process_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    p = subprocess.run([sys.executable, "-m", "stnas.cli", "arch", "show", str(bad)], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "malformed" in p.stderr
    p = subprocess.run([sys.executable, "-m", "stnas.cli", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "space" in p.stdout
