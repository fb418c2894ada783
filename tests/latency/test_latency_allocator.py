"""The latency engine pins glibc malloc so freed activation blocks stay mapped between runs."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from carve.latency import allocator, device_fingerprint

# The probe loads the allocator module by path and allocates through libc directly, without
# importing torch: torch's import and first operator free large blocks and spawn threads, which
# move glibc's dynamic mmap threshold and RSS differently on different machines.
PROBE = """
import ctypes, importlib.util, os, sys
spec = importlib.util.spec_from_file_location("allocator", sys.argv[2])
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)
state = allocator.pin_allocator() if sys.argv[1] == "pin" else "untouched"
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
size = 16 * 2**20
before = rss_mib()
block = libc.malloc(size)
ctypes.memset(block, 1, size)
touched = rss_mib() - before
libc.free(block)
print(state, touched, rss_mib() - before)
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="malloc pinning applies to glibc on Linux only")


def probe(mode: str, **env: str) -> tuple[str, float]:
    """Runs the probe in a fresh process; returns the allocator state and the MiB a freed 16 MiB block kept."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode, allocator.__file__], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout.split()
    state, touched, kept = out[0], float(out[1]), float(out[2])
    assert touched > 12, f"the probe's 16 MiB block should be resident once written, RSS grew {touched:.1f} MiB"
    return state, kept


@pytest.mark.hardware
@glibc_only
def test_pinned_malloc_keeps_freed_blocks_mapped() -> None:
    state, kept = probe("pin", LD_PRELOAD="")
    assert state == "glibc-pinned"
    assert kept > 12, f"a freed 16 MiB block should stay in the heap once pinned, RSS kept {kept:.1f} MiB"
    _, kept_default = probe("none", LD_PRELOAD="")
    assert kept_default < 4, f"glibc's default returns a freed 16 MiB block to the OS, RSS kept {kept_default:.1f} MiB"


@pytest.mark.hardware
@glibc_only
def test_pinning_can_be_turned_off() -> None:
    state, kept = probe("pin", LD_PRELOAD="", CARVE_PIN_MALLOC="0")
    assert state == "glibc" and kept < 4


def test_fingerprint_records_the_allocator() -> None:
    assert device_fingerprint("cpu", 1)["allocator"] in ("glibc-pinned", "glibc", "system", "jemalloc", "tcmalloc",
                                                          "mimalloc")
