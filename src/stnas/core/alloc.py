"""The process's memory allocator, set as a long training run wants it.

glibc's malloc serves large blocks by mapping fresh memory, and unmaps it when they are freed;
every large activation of a forward pass then page-faults its memory anew. Its threshold for
that rises on its own as a process frees large blocks, but only up to 32 MB, and a proxy
evaluation on 40x40 images allocates larger ones. Measured on this project's folder space: an
evaluation took 0.77 s in a fresh process and 0.40 s with the thresholds raised, and `stnas run`'s
search took 115 s in one run and 161 s in the next for the same work (docs/benchmarks.md).

:func:`warm_allocator` raises glibc's mmap and trim thresholds (``mallopt``) so that blocks below
1 GiB come from the heap and stay there for reuse. The cost: the process keeps its peak memory
until it exits. It is called by the command line and by :func:`stnas.pipeline.run.run_pipeline`,
and the calibration's child process does the same, so plans are timed as runs run. Nothing
happens off glibc, when ``STNAS_ALLOCATOR=default``, or when the user set glibc's own
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 2**30  # bytes: smaller blocks come from the heap
TRIM_THRESHOLD = 2**31 - 1  # bytes of free heap top kept before giving memory back
USER_KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_done = False


def warm_allocator() -> bool:
    """Raises glibc's thresholds (module docstring); True when they are set (now or before)."""
    global _done
    if _done:
        return True
    if (not sys.platform.startswith("linux") or os.environ.get("STNAS_ALLOCATOR", "warm") != "warm"
            or any(k in os.environ for k in USER_KEYS)):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _done
