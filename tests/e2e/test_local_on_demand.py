"""On-demand jobs and cancel end to end: the synthesized state machine (moto), in-process Lambdas and the Bedrock
emulator. A run of fewer rows than a batch job takes is answered through the runtime over several invocations of
"Run job on demand" (the definition's loop); a cancelled run stops its job in flight, submits no other, delivers what
was processed and still ends SUCCEEDED with every row accounted for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdas.on_demand import logic as on_demand
from lambdas.shared import layout
from local import runner
from local.runner import LocalRuntime, RuntimeOptions, synth_template
from tests.e2e.local_runs import CLAUDE, cancel_when_a_job_runs, read_results, read_summary
from tests.e2e.test_local_faults import assert_every_row_once_with_a_response_or_an_error, write_topics

RECORDS_PER_INVOCATION = 12  # the fake Lambda context has time for this many records, then runs low


def run_locally(runtime: LocalRuntime, path: Path, out: Path, **execution_input: Any) -> tuple[str, Any]:
    execution = {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": runtime.upload_input(path)}
    execution_arn = runtime.start(execution | execution_input)
    return execution_arn, runtime.wait(execution_arn)


@pytest.mark.slow
def test_a_run_under_the_batch_minimum_is_answered_on_demand_over_several_invocations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 45 rows (fewer than the 100 a batch job takes), and Lambda contexts whose time runs low after a dozen
    # records, so that the state machine has to call "Run job on demand" again for the rest
    path = write_topics(tmp_path / "topics.parquet", 45)

    def remaining_ms(context: Any) -> int:
        context.reads = getattr(context, "reads", 0) + 1
        return 900_000 if context.reads <= RECORDS_PER_INVOCATION else 1_000

    monkeypatch.setattr(runner._FakeContext, "get_remaining_time_in_millis", remaining_ms)
    invocations: list[int] = []
    real_run = on_demand.run_on_demand

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = real_run(*args, **kwargs)
        invocations.append(out.counters["processedRecordCount"])
        return out

    monkeypatch.setattr(on_demand, "run_on_demand", counted)
    out = tmp_path / "out"
    # WHEN the synthesized state machine runs it locally
    with LocalRuntime(RuntimeOptions(step_seconds=0.05)) as runtime:
        execution_arn, outcome = run_locally(runtime, path, out)
        assert outcome.status == "SUCCEEDED", outcome.error_message
        runtime.download_outputs(runtime.run_id(execution_arn), out)
        batch_jobs = runtime.emulator.jobs()
    # THEN no batch job was created, and the runner was called until the job was done, each call going on from the last
    assert batch_jobs == []
    assert invocations == [12, 24, 36, 45]
    # AND every row has its answer, once; the summary counts them as on-demand records priced at on-demand rates
    rows = read_results(out).to_pylist()
    assert_every_row_once_with_a_response_or_an_error(rows, 45)
    assert all(row["error_code"] is None for row in rows)
    summary = read_summary(out)
    assert summary["complete"] is True and summary["on_demand_records"] == 45
    assert [job["on_demand"] for job in summary["jobs"]] == [True]
    assert "no batch discount" in summary["estimated_cost"]["message"]


@pytest.mark.slow
def test_a_cancelled_run_stops_its_job_submits_no_other_and_accounts_for_every_row(tmp_path: Path) -> None:
    # GIVEN 300 rows in three batch jobs run one at a time, and statuses that last 2 s
    rows, per_job = 300, 100
    path = write_topics(tmp_path / "topics.parquet", rows)
    out = tmp_path / "out"
    options = RuntimeOptions(step_seconds=2, max_concurrent_jobs=1)
    with LocalRuntime(options, template=synth_template(options)) as runtime:
        execution = {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": runtime.upload_input(path)}
        execution_arn = runtime.start(execution | {"max_records_per_job": per_job})
        run_id = runtime.run_id(execution_arn)

        def cancel() -> None:
            body = json.dumps({"requested_at": "2026-12-06T12:00:00+00:00"}).encode()
            runtime.s3.put_object(Bucket=runtime.bucket, Key=layout.cancel_key(run_id), Body=body)

        # WHEN the run is cancelled (the marker written, as the gateway's cancel does) as soon as the first job is
        # InProgress; every job is held where it is from then on, so none can complete on its own
        outcome = runtime.wait(execution_arn, on_tick=cancel_when_a_job_runs(runtime, cancel))
        assert outcome.status == "SUCCEEDED", outcome.error_message
        runtime.download_outputs(run_id, out)
        jobs = runtime.emulator.jobs()
    # THEN the job that was running was stopped (StopModelInvocationJob) and no other job was ever created
    assert [job["status"] for job in jobs] == ["Stopped"]
    # AND the 50 records it processed before the stop are delivered, every other row is batch_cancelled, once
    results = read_results(out).to_pylist()
    assert_every_row_once_with_a_response_or_an_error(results, rows)
    codes = [row["error_code"] for row in sorted(results, key=lambda row: row["id"])]
    assert codes == [None] * 50 + ["batch_cancelled"] * 250
    # AND nothing was resubmitted, and the summary accounts for every row
    summary = read_summary(out)
    assert summary["complete"] is True and summary["error_counts"] == {"batch_cancelled": 250}
    assert summary["resubmission"]["rows_resubmitted"] == 0
    assert summary["jobs_by_status"] == {"Stopped": 1, "Cancelled": 2}
