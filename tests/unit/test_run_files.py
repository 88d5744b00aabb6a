"""The run-file readers' I/O shape: a run's job results are read several at a time, and come back by job index."""

from __future__ import annotations

import io
import threading
from typing import Any

from lambdas.shared import layout
from lambdas.shared.models import JobResult
from lambdas.shared.run_files import RESULT_READS_AT_ONCE, read_results

RUN = "run-1"


class ResultsBucket:
    """An S3 stand-in holding one result object per job, whose GETs wait at a barrier of ``together`` parties: the
    reads pass only when that many are in flight at once (a broken barrier fails the read)."""

    def __init__(self, jobs: int, together: int) -> None:
        self.objects = {
            layout.result_key(RUN, index): JobResult(
                index=index, job_arn=None, status="Completed", record_count=1, succeeded=1, failed=0, output_key="x"
            ).model_dump_json()
            for index in range(jobs)
        }
        self.barrier = threading.Barrier(together, timeout=30)

    def get_paginator(self, _operation: str) -> Any:
        objects = self.objects

        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{"Contents": [{"Key": key, "Size": len(body)} for key, body in sorted(objects.items())]}]

        return Pages()

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's parameter names)
        self.barrier.wait()
        return {"Body": io.BytesIO(self.objects[Key].encode())}


def test_a_runs_results_are_read_several_at_once_and_keyed_by_job():
    # GIVEN 48 jobs' results in a bucket whose GETs complete only when RESULT_READS_AT_ONCE of them are in flight
    bucket = ResultsBucket(jobs=RESULT_READS_AT_ONCE * 3, together=RESULT_READS_AT_ONCE)
    # WHEN the results are read
    results = read_results(bucket, "bucket", RUN)
    # THEN every job's result is there under its index (reads one after the other would break the barrier: the
    # first GET would wait alone until the barrier's timeout, and fail)
    assert sorted(results) == list(range(len(bucket.objects)))
    assert all(result.index == index for index, result in results.items())
