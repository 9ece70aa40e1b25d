"""glibc malloc settings for embedding on CPU.

EnCodec's convolutions allocate and free activations of several MB for every 4 s
window. With glibc's defaults such blocks are handed back to the kernel when freed and
zero-filled again, page by page, on the next allocation: the small EnCodec-frontend
model on a minute of 48 kHz audio with 2 threads took 533k page faults and 2 s of
system time a run (8.6-9.5 s wall). With freed blocks up to MMAP_THRESHOLD kept in the
heap for reuse it took none (7.4-8.3 s wall), at the same peak memory (+0-4 %).
`bench/embed.py` prints the effect (`--malloc default`).

`keep_freed_memory` changes the process's allocator, so it runs when a HEAR model is
built (hear.HearModel), never on import; elsewhere than Linux with glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20   # blocks below this come from the heap (glibc's own upper bound)
TRIM_THRESHOLD = 512 << 20  # free memory at the heap's top kept before it is given back

_applied: list[bool] = []  # once per process


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True when they are set."""
    if not _applied:
        _applied.append(_set_thresholds())
    return _applied[0]


def _set_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
