"""Start, follow and collect executions of the batch state machine: shared by the local runtime and the AWS target."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdas.shared.layout import run_id_from_execution_name, summary_key
from lambdas.shared.s3io import list_keys


@dataclass
class ExecutionOutcome:
    execution_arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None

    @property
    def error_message(self) -> str:
        """The most useful single line: the Lambda's errorMessage when the cause is a Lambda error payload."""
        if not self.cause:
            return self.error or self.status
        try:
            payload = json.loads(self.cause)
            return str(payload.get("errorMessage", self.cause))
        except (ValueError, AttributeError):
            return self.cause


class StateMachineRuns:
    """Needs ``sfn`` and ``s3`` clients, the data ``bucket`` and the ``state_machine_arn``."""

    sfn: Any
    s3: Any
    bucket: str
    state_machine_arn: str
    execution_prefix = "run"

    def upload_input(self, path: Path) -> str:
        key = f"inputs/{path.name}"
        self.s3.upload_file(str(path), self.bucket, key)
        return f"s3://{self.bucket}/{key}"

    def start(self, execution_input: dict[str, Any], name: str | None = None) -> str:
        name = name or f"{self.execution_prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        return str(
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(execution_input)
            )["executionArn"]
        )

    def describe(self, execution_arn: str) -> ExecutionOutcome:
        d = self.sfn.describe_execution(executionArn=execution_arn)
        output = json.loads(d["output"]) if d.get("output") else None
        return ExecutionOutcome(execution_arn, d["status"], output, d.get("error"), d.get("cause"))

    def wait(
        self, execution_arn: str, on_tick: Callable[[], None] | None = None, interval: float = 0.2
    ) -> ExecutionOutcome:
        while True:
            outcome = self.describe(execution_arn)
            if on_tick:
                on_tick()
            if outcome.status != "RUNNING":
                return outcome
            time.sleep(interval)

    def run_id(self, execution_arn: str) -> str:
        return run_id_from_execution_name(execution_arn.rsplit(":", 1)[-1])

    def download_outputs(self, run_id: str, output_dir: Path) -> list[Path]:
        output_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for key, _size in list_keys(self.s3, self.bucket, f"runs/{run_id}/output/"):
            target = output_dir / Path(key).name
            self.s3.download_file(self.bucket, key, str(target))
            written.append(target)
        summary = output_dir / "summary.json"
        self.s3.download_file(self.bucket, summary_key(run_id), str(summary))
        written.append(summary)
        return written

    def job_statuses(self) -> dict[str, int]:
        """Bedrock jobs by status, when the target can tell cheaply (the local emulator can); else empty."""
        return {}
