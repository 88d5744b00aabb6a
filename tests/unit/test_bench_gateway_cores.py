"""bench/gateway_bench.py's core placement: the gateway's process on one core of its own, the emulator and the load
generator on the rest, and nothing pinned where that cannot be done."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.gateway_bench import autogroup_nice, core_busy_seconds, io_calls, pin, placement, set_nice


def test_the_gateway_gets_one_core_and_the_others_the_rest() -> None:
    # GIVEN a machine with cores 0 to 3 available to the bench
    # WHEN the bench places its processes
    cores = placement({0, 1, 2, 3})
    # THEN the gateway's process has one core, not shared with the emulator and the load generator, which have the rest
    assert cores.gateway == {3} and cores.others == {0, 1, 2}
    assert "pinned to core 3" in cores.note
    # AND the load generator takes the idle gateway's core in a direct run, the emulator's side in a gateway run
    assert cores.generator("direct") == {3} and cores.generator("gateway") == {0, 1, 2}


@pytest.mark.parametrize(
    ("available", "topology", "enabled", "reason"),
    [
        ({0}, "split", True, "1 core available"),
        ({0, 1}, "shared", True, "shared topology"),
        ({0, 1}, "split", False, "BENCH_GATEWAY_PIN=0"),
    ],
)
def test_nothing_is_pinned_where_the_gateway_cannot_have_a_core_of_its_own(
    available: set[int], topology: str, enabled: bool, reason: str
) -> None:
    # GIVEN one core, or the emulator in the gateway's process, or pinning turned off
    # WHEN the bench places its processes
    cores = placement(available, topology, enabled=enabled)
    # THEN no process is pinned, and the note says why and that all three share the cores
    assert cores.gateway is None and cores.others is None
    assert reason in cores.note and "share" in cores.note


@pytest.fixture
def two_threads() -> Iterator[int]:
    """A running process that started a second thread, in a session (and autogroup) of its own; its pid."""
    code = "import sys, threading; threading.Thread(target=sys.stdin.read).start(); print('ready', flush=True)"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def _threads(pid: int) -> list[int]:
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_pin_moves_every_thread_of_a_running_process(two_threads: int) -> None:
    # GIVEN a process that started a second thread before being pinned
    core = min(os.sched_getaffinity(0))
    # WHEN it is pinned to one core
    pin(two_threads, {core})
    # THEN each of its threads runs on that core only
    assert len(_threads(two_threads)) == 2
    assert all(os.sched_getaffinity(thread) == {core} for thread in _threads(two_threads))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_set_nice_changes_every_thread_of_a_running_process(two_threads: int) -> None:
    # GIVEN a process that started a second thread, at this process's priority
    nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)  # lowering a priority needs no privilege
    # WHEN its priority is set
    set_nice(two_threads, nice)
    # THEN each of its threads has it, and so has its session's autogroup where there are autogroups
    assert [os.getpriority(os.PRIO_PROCESS, thread) for thread in _threads(two_threads)] == [nice, nice]
    assert autogroup_nice(two_threads) in (nice, None)


def test_a_cores_busy_time_is_everything_but_idle_and_iowait() -> None:
    # GIVEN /proc/stat lines for the machine and two cores (user nice system idle iowait irq softirq steal guest ...)
    stat = (
        "cpu  900 0 300 9000 50 0 10 0 400 0\n"
        "cpu0 500 0 200 4000 30 0 10 0 400 0\n"
        "cpu1 400 0 100 5000 20 0 0 0 0 0\n"
        "intr 12345\n"
    )
    ticks = os.sysconf("SC_CLK_TCK")
    # WHEN the busy time of core 1, and of both cores, is read
    # THEN it sums user to steal less idle and iowait (guest time is already in user), in seconds
    assert core_busy_seconds({1}, stat) == 500 / ticks
    assert core_busy_seconds({0, 1}, stat) == (710 + 500) / ticks


def test_a_processs_read_and_write_system_calls_come_from_its_io_counters() -> None:
    # GIVEN /proc/<pid>/io's text
    io = "rchar: 6976\nwchar: 120\nsyscr: 10\nsyscw: 3\nread_bytes: 0\nwrite_bytes: 0\ncancelled_write_bytes: 0\n"
    # WHEN its system calls are read THEN they are syscr and syscw
    assert io_calls(0, io) == (10, 3)
    # AND this process's own counters are read from /proc when no text is given
    reads, writes = io_calls(os.getpid())
    assert reads > 0 and writes >= 0
