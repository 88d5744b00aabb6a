"""The customer-managed KMS key of ``kmsKey`` (created or imported) and the grants scoped to it."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import SecurityConfig
from stacks.constructs.bedrock_batch_role import model_invocation_job_arn
from stacks.constructs.conditions import for_this_account

# What reading and writing SSE-KMS objects needs: Decrypt for gets (and multipart uploads), GenerateDataKey for puts.
S3_READ_KEY_ACTIONS = ["kms:Decrypt"]
S3_OBJECT_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]
LOGS_KEY_ACTIONS = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]


class EncryptionKey(Construct):
    """``key``: a new key (``kmsKey: "create"``, rotation on) or the existing key ARN of ``kmsKey``.

    A created key's policy lets CloudWatch Logs use it for this account's log groups, and (``bedrock_batch_jobs``)
    Bedrock for this account's batch inference jobs (``aws:SourceAccount`` and ``aws:SourceArn``: the confused-deputy
    conditions); ``BatchWorkflow`` adds CloudWatch Logs delivery for its state machine's logs (``allow_log_delivery``).
    An existing key's policy is its owner's: it must allow the same services, since a stack cannot edit it.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        security: SecurityConfig,
        description: str = "Encrypts the Bedrock batch inference data, logs, state machine and job output",
        bedrock_batch_jobs: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        if not security.uses_kms:
            raise ValueError('EncryptionKey needs kmsKey set ("create" or a key ARN)')
        if not security.creates_key:
            self.key: kms.IKey = kms.Key.from_key_arn(self, "Key", str(security.kms_key))
            return
        stack = cdk.Stack.of(self)
        key = kms.Key(
            self,
            "Key",
            description=description,
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=LOGS_KEY_ACTIONS,
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        if not bedrock_batch_jobs:  # e.g. the gateway's key: no batch job writes with it
            self.key = key
            return
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowBedrockBatchJobsOfThisAccount",
                principals=[iam.ServicePrincipal("bedrock.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=["*"],
                conditions=for_this_account(self, model_invocation_job_arn(self)),
            )
        )
        self.key = key


def grant_s3_objects_key(key: kms.IKey, grantee: iam.IGrantable, *, write: bool = True) -> None:
    """Let ``grantee`` read (and with ``write``, write) SSE-KMS objects encrypted with ``key``, through S3 only."""
    grant_key_through(key, grantee, "s3", S3_OBJECT_KEY_ACTIONS if write else S3_READ_KEY_ACTIONS)


def grant_key_through(
    key: kms.IKey,
    grantee: iam.IGrantable,
    service: str,
    actions: list[str],
    *,
    context: dict[str, str] | None = None,
) -> None:
    """Let ``grantee`` use ``key`` for ``actions`` only when ``service`` (``s3``, ``secretsmanager``, ``dynamodb``)
    asks on its behalf in this region (``kms:ViaService``), and with ``context``, only with that encryption context
    (``{"aws:dynamodb:tableName": ...}``: each pair becomes a ``kms:EncryptionContext:<key>`` condition)."""
    stack = cdk.Stack.of(key)
    conditions = {f"kms:EncryptionContext:{name}": value for name, value in (context or {}).items()}
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=actions,
            resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"{service}.{stack.region}.amazonaws.com", **conditions}},
        )
    )


def allow_log_delivery(key: kms.IKey) -> None:
    """Let CloudWatch Logs' delivery service (``delivery.logs.amazonaws.com``, which delivers a state machine's logs)
    decrypt with ``key`` for this account's log deliveries only.

    CDK's ``StateMachine`` would add the same action unconditioned; ``BatchWorkflow`` hands it the key by ARN so that
    this conditioned statement is the key policy's only one for that service. A no-op for an imported key: its policy is
    its owner's.
    """
    stack = cdk.Stack.of(key)
    deliveries = stack.format_arn(service="logs", resource="*", arn_format=cdk.ArnFormat.NO_RESOURCE_NAME)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowLogDeliveryOfThisAccount",
            principals=[iam.ServicePrincipal("delivery.logs.amazonaws.com")],
            actions=["kms:Decrypt"],
            resources=["*"],
            conditions=for_this_account(stack, deliveries),
        )
    )
