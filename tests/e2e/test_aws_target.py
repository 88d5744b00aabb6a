"""``--target aws`` against a "deployed" stack: moto's CloudFormation holds the stack outputs, and the state machine
behind them is our synthesized one (the local runtime), so the CLI's AWS path (``batch`` and ``batch cancel``) runs
end to end without an account."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.__main__ import main
from local.runner import LocalRuntime, RuntimeOptions, synth_template
from tests.e2e.local_runs import CLAUDE, cancel_when_a_job_runs, deploy_outputs, read_results, read_summary, run_batch
from tests.e2e.test_local_faults import assert_every_row_once_with_a_response_or_an_error, write_topics

pytestmark = pytest.mark.slow


def test_aws_target_finds_the_stack_starts_and_follows_the_run(tmp_path: Path, capsys):
    # GIVEN a deployed stack (its outputs) and a local CSV
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"topic {i}\n" for i in range(120)))
    with LocalRuntime(RuntimeOptions(step_seconds=0.05)) as runtime:
        deploy_outputs(runtime, "BedrockBatchInference")
        # WHEN the CLI runs with --target aws
        code = run_batch(path, tmp_path / "out", "--target", "aws", step_seconds=None)
        # THEN the input went to the stack's bucket, the execution succeeded and the results came back
        assert code == 0, capsys.readouterr().err
        keys = [o["Key"] for o in runtime.s3.list_objects_v2(Bucket=runtime.bucket, Prefix="inputs/")["Contents"]]
        assert keys == ["inputs/topics.csv"]
        executions = runtime.sfn.list_executions(stateMachineArn=runtime.state_machine_arn)["executions"]
        assert len(executions) == 1 and executions[0]["name"].startswith("cli-")
    table = read_results(tmp_path / "out")
    assert table.num_rows == 120 and table.column("error_code").null_count == 120


def test_aws_target_without_the_stack_is_one_clear_line(tmp_path: Path, capsys):
    # GIVEN credentials and a region, but no stack of that name
    path = tmp_path / "topics.csv"
    path.write_text("topic\n" + "".join(f"t{i}\n" for i in range(120)))
    with LocalRuntime(RuntimeOptions(step_seconds=0.05)):
        # WHEN the CLI runs with --target aws
        code = run_batch(path, tmp_path / "out", "--target", "aws", "--stack-name", "Missing", step_seconds=None)
    # THEN one line names the stack, the region and the fix, with exit code 2
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "stack 'Missing' does not exist in region us-east-1" in err[0] and "make deploy" in err[0]


def test_batch_cancel_stops_a_running_run_of_the_stack(tmp_path: Path, capsys):
    # GIVEN a deployed stack running 300 rows in three batch jobs, one at a time, each status lasting 2 s
    rows = 300
    path = write_topics(tmp_path / "topics.parquet", rows)
    out = tmp_path / "out"
    options = RuntimeOptions(step_seconds=2, max_concurrent_jobs=1)
    with LocalRuntime(options, template=synth_template(options)) as runtime:
        deploy_outputs(runtime, "BedrockBatchInference")
        execution = {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": runtime.upload_input(path)}
        execution_arn = runtime.start(execution | {"max_records_per_job": 100})
        run_id = runtime.run_id(execution_arn)
        printed: list[str] = []

        def cancel() -> None:
            assert main(["batch", "cancel", run_id, "--target", "aws"]) == 0
            printed.append(capsys.readouterr().out)

        # WHEN `python -m cli batch cancel` runs as soon as the first job is InProgress; every job is held where it
        # is from then on, so none can complete on its own
        outcome = runtime.wait(execution_arn, on_tick=cancel_when_a_job_runs(runtime, cancel))
        assert outcome.status == "SUCCEEDED", outcome.error_message
        runtime.download_outputs(run_id, out)
        jobs = runtime.emulator.jobs()
    # THEN the command said what would happen: no job of the three had ended
    (said,) = printed
    assert f"run {run_id}: cancel requested at" in said and "0 of 3 jobs have ended" in said
    # AND the running job was stopped and no other was created; every row is in the output once
    assert [job["status"] for job in jobs] == ["Stopped"]
    results = read_results(out).to_pylist()
    assert_every_row_once_with_a_response_or_an_error(results, rows)
    # AND the records it processed are delivered, the others are batch_cancelled
    summary = read_summary(out)
    assert summary["complete"] is True and summary["error_counts"] == {"batch_cancelled": 250}
    assert summary["jobs_by_status"] == {"Stopped": 1, "Cancelled": 2}
