"""``--target aws`` against a "deployed" stack: moto's CloudFormation holds the stack outputs, and the state machine
behind them is our synthesized one (the local runtime), so the CLI's AWS path runs end to end without an account."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.runner import LocalRuntime, RuntimeOptions
from tests.e2e.local_runs import deploy_outputs, read_results, run_batch

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
