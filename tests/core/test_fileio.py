"""stnas.core.fileio: atomic writes keep the old file on failure, leave no temp files, and give
new files the usual mode (not mkstemp's 0600), whoever writes them."""

import os
import stat

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from stnas.core.fileio import atomic_write, write_bytes


def _usual_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=4096))
def test_write_bytes_round_trips(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("w") / "f.bin"
    write_bytes(path, data)
    assert path.read_bytes() == data and os.listdir(path.parent) == ["f.bin"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    write_bytes(path, b"old")

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.txt"]


def test_files_get_the_usual_mode_even_when_the_writer_recreates_them(tmp_path):
    write_bytes(tmp_path / "a.bin", b"x")

    def recreate(tmp):  # what a library may do: remove the file it was given, then create it anew
        os.remove(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"y")
        os.close(fd)

    atomic_write(tmp_path / "b.bin", recreate)
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    atomic_write(tmp_path / "c.safetensors", lambda tmp: save_file(tensors, tmp))
    for name in ("a.bin", "b.bin", "c.safetensors"):
        assert _mode(tmp_path / name) == _usual_mode(), name
    assert torch.equal(load_file(tmp_path / "c.safetensors")["w"], tensors["w"])
