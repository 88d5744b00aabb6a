"""``python -m cli batch cancel RUN_ID --target aws`` on moto: the stack found from its CloudFormation outputs, the run
from the running executions of its state machine (moto keeps them RUNNING: nothing is executed here), the marker
written once and only for a running run; every refusal is one line with its exit code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cli.__main__ import main
from cli.batch import LOCAL_CANCEL
from lambdas.gateway.batch_records import cancel_key as gateway_cancel_key
from lambdas.shared import layout

REGION, ACCOUNT = "us-east-1", "123456789012"
STACK = "BedrockBatchInference"
RUN = "cli-20261206-120000-abcdef"  # an execution name of `python -m cli batch`: its own run id


@dataclass
class Deployed:
    s3: Any
    sfn: Any
    bucket: str
    state_machine_arn: str

    def start(self, name: str = RUN) -> str:
        return str(self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name)["executionArn"])

    def put(self, key: str, body: Any) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(body).encode())

    def keys(self, prefix: str) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])]


@pytest.fixture
def deployed() -> Iterator[Deployed]:
    """A "deployed" batch stack: a bucket, a state machine, and the stack's outputs naming them."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="batch-data")
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Pass", "End": True}}})
        arn = sfn.create_state_machine(
            name="BatchInference", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
        )["stateMachineArn"]
        template = {
            "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {"BucketName": {"Value": "batch-data"}, "StateMachineArn": {"Value": arn}},
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=STACK, TemplateBody=json.dumps(template)
        )
        yield Deployed(s3, sfn, "batch-data", arn)


def cancel(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["batch", "cancel", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_running_run_gets_its_marker_and_the_command_says_what_follows(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a running run that planned three jobs, one of which has ended
    deployed.start()
    deployed.put(layout.manifest_key(RUN), [{"index": 0}, {"index": 1}, {"index": 2}])
    deployed.put(layout.result_key(RUN, 0), {"succeeded": 100})
    # WHEN it is cancelled with the CLI
    code, out, err = cancel(capsys, RUN, "--target", "aws")
    # THEN the marker is written where the run looks for it, with the time of the request
    assert code == 0, err
    marker = json.loads(deployed.s3.get_object(Bucket=deployed.bucket, Key=layout.cancel_key(RUN))["Body"].read())
    assert datetime.fromisoformat(marker["requested_at"]).tzinfo == UTC
    # AND the command says what happens: the jobs stopped, the processed records delivered, the others cancelled
    assert f"run {RUN}: cancel requested at {marker['requested_at']} (s3://batch-data/runs/{RUN}/cancel.json)" in out
    assert "1 of 3 jobs have ended" in out and "in flight is stopped" in out
    assert "every record already processed is in the output" in out and "batch_cancelled" in out
    assert f":execution:BatchInference:{RUN}" in out


def test_a_second_cancel_keeps_the_first_marker(deployed: Deployed, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a running run already cancelled
    deployed.start()
    deployed.put(layout.cancel_key(RUN), {"requested_at": "2026-12-06T12:00:00+00:00"})
    written = deployed.s3.head_object(Bucket=deployed.bucket, Key=layout.cancel_key(RUN))["ETag"]
    # WHEN it is cancelled again (the target given before the action this time)
    code = main(["batch", "--target", "aws", "cancel", RUN])
    out = capsys.readouterr().out
    # THEN it says so and writes nothing: the marker's time stays the cancel's time
    assert code == 0 and "a cancel was already requested at" in out and "nothing written" in out
    assert deployed.s3.head_object(Bucket=deployed.bucket, Key=layout.cancel_key(RUN))["ETag"] == written
    assert "the run has not planned its jobs yet" in out


def test_a_gateway_batch_is_cancelled_by_its_id_where_the_gateway_writes_its_marker(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a gateway batch's run (its execution named by the batch id, whose run id is derived from it)
    batch_id = "batch_0123456789abcdef0123456789ab"
    deployed.start(batch_id)
    # WHEN it is cancelled by the batch id
    code, _, err = cancel(capsys, batch_id, "--target", "aws")
    # THEN the marker is the one the gateway's own cancel writes (and its status reads)
    assert code == 0, err
    assert deployed.keys("runs/") == [gateway_cancel_key(batch_id)]


def test_a_finished_run_is_not_cancelled(deployed: Deployed, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a run that has ended with its summary
    arn = deployed.start()
    deployed.sfn.stop_execution(executionArn=arn)
    deployed.put(layout.summary_key(RUN), {"complete": True})
    # WHEN it is cancelled / THEN one line says it has finished, exit 1, and no marker is written
    code, _, err = cancel(capsys, RUN, "--target", "aws")
    assert code == 1 and err.strip().splitlines() == [
        f"error: run '{RUN}' has finished (its summary.json is written): there is nothing to cancel"
    ]
    assert deployed.keys(layout.cancel_key(RUN)) == []


def test_a_run_without_a_running_execution_is_not_cancelled(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run with files whose execution was aborted before its summary
    arn = deployed.start()
    deployed.put(layout.manifest_key(RUN), [{"index": 0}])
    deployed.sfn.stop_execution(executionArn=arn)
    # WHEN it is cancelled / THEN one line says it is not running, exit 1, and no marker is written
    code, _, err = cancel(capsys, RUN, "--target", "aws")
    assert code == 1 and len(err.strip().splitlines()) == 1 and f"run '{RUN}' is not running" in err
    assert deployed.keys(layout.cancel_key(RUN)) == []


def test_an_unknown_run_is_one_line_naming_where_the_id_comes_from(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN / WHEN a run id nothing knows is cancelled
    code, _, err = cancel(capsys, "cli-nothing", "--target", "aws")
    # THEN one line says so, names where the id comes from, exit 2, and nothing is written
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no run 'cli-nothing' in s3://batch-data/runs/" in err and "run <id>:" in err
    assert deployed.keys("runs/") == []


def test_a_missing_stack_is_one_line(deployed: Deployed, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN / WHEN the cancel names a stack that does not exist
    code, _, err = cancel(capsys, RUN, "--target", "aws", "--stack-name", "Missing")
    # THEN it is the AWS target's one line about the stack, exit 2
    assert code == 2 and err.strip().splitlines() == [
        "error: stack 'Missing' does not exist in region us-east-1: deploy it with `make deploy`, or pass "
        "--stack-name / set AWS_DEFAULT_REGION to where it is deployed"
    ]


def test_the_local_target_says_a_local_run_is_cancelled_in_its_own_process(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN / WHEN a cancel without --target aws
    code, _, err = cancel(capsys, RUN)
    # THEN one line says why another process cannot reach a local run and what to do instead, exit 2
    assert code == 2 and err.strip() == f"error: {LOCAL_CANCEL}"


def test_a_run_without_its_arguments_names_them(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN / WHEN `batch` without --input, --model-id and --output (no longer required by the parser, for `cancel`)
    code = main(["batch", "--model-id", "m"])
    # THEN the missing ones are named in one line, exit 2, as the parser did
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == (
        "error: the following arguments are required: --input, --output (or: batch cancel RUN_ID)"
    )
