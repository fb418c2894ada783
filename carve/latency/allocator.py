"""Pin glibc malloc's heuristics so timed inferences don't pay page faults that come and go.

glibc serves large blocks (activations at 224 px) with mmap and returns them to the OS on free,
and it moves the mmap threshold up as blocks are freed. Whether a forward pass re-faults its
activation pages therefore depends on the allocation history of the process: the same network
timed twice in one process measured 12 ms and 20 ms on this machine's CPU. Fixing the mmap and
trim thresholds makes freed blocks stay in the heap, as in a long-running inference server (and
as jemalloc/tcmalloc, which PyTorch's CPU performance guides recommend, behave).
"""

from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 2**30
_state: str | None = None


def preloaded_allocator() -> str | None:
    """The malloc replacement in LD_PRELOAD (jemalloc, tcmalloc, mimalloc), if any."""
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in os.environ.get("LD_PRELOAD", ""):
            return name
    return None


def pin_allocator() -> str:
    """Fix glibc's mmap/trim thresholds for this process (once); returns the allocator state.

    ``CARVE_PIN_MALLOC=0`` leaves malloc alone. The state goes into every latency fingerprint.
    """
    global _state
    if _state is not None:
        return _state
    other = preloaded_allocator()
    if other:
        _state = other
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state = "system"
    elif os.environ.get("CARVE_PIN_MALLOC", "1") == "0":
        _state = "glibc"
    else:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        _state = "glibc-pinned" if ok else "glibc"
    return _state
