"""``--target aws``: the deployed stacks, found from their CloudFormation outputs, used with your credentials."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cli.aws_errors import AwsSetupError
from local.executions import StateMachineRuns

DEFAULT_STACK = "BedrockBatchInference"
DEFAULT_GATEWAY_STACK = "BedrockModelGateway"
BATCH_OUTPUTS = ("BucketName", "StateMachineArn")
GATEWAY_OUTPUTS = ("ApiUrl",)  # and AccessKeysSecretArn, needed only without --access-key


class StackNotFound(AwsSetupError):
    pass


class AwsBatchTarget(StateMachineRuns):
    """Starts executions of the deployed state machine and reads results from the deployed bucket."""

    execution_prefix = "cli"

    def __init__(self, session: Any, stack_name: str = DEFAULT_STACK) -> None:
        outputs = stack_outputs(session.client("cloudformation"), stack_name, BATCH_OUTPUTS)
        self.region = session.region_name
        self.bucket = outputs["BucketName"]
        self.state_machine_arn = outputs["StateMachineArn"]
        self.s3 = session.client("s3")
        self.sfn = session.client("stepfunctions")

    def __enter__(self) -> AwsBatchTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass(frozen=True)
class DeployedGateway:
    """The deployed gateway: its base URL (``ApiUrl``) and its access-key secret (``AccessKeysSecretArn``)."""

    url: str
    secret_arn: str | None  # None: a stack deployed before it had the output

    @classmethod
    def find(cls, session: Any, stack_name: str = DEFAULT_GATEWAY_STACK) -> DeployedGateway:
        outputs = stack_outputs(session.client("cloudformation"), stack_name, GATEWAY_OUTPUTS)
        return cls(outputs["ApiUrl"].rstrip("/"), outputs.get("AccessKeysSecretArn"))

    def put_key_command(self, ref: str) -> str:
        return (
            f"aws secretsmanager put-secret-value --secret-id {self.secret_arn or '<the gateway AccessKeys secret>'} "
            f'--secret-string \'{{"{ref}": "<key>"}}\''
        )

    def access_key(self, session: Any, ref: str) -> str:
        """The key of ``ref`` in the stack's secret ({"<ref>": "<key>"}), or an AwsSetupError saying how to set it.
        Until an operator puts the keys, the secret holds the random string CloudFormation generated."""
        if self.secret_arn is None:
            raise AwsSetupError(
                "the gateway stack has no output AccessKeysSecretArn (deployed by an older version): redeploy it with "
                "`make deploy`, or pass --access-key"
            )
        client = session.client("secretsmanager")
        try:
            raw = client.get_secret_value(SecretId=self.secret_arn)["SecretString"]
        except client.exceptions.ResourceNotFoundException:
            raise AwsSetupError(f"the gateway's access-key secret has no value: {self.put_key_command(ref)}") from None
        try:
            keys = json.loads(raw)
        except ValueError:
            keys = None
        if not isinstance(keys, dict) or not isinstance(keys.get(ref), str) or not keys[ref]:
            raise AwsSetupError(
                f"the gateway's access-key secret holds no key for '{ref}': {self.put_key_command(ref)} "
                "(or pass --access-key)"
            )
        return str(keys[ref])


def stack_outputs(cloudformation: Any, stack_name: str, required: tuple[str, ...] = BATCH_OUTPUTS) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as exc:
        # DescribeStacks answers ValidationError for a stack that does not exist (CloudFormation API reference);
        # other errors (credentials, permissions, throttling) are not a missing stack: cli.aws_errors explains some.
        if exc.response.get("Error", {}).get("Code") != "ValidationError":
            raise
        region = cloudformation.meta.region_name
        raise StackNotFound(
            f"stack '{stack_name}' does not exist in region {region}: deploy it with `make deploy`, or pass "
            "--stack-name / set AWS_DEFAULT_REGION to where it is deployed"
        ) from None
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}
    missing = set(required) - set(outputs)
    if missing:
        raise StackNotFound(
            f"stack '{stack_name}' has no output(s) {sorted(missing)}: is it this project's stack, fully deployed? "
            "(`make deploy`)"
        )
    return outputs
