"""The batch state machine as the Batch API uses it: start one execution per batch (named by the batch id) and
describe it. A small wrapper over a Step Functions client (aiobotocore's, passed in), so the routes and the service
never build ARNs or parse Step Functions errors themselves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from lambdas.gateway.batch_status import Execution


class ExecutionNotStarted(Exception):
    """StartExecution was refused; the message is Step Functions' (its error code first)."""


class BatchExecutions:
    """Executions of ``state_machine_arn`` (``arn:<partition>:states:<region>:<account>:stateMachine:<name>``)."""

    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._client = client
        self.state_machine_arn = state_machine_arn

    def execution_arn(self, name: str) -> str:
        """``arn:...:execution:<state machine name>:<name>``: the ARN Step Functions gives the execution ``name``."""
        head, _, machine = self.state_machine_arn.rpartition(":stateMachine:")
        return f"{head}:execution:{machine}:{name}"

    async def start(self, name: str, execution_input: Mapping[str, Any]) -> str:
        """Start the execution ``name``; its ARN. Step Functions refuses a second one of the same name with another
        input (ExecutionAlreadyExists), so a batch id starts at most one run."""
        try:
            answer = await self._client.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(execution_input)
            )
        except ClientError as error:
            details = error.response.get("Error", {})
            raise ExecutionNotStarted(f"{details.get('Code', 'Error')}: {details.get('Message', error)}") from error
        return str(answer["executionArn"])

    async def describe(self, name: str) -> Execution | None:
        """The execution ``name``, or None when there is none (ExecutionDoesNotExist)."""
        try:
            d = await self._client.describe_execution(executionArn=self.execution_arn(name))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise
        return Execution(
            status=str(d["status"]),
            started_at=d["startDate"],
            stopped_at=d.get("stopDate"),
            error=d.get("error"),
            cause=d.get("cause"),
        )
