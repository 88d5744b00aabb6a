"""Preprocess gives glibc's free heap memory back by a budget of resident growth, not by a count of batches."""

from __future__ import annotations

import platform

import pytest

from lambdas.shared.allocator import FreeMemoryBudget, anonymous_resident_bytes

MB = 1 << 20


class Process:
    """A process's resident memory as the budget reads it, and the trims it was given (a release drops the resident
    memory to ``after_release``)."""

    def __init__(self, resident: int | None, after_release: int = 0) -> None:
        self.resident, self.after_release = resident, after_release
        self.releases = 0

    def read(self) -> int | None:
        return self.resident

    def release(self) -> bool:
        self.releases += 1
        self.resident = self.after_release
        return True

    def budget(self, budget: int) -> FreeMemoryBudget:
        return FreeMemoryBudget(budget, resident=self.read, release=self.release)


def test_no_release_while_the_resident_memory_stays_within_the_budget_of_its_floor() -> None:
    # GIVEN a process at 300 MB and a budget of 32 MB
    process = Process(300 * MB)
    budget = process.budget(32 * MB)
    # WHEN it grows to exactly the budget over where it started, checked after each step
    released = []
    for resident in (300, 310, 320, 332):
        process.resident = resident * MB
        released.append(budget.check())
    # THEN nothing is released: the growth never exceeded the budget
    assert released == [False] * 4
    assert process.releases == budget.releases == 0


def test_a_release_when_the_growth_exceeds_the_budget_and_the_floor_is_then_where_the_release_left_it() -> None:
    # GIVEN a process at 300 MB whose release gives back to 310 MB, and a budget of 32 MB
    process = Process(300 * MB, after_release=310 * MB)
    budget = process.budget(32 * MB)
    budget.check()
    # WHEN it grows to 333 MB (over the budget), then to 342 MB (within the budget of the new floor), then to 343 MB
    outcomes = []
    for resident in (333, 342, 343):
        process.resident = resident * MB
        outcomes.append(budget.check())
    # THEN the first growth is released, the next stays within the budget of 310 MB, the last exceeds it
    assert outcomes == [True, False, True]
    assert process.releases == budget.releases == 2


def test_the_floor_follows_the_resident_memory_down() -> None:
    # GIVEN a process at 300 MB that drops to 250 MB (memory given back by another pool), and a budget of 32 MB
    process = Process(300 * MB, after_release=250 * MB)
    budget = process.budget(32 * MB)
    budget.check()
    process.resident = 250 * MB
    budget.check()
    # WHEN it grows again to 290 MB: within the budget of where it started, beyond that of its lowest
    process.resident = 290 * MB
    # THEN it is released: the budget counts from the lowest the memory was since the last release
    assert budget.check() is True


def test_nothing_is_released_where_the_resident_memory_cannot_be_read() -> None:
    # GIVEN a process whose resident memory cannot be read (no /proc: not Linux)
    process = Process(None)
    budget = process.budget(0)
    # WHEN checked a few times THEN nothing is released
    assert [budget.check() for _ in range(3)] == [False] * 3
    assert process.releases == 0


@pytest.mark.skipif(platform.system() != "Linux", reason="/proc/self/statm is Linux's")
def test_the_anonymous_resident_memory_grows_with_memory_written_and_held() -> None:
    # GIVEN this process's anonymous resident memory
    before = anonymous_resident_bytes()
    # WHEN it writes and holds 64 MB
    held = bytearray(64 * MB)
    for offset in range(0, len(held), 4096):
        held[offset] = 1
    after = anonymous_resident_bytes()
    # THEN it reads about 64 MB more (the pages are resident and not backed by a file)
    assert before is not None and after is not None
    assert after - before >= 60 * MB
    del held
