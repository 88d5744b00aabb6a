"""Start, follow and collect executions of the batch state machine: shared by the local runtime and the AWS target."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lambdas.shared.cancel import cancel_requested
from lambdas.shared.layout import (
    cancel_key,
    manifest_key,
    results_prefix,
    run_id_from_execution_name,
    run_prefix,
    summary_key,
)
from lambdas.shared.s3io import list_keys

CancelState = Literal["requested", "already_requested", "finished", "not_running", "unknown"]


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


@dataclass(frozen=True)
class CancelOutcome:
    """What ``StateMachineRuns.cancel`` did: ``requested`` (the marker was written now), ``already_requested`` (it was
    there: ``requested_at`` says since when), ``finished`` (the run has its summary), ``not_running`` (the run has
    files but no running execution: it failed or was aborted) or ``unknown`` (no run of that id)."""

    state: CancelState
    run_id: str
    marker: str  # the cancel marker's key
    execution_arn: str | None = None
    requested_at: str | None = None
    jobs_planned: int | None = None  # None: the run has not planned its jobs yet
    jobs_ended: int = 0


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

    def running_execution(self, run_id: str) -> str | None:
        """The ARN of the running execution whose run id is ``run_id`` (any execution name, as the steps derive the
        run id from it), or None."""
        pages = self.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.state_machine_arn, statusFilter="RUNNING"
        )
        for page in pages:
            for execution in page["executions"]:
                if run_id_from_execution_name(execution["name"]) == run_id:
                    return str(execution["executionArn"])
        return None

    def _exists(self, key: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        return any(item["Key"] == key for item in listed)

    def cancel(self, run: str, now: datetime | None = None) -> CancelOutcome:
        """Cancel a running run by writing its cancel marker (``lambdas.shared.cancel``), once: a run that is not
        running (finished, failed, unknown) gets no marker, and a marker already there is left as it is (its time is
        the cancel's). ``run``: the run id, or the execution's name (a gateway batch's id), from which the steps
        derive the run id. The outcome counts the run's planned jobs and those that have ended."""
        run_id = run_id_from_execution_name(run)  # a run id is its own
        marker = cancel_key(run_id)
        execution_arn = self.running_execution(run_id)
        if execution_arn is None:
            if self._exists(summary_key(run_id)):
                return CancelOutcome("finished", run_id, marker)
            known = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{run_prefix(run_id)}/", MaxKeys=1)
            return CancelOutcome("not_running" if known.get("Contents") else "unknown", run_id, marker)
        jobs_planned = None
        if self._exists(manifest_key(run_id)):
            body = self.s3.get_object(Bucket=self.bucket, Key=manifest_key(run_id))["Body"].read()
            jobs_planned = len(json.loads(body))
        jobs_ended = sum(1 for _ in list_keys(self.s3, self.bucket, results_prefix(run_id)))
        found = cancel_requested(self.s3, self.bucket, run_id)
        if found is not None:
            return CancelOutcome(
                "already_requested", run_id, marker, execution_arn, found.requested_at, jobs_planned, jobs_ended
            )
        moment = (now or datetime.now(UTC)).isoformat()
        self.s3.put_object(
            Bucket=self.bucket,
            Key=marker,
            Body=json.dumps({"requested_at": moment}).encode(),
            ContentType="application/json",
        )
        return CancelOutcome("requested", run_id, marker, execution_arn, moment, jobs_planned, jobs_ended)

    def job_statuses(self) -> dict[str, int]:
        """Bedrock jobs by status, when the target can tell cheaply (the local emulator can); else empty."""
        return {}
