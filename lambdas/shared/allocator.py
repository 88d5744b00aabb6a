"""Allocator settings a data-plane function runs with on top of the image's (``lambdas/Dockerfile``).

The stack sets them on the function's environment (``BatchWorkflow``) and the benchmarks start the function's
process with them (``bench/production.py``, ``bench/memory.py``): one table, so the two cannot drift apart. glibc
reads ``MALLOC_*`` variables when the process starts (mallopt(3)); they must be in the environment, not set later.

Postprocess: glibc gives the free memory at the top of a heap back to the system once it exceeds
``M_TRIM_THRESHOLD``, which stays at its default, 128 KiB, because the image fixes ``M_MMAP_THRESHOLD`` (a fixed
mmap threshold turns off the dynamic adjustment of both). Postprocess frees and allocates tens of MB per row group
(the decoded records, the group's table, the compressed pages), so each group's memory went back to the system and
was faulted in afresh for the next one. With 64 MiB the next group reuses it: on the benchmark's job (50,000
records) about 10% less CPU, the same peak RSS (the memory kept is what the next group takes again; it is never
more than the peak itself). Its memory does not grow with the run (one job's rows and results), so the longer
retention holds no risk the image's other functions would take with it.
"""

from __future__ import annotations

import ctypes
import functools

FUNCTION_ENVIRONMENT: dict[str, dict[str, str]] = {
    "postprocess": {"MALLOC_TRIM_THRESHOLD_": str(64 << 20)},
}


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has ``malloc_trim``), looked up in the process's own symbols
    (never ``ctypes.util.find_library``, which forks the process to run ``ldconfig``); None elsewhere."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_free_memory() -> bool:
    """glibc's ``malloc_trim(0)``: give the free pages inside every heap back to the system, not only those at a
    heap's top (malloc_trim(3)). Preprocess calls it every ``TRIM_EVERY_BATCHES`` batches: the holes its batches
    leave in the two heaps add up over a long input (at 2.24M CSV rows the peak was 1.2x the peak at 560k rows,
    0.9-1.1x with the trim; see docs/memory.md), and a trim at that pace costs no measurable CPU (one every half
    million rows or so; one every two batches did cost CPU, as the pages are faulted in again). True when glibc took
    the call."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
