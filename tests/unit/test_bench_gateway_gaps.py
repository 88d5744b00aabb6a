"""bench/gateway_bench.py's gaps: the time between the pieces of text a client receives, pooled over the measured
answers beside TTFT, so read pacing's trade (fewer, longer gaps for less CPU) shows in the report."""

from __future__ import annotations

import asyncio

from bench.gateway_bench import Timing, load


def test_a_runs_gaps_are_pooled_over_its_answers() -> None:
    # GIVEN answers whose clients saw gaps of 20 ms, and one of 50 and 90 ms (seconds in the timings)
    answers = iter([(0.01, 1.0, 3, [0.02, 0.02]), (0.01, 1.0, 3, [0.05, 0.09]), (0.01, 1.0, 2, [0.02])])

    async def stream() -> Timing:
        return next(answers)

    # WHEN the bench loads them one at a time
    summary = asyncio.run(load(stream, requests=3, concurrency=1))
    # THEN the report's gaps are the pooled gaps' p50 and p99, in ms, and their count
    assert summary["gaps"] == 5
    assert round(summary["gap_p50_ms"], 6) == 20.0 and round(summary["gap_p99_ms"], 6) == 90.0
