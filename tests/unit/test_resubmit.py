"""Which failed rows are resubmitted, and how they are split into jobs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from lambdas.resubmit.logic import (
    RETRYABLE_JOB_CODES,
    describe,
    is_retryable,
    line_record_number,
    plan_retry_sizes,
    retryable_rows,
)


@pytest.mark.parametrize("code", sorted(RETRYABLE_JOB_CODES))
def test_every_job_level_failure_is_retried(code: str) -> None:
    # GIVEN a row that has no output because of its job (failed, expired, stopped, never started, line lost)
    # WHEN / THEN it is worth a second try
    assert is_retryable(code)


@pytest.mark.parametrize("code", ["408", "429", "500", "503", "599"])
def test_timeouts_throttling_and_server_errors_are_retried(code: str) -> None:
    # GIVEN a record error that depends on the moment, not on the record / WHEN / THEN it is retried
    assert is_retryable(code)


@pytest.mark.parametrize("code", ["400", "403", "404", "413", "422", "RECORD_ERROR", "UNPARSABLE_OUTPUT", "5", "5000"])
def test_errors_a_retry_would_repeat_are_not_retried(code: str) -> None:
    # GIVEN a deterministic error: a malformed or refused record, or an answer the adapter cannot read
    # WHEN / THEN resubmitting would bill the same failure again, so it is not retried
    assert not is_retryable(code)


def test_retryable_rows_are_the_row_numbers_of_retryable_codes() -> None:
    # GIVEN the error_code column of a job starting at row 1000
    codes = pa.array([None, "400", "JOB_FAILED", None, "429", "MISSING_OUTPUT", "400", "500"], pa.string())
    # WHEN selecting the rows to retry
    rows = retryable_rows(codes, first_row=1000)
    # THEN they are the absolute row numbers of the retryable codes, ascending
    assert rows.tolist() == [1002, 1004, 1005, 1007]
    assert rows.dtype == np.int64


def test_a_job_without_retryable_codes_gives_no_rows() -> None:
    assert retryable_rows(pa.array([None, "400", None], pa.string()), first_row=0).tolist() == []
    assert retryable_rows(pa.nulls(3, pa.string()), first_row=0).tolist() == []


@pytest.mark.parametrize(
    ("rows", "max_per_job", "sizes"),
    [
        (505, 200, [169, 168, 168]),  # balanced: sizes differ by at most one
        (200, 200, [200]),
        (100, 50_000, [100]),  # the minimum makes one job
        (120_001, 50_000, [40_001, 40_000, 40_000]),
        (99, 50_000, []),  # fewer than 100: reported, not resubmitted
        (0, 200, []),
    ],
)
def test_retry_jobs_are_balanced_between_100_and_the_maximum(rows: int, max_per_job: int, sizes: list[int]) -> None:
    # GIVEN a number of retryable rows and the run's max_records_per_job / WHEN planning the jobs
    planned = plan_retry_sizes(rows, max_per_job)
    # THEN the sizes are as few, as even and as large as the rules allow, and hold every row
    assert planned == sizes
    assert sum(planned) == (rows if rows >= 100 else 0)


@pytest.mark.parametrize(("rows", "max_per_job"), [(150, 100), (250, 100), (180, 150), (190, 120)])
def test_a_remainder_that_cannot_make_a_job_of_100_is_left_to_be_reported(rows: int, max_per_job: int) -> None:
    # GIVEN rows that no split into jobs of 100..max_per_job can hold entirely (only when max_per_job < 200)
    # WHEN planning
    planned = plan_retry_sizes(rows, max_per_job)
    # THEN every job keeps within the limits and only the remainder (< 100 + max_per_job) stays out
    assert planned and all(100 <= size <= max_per_job for size in planned)
    assert max(planned) - min(planned) <= 1
    assert 0 < rows - sum(planned) < 100 + max_per_job


def test_every_plan_keeps_the_job_rules() -> None:
    # GIVEN every count of retryable rows up to 2,000 and a few job maximums / WHEN planning / THEN no job breaks a rule
    for max_per_job in (100, 150, 200, 1000):
        for rows in range(100, 2000):
            planned = plan_retry_sizes(rows, max_per_job)
            assert all(100 <= size <= max_per_job for size in planned)
            assert max(planned) - min(planned) <= 1
            assert sum(planned) <= rows


def test_jobs_are_split_further_when_a_file_would_pass_the_byte_limit() -> None:
    # GIVEN 1,000 rows whose lines are 100 bytes each, at most 1,000 records per job and (scaled down) 30 kB per file
    line_ends = np.arange(1, 1001, dtype=np.int64) * 100
    # WHEN planning with the line sizes known
    sizes = plan_retry_sizes(1000, 1000, line_ends, max_bytes=30_000)
    # THEN as preprocess does, the jobs are more and smaller until each file fits; still balanced, still >= 100
    assert sizes == [250, 250, 250, 250]
    assert plan_retry_sizes(1000, 1000, line_ends, max_bytes=100_000) == [1000]


def test_records_too_large_for_jobs_of_100_within_the_byte_limit_are_refused() -> None:
    # GIVEN 150 lines of 1 kB and a (scaled down) 50 kB file limit: two jobs would be needed, of 75 records
    line_ends = np.arange(1, 151, dtype=np.int64) * 1000
    # WHEN / THEN planning raises (the state machine then finalizes without resubmission)
    with pytest.raises(ValueError, match="at least 100 records and at most 50000 bytes"):
        plan_retry_sizes(150, 1000, line_ends, max_bytes=50_000)


@pytest.mark.parametrize(
    ("line", "row"),
    [
        (b'{"recordId": "00000000042", "modelInput": {"x": 1}}', 42),  # how preprocess writes lines
        (json.dumps({"modelInput": {}, "recordId": "00000001234"}).encode(), 1234),  # any key order
        (b'{"modelInput": {}}', -1),
        (b"not json", -1),
    ],
)
def test_record_numbers_are_read_from_job_input_lines(line: bytes, row: int) -> None:
    assert line_record_number(line) == row


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"enabled": True, "retryable": 0, "resubmitted": 0, "not_retryable": 0, "job_count": 0}, "no row needs"),
        (
            {"enabled": True, "retryable": 505, "resubmitted": 505, "not_retryable": 92, "job_count": 3},
            "resubmitting 505 failed or missing rows in 3 jobs; 92 rows whose error a retry would repeat (e.g. 400)",
        ),
        (
            {"enabled": True, "retryable": 60, "resubmitted": 0, "not_retryable": 0, "job_count": 0},
            "fewer than the 100",
        ),
        (
            {"enabled": False, "retryable": 60, "resubmitted": 0, "not_retryable": 0, "job_count": 0},
            "resubmission is off",
        ),
        (
            {"enabled": True, "retryable": 150, "resubmitted": 100, "not_retryable": 0, "job_count": 1},
            "50 rows that fit no job of at least 100 are reported",
        ),
    ],
)
def test_the_plan_says_what_was_resubmitted_and_what_is_reported(counts: dict, expected: str) -> None:
    assert expected in describe(**counts)
