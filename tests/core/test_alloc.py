"""The allocator setting (stnas.core.alloc): on glibc it takes, and the user's choice wins."""

import subprocess
import sys

import pytest

ON_GLIBC = sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver()).lower()

PROBE = ("from stnas.core.alloc import warm_allocator as w; a = w(); b = w(); print(a, b)")


def _run(env_extra: dict) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("STNAS_ALLOCATOR", "MALLOC_MMAP_THRESHOLD_",
                                                           "MALLOC_TRIM_THRESHOLD_")}
    env.update(env_extra)
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return p.stdout.strip()


@pytest.mark.skipif(not ON_GLIBC, reason="glibc's mallopt")
def test_on_glibc_the_thresholds_are_set_once():
    assert _run({}) == "True True"


@pytest.mark.parametrize("extra", [{"STNAS_ALLOCATOR": "default"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                   {"MALLOC_TRIM_THRESHOLD_": "131072"}])
def test_the_users_choice_wins(extra):
    assert _run(extra) == "False False"


@pytest.mark.skipif(not ON_GLIBC, reason="glibc's mallopt")
def test_large_blocks_come_from_the_heap_afterwards():
    # a 64 MiB block freed and taken again: with the thresholds raised glibc serves it from the
    # heap (mallinfo2's arena grows past it); by default it maps it (hblkhd counts it)
    code = ("import ctypes, sys\n"
            "from stnas.core.alloc import warm_allocator\n"
            "if sys.argv[1] == 'warm': warm_allocator()\n"
            "libc = ctypes.CDLL('libc.so.6')\n"
            "libc.malloc.restype = ctypes.c_void_p\n"
            "libc.free.argtypes = [ctypes.c_void_p]\n"
            "class M(ctypes.Structure):\n"
            "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd',"
            " 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
            "libc.mallinfo2.restype = M\n"
            "p = libc.malloc(64 << 20)\n"
            "m = libc.mallinfo2()\n"
            "print(int(m.hblkhd >= 64 << 20), int(m.arena >= 64 << 20))\n"
            "libc.free(p)\n")
    out = {mode: subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                check=True).stdout.split() for mode in ("warm", "cold")}
    assert out["cold"] == ["1", "0"]  # mapped
    assert out["warm"] == ["0", "1"]  # from the heap
