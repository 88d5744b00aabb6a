"""``--target aws``: the deployed stack, found from its CloudFormation outputs, driven with the caller's credentials."""

from __future__ import annotations

from typing import Any

from local.executions import StateMachineRuns

DEFAULT_STACK = "BedrockBatchInference"


class StackNotFound(RuntimeError):
    pass


class AwsBatchTarget(StateMachineRuns):
    """Starts executions of the deployed state machine and reads results from the deployed bucket."""

    execution_prefix = "cli"

    def __init__(self, session: Any, stack_name: str = DEFAULT_STACK) -> None:
        outputs = stack_outputs(session.client("cloudformation"), stack_name)
        self.bucket = outputs["BucketName"]
        self.state_machine_arn = outputs["StateMachineArn"]
        self.s3 = session.client("s3")
        self.sfn = session.client("stepfunctions")

    def __enter__(self) -> AwsBatchTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as exc:
        raise StackNotFound(
            f"stack '{stack_name}' was not found ({exc.response['Error'].get('Message', exc)}); deploy it with "
            "`make deploy`, or pass --stack-name and check the region (AWS_REGION) and credentials"
        ) from None
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}
    missing = {"BucketName", "StateMachineArn"} - set(outputs)
    if missing:
        raise StackNotFound(f"stack '{stack_name}' has no output(s) {sorted(missing)}; is it this project's stack?")
    return outputs
