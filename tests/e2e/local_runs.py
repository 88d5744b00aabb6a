"""Helpers of the end-to-end CLI runs: the ``batch`` command line, and reading and checking what a run wrote."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from cli.__main__ import main
from local.runner import LocalRuntime
from prompt_templates import get_template

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT_ID = "joke_about_topic"


def run_batch(
    path: Path,
    out: Path,
    *options: str,
    model_id: str = CLAUDE,
    prompt_id: str | None = PROMPT_ID,
    step_seconds: str | None = "0.05",
) -> int:
    """``batch`` from the CLI, quietly, from ``path`` to ``out``; ``options`` are more flags. A ``prompt_id`` or
    ``step_seconds`` of None leaves that flag out. Returns the exit code."""
    args = ["batch", "--input", str(path), "--model-id", model_id]
    if prompt_id is not None:
        args += ["--prompt-id", prompt_id]
    args += [*options, "--output", str(out), "--quiet"]
    if step_seconds is not None:
        args += ["--step-seconds", step_seconds]
    return main(args)


def read_results(out: Path) -> pa.Table:
    """Every job's Parquet output, in job order."""
    return pq.read_table(sorted(out.glob("*.parquet")))


def read_summary(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "summary.json").read_text()))


def assert_every_row_echoes_its_own_prompt(result: pa.Table, table: pa.Table) -> None:
    """Each response is its row's own rendered prompt (the emulator echoes it), and no row has an error."""
    template = get_template(PROMPT_ID)
    assert result.column("response").to_pylist() == [template.render(row) for row in table.to_pylist()]
    assert result.column("error_code").null_count == table.num_rows


def deploy_outputs(runtime: LocalRuntime, stack_name: str) -> None:
    """A "deployed" batch stack in moto's CloudFormation: its outputs name the local runtime's bucket and state
    machine, so ``--target aws`` finds and drives them."""
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {
            "BucketName": {"Value": runtime.bucket},
            "StateMachineArn": {"Value": runtime.state_machine_arn},
        },
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName=stack_name, TemplateBody=json.dumps(template)
    )


def cancel_when_a_job_runs(runtime: LocalRuntime, cancel: Callable[[], None]) -> Callable[[], None]:
    """An ``on_tick`` for ``runtime.wait``: calls ``cancel`` once, as soon as the first job is InProgress, and from
    then on holds every job where it is (the emulator's clock no longer moves it), so none can complete on its own."""
    held: set[str] = set()

    def tick() -> None:
        for job in runtime.emulator.jobs():
            if job["jobId"] not in held and job["status"] in ("Submitted", "Validating", "Scheduled", "InProgress"):
                if job["status"] == "InProgress" and not held:
                    cancel()
                if held or job["status"] == "InProgress":
                    runtime.emulator.state.set_job_status(job["jobId"], job["status"], hold=True)
                    held.add(job["jobId"])

    return tick
