"""Shared by the variant processes: time a run (best of BENCH_REPEAT, default 2) and report it with peak RSS."""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values``: the nearest rank, no interpolation."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _cpu_seconds() -> float:
    """CPU time of this process, every thread (user + system): less sensitive than wall time to a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    """This process's own peak RSS: ``VmHWM`` of /proc/self/status. Not ``ru_maxrss``: Linux carries it over
    ``execve`` from the parent's memory when subprocess spawns the child with vfork, so a variant would start at its
    parent's peak."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # no /proc: ru_maxrss, KiB on Linux


def report(variant: str, run: Callable[[Path], int], out: Path) -> None:
    """Run ``run(out_dir)`` BENCH_REPEAT times in fresh output folders; print the best time (and the least CPU time)
    as one JSON line.
    The last run's output is kept in ``out/last``.

    The first run pays one-time costs (imports inside libraries, kernel setup, cold page cache) that a warm Lambda
    does not pay again; best-of-N measures the steady state, the same way for every variant.
    """
    repeat = max(1, int(os.environ.get("BENCH_REPEAT", "2")))
    times, cpu_times, rows = [], [], 0
    for attempt in range(repeat):
        target = out / f"run{attempt}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        rows = run(target)
        times.append(time.perf_counter() - started)
        cpu_times.append(_cpu_seconds() - cpu_started)
        if attempt < repeat - 1:
            shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(out / "last", ignore_errors=True)
    target.rename(out / "last")  # the last run's output stays for inspection (and as the floor's reference)
    peak_mb = peak_rss_kib() / 1024
    print(
        json.dumps(
            {
                "variant": variant,
                "rows": rows,
                "seconds": min(times),
                "all_seconds": times,
                "cpu_seconds": min(cpu_times),
                "peak_rss_mb": peak_mb,
            }
        )
    )
