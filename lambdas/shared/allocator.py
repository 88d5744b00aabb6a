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

Preprocess: the same cause, at a larger scale. Its glibc heaps hold the JSONL lines of a batch, the part buffers
and the Parquet writer's pages (the decoded rows are in Arrow's mimalloc pool, which glibc's settings do not touch):
tens of MB freed and allocated again for every batch, so at 128 KiB each batch's memory went back to the system and
was faulted in again. With 256 MiB (64 MiB kept too little: 424k faults against 435k, the blocks freed together at
a heap's top are larger): 2.24M CSV rows, minor faults 435k to 290-350k, about 0.5 s less CPU (system time; a
loaded machine, docs/preprocess-performance.md). Its memory stays flat with the row count all the same: the
periodic ``malloc_trim`` (``release_free_memory``) gives back the free memory of every heap whatever this threshold
is, and the memory kept at a heap's top is what the next batch takes again (``bench.memory``: CSV and JSONL at 200k
and 2M rows, the same peaks within the runs' noise).

Arrow's bundled mimalloc (the pool preprocess writes ``records.parquet`` from) reads ``MIMALLOC_*`` variables too:
its version (3.x) waits 1,000 ms before it purges freed memory (``purge_delay``). 100 ms lowered preprocess's peaks
(mimalloc's resident memory about 30% lower over a CSV pass) at 1.4-2x the page faults; with the trim by budget it
was measured with (docs/memory.md, "A trim by budget, and mimalloc's purge delay"), make bench's preprocess took
2.74x the floor's time on Parquet and 2.07x on CSV (targets <= 2x), so neither is kept: no setting of it is added.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

FUNCTION_ENVIRONMENT: dict[str, dict[str, str]] = {
    "postprocess": {"MALLOC_TRIM_THRESHOLD_": str(64 << 20)},
    "preprocess": {"MALLOC_TRIM_THRESHOLD_": str(256 << 20)},
}


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library this process runs on, when it is glibc (it has ``malloc_trim`` and ``mallopt``); None
    elsewhere. Looked up in the process's own symbols, never with ``ctypes.util.find_library``: that runs
    ``ldconfig`` in a child process, a fork of this whole process that shows as a spike of its size in the RSS."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def release_free_memory() -> bool:
    """glibc's ``malloc_trim(0)``: give the free pages inside every heap back to the system, not only those at a
    heap's top (malloc_trim(3)). Preprocess calls it every ``TRIM_EVERY_BATCHES`` batches: the holes its batches
    leave in the heaps add up over a long input (from 500k to 2.24M CSV rows the peak grew 1.31x without the trim,
    1.20x with it; JSONL 1.23x and 1.03x; docs/memory.md), and at that pace (about one trim every half million rows)
    it costs no measurable CPU, where one every two batches did (the pages are faulted in again). The local runtime
    calls it after each data-plane handler. True when glibc took the call."""
    libc = glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@contextlib.contextmanager
def arrow_pool(name: str) -> Iterator[str]:
    """Arrow's default memory pool is ``name`` (``"mimalloc"``) inside the block, the one it was before after it;
    yields the backend in use. Where this pyarrow was built without it (``NotImplementedError``, pyarrow's
    ``mimalloc_memory_pool``), the pool stays as it is. Arrow buffers remember their pool: one allocated inside the
    block and freed after it goes back to the pool it came from.

    Preprocess runs on mimalloc whenever it writes ``records.parquet`` itself (every input but one Parquet object or
    a prefix of Parquet files with one schema, which are copied): the passes that parse a CSV or JSONL input's 2 MB
    blocks, or decode the row groups of a prefix of Parquet files of several schemas or a hub dataset, join them into
    batches, check them and write them as Parquet. On glibc's heaps (the image's ``ARROW_DEFAULT_MEMORY_POOL=system``)
    the holes these buffers of every size leave added up with the input, even with the periodic ``malloc_trim``: the
    CSV pass alone, 6M rows against 600k, 469 against 358 MB; the function from 200k to 20M rows, CSV 1.61x, JSONL
    1.37x, a prefix of 20 Parquet files 1.79x. On mimalloc the CSV pass is flat (335, 339, 351 MB at 200k, 2M, 6M
    rows), with no more CPU in our runs. A run over one Parquet object (or a prefix copied so) keeps the image's
    system pool: it is flat there, and mimalloc's own floor is higher (docs/memory.md)."""
    import pyarrow as pa  # here: the control-plane functions import this module without pyarrow

    before = pa.default_memory_pool()
    try:
        pool = getattr(pa, f"{name}_memory_pool")()
    except NotImplementedError:
        yield before.backend_name
        return
    pa.set_memory_pool(pool)
    try:
        yield pool.backend_name
    finally:
        pa.set_memory_pool(before)
