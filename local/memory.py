"""What keeps the local runtime's memory bounded besides moto's S3 (``local.moto_patches``): a cap on the data-plane
handlers running at once in the one process, and glibc's allocator told to hand freed memory back.

On AWS each invocation has its own execution environment with its function's memory; locally every handler shares
this process, so ``maxConcurrentJobs`` postprocess handlers (hundreds of MB each at 50,000 records) would add up.
``HandlerSlots`` lets only a few data-plane handlers run at once; the others wait their turn in moto's Map threads.
Lambda's own concurrency on AWS is not affected: this is the in-process dispatch only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lambdas.shared.allocator import glibc

DEFAULT_DATA_PLANE_SLOTS = 2  # in one process under one GIL, more concurrent handlers mostly add memory
BYTES_PER_SLOT = 1 << 30  # what a data-plane handler may take at its peak, with headroom
_M_ARENA_MAX = -8  # mallopt parameters (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
LOCAL_ARENA_MAX = 2
# Lower than the data-plane image's 32 MiB (lambdas/Dockerfile, MALLOC_MMAP_THRESHOLD_), which buys a handler's CPU
# back: one local process holds moto's S3 and every handler at once, its memory bound (docs/memory.md) was measured
# with 128 KiB, and a local run's time is mostly elsewhere (the emulator's waits, moto).
MMAP_THRESHOLD = 128 * 1024


class HandlerSlots:
    """At most ``size`` holders at once; ``active`` and ``waiting`` say how many hold a slot and wait for one."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"data-plane handler slots must be >= 1, got {size}")
        self.size = size
        self.active = 0
        self.waiting = 0
        self._condition = threading.Condition()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._condition:
            self.waiting += 1
            self._condition.wait_for(lambda: self.active < self.size)
            self.waiting -= 1
            self.active += 1
        try:
            yield
        finally:
            with self._condition:
                self.active -= 1
                self._condition.notify()


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no /proc)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def default_data_plane_slots(available: int | None) -> int:
    """``DEFAULT_DATA_PLANE_SLOTS``, fewer when the machine has less than ``BYTES_PER_SLOT`` free for each; >= 1."""
    if available is None:
        return DEFAULT_DATA_PLANE_SLOTS
    return max(1, min(DEFAULT_DATA_PLANE_SLOTS, available // BYTES_PER_SLOT))


def limit_malloc_arenas(arenas: int = LOCAL_ARENA_MAX) -> bool:
    """glibc's ``mallopt(M_ARENA_MAX)``: threads share ``arenas`` heaps instead of up to 8 per core, each keeping
    what its threads freed (moto runs every Map iteration in a thread). True when the C library took it."""
    libc = glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1)


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """glibc's ``mallopt(M_MMAP_THRESHOLD)``: blocks of ``threshold`` bytes and more are mapped on their own and go
    back to the system when freed. Setting it turns off glibc's dynamic threshold, which rises to the largest block
    freed so far and then serves such blocks from the heaps, which keep them (docs/memory.md). True when taken."""
    libc = glibc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1)
