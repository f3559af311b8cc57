"""glibc malloc: a fixed mmap threshold, so big blocks that come and go give their memory back.

CPython asks malloc for every block over 512 bytes, so for each big hash table (the dedup set,
the engine's dicts of clusters and views), list and buffer. glibc serves a block of 128 KiB or more
with its own mmap and returns it to the system when it is freed, but after such a free it raises its
threshold to that block's size (the "dynamic mmap threshold", up to 32 MiB), so from then on blocks
that size come from the main heap. A table rebuilt there leaves a hole the size of the old one
wherever the next allocation lands above it; the heap cannot shrink past a block still in use, so
the daemon's resident size went up in steps of 8-15 MB over a soak of 3M posts with no more objects
alive (the steps came when the dedup set's table was rebuilt). Setting the threshold explicitly turns
the dynamic adjustment off: big blocks are always mapped and unmapped, and the resident size follows
what is alive. The cost is an mmap/munmap pair and fresh zeroed pages per big block, which the daemon
allocates rarely (a table rebuild every hundred thousand posts or so).

Only for glibc on Linux (musl and other systems manage memory differently and are left alone), and
never over a threshold the operator set through glibc's own `MALLOC_MMAP_THRESHOLD_` variable.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt(3) parameter number for the mmap threshold (malloc.h: #define M_MMAP_THRESHOLD -3).
M_MMAP_THRESHOLD = -3
# glibc's default initial threshold: what it starts with, kept for good instead of raised.
MMAP_THRESHOLD = 128 * 1024

_pinned: int | None = None


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes for this process; True if it is set.

    Process-wide and idempotent: a second call with the same threshold does nothing more."""
    global _pinned  # noqa: PLW0603 - the allocator's setting is process-wide too
    if _pinned == threshold:
        return True
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # the operator's choice, read by glibc at start
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, threshold) != 1:  # mallopt returns 1 on success
        return False
    _pinned = threshold
    return True
