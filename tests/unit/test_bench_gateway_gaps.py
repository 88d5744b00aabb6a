"""bench/gateway_bench.py's gaps: the time between the pieces of text a client receives, pooled over the measured
answers beside TTFT, so read pacing's trade (fewer, longer gaps for less CPU) shows in the report."""

from __future__ import annotations

import asyncio

import pytest

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


def test_an_answers_arrivals_give_its_ttft_total_frames_and_gaps(monkeypatch) -> None:
    # GIVEN an answer started at 10.0 s whose text arrived at 10.2, 10.2005 (the same read), 10.25 and 10.3 s
    import bench.gateway_bench as bench

    clock = iter([10.2, 10.2005, 10.25, 10.3, 10.4])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    arrivals = bench.Arrivals(10.0)
    # WHEN each piece is recorded and the answer ends at 10.4 s
    for _ in range(4):
        arrivals.text()
    ttft, total, frames, gaps = arrivals.timing("no text")
    # THEN the first piece gives the TTFT, the end the total, every piece counts, and only pieces ARRIVAL apart or
    # more make a gap (the one in the first's read does not)
    assert round(ttft, 6) == 0.2 and round(total, 6) == 0.4 and frames == 4
    assert [round(gap, 6) for gap in gaps] == [0.0495, 0.05]


def test_an_answer_without_text_is_an_error() -> None:
    # GIVEN an answer that ended before any text arrived
    from bench.gateway_bench import Arrivals

    # WHEN its timing is asked THEN the error names what was missing
    with pytest.raises(RuntimeError, match="no text delta"):
        Arrivals(0.0).timing("no text delta")
