"""Bedrock model invocation logging (``modelInvocationLogging``): the account's invocation logs in a log group.

```
Bedrock (this account and region) ─ assumes ─> Role (aws:SourceAccount, aws:SourceArn conditions)
                                                 └─ logs:CreateLogStream, logs:PutLogEvents ─> LogGroup (kmsKey if set)
AwsCustomResource ─ onCreate/onUpdate: PutModelInvocationLoggingConfiguration (iam:PassRole on the role only)
                  └ onDelete: DeleteModelInvocationLoggingConfiguration
```
The logging configuration is one per account and region and has no CloudFormation resource: the custom resource
sets it (replacing any earlier one) and removes it when the stack is deleted. Text data is delivered; image, embedding
and video bodies are not (they would need an S3 destination for large data).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.constructs.conditions import service_for_this_account
from stacks.constructs.nag import acknowledge

# Neither action takes a resource (Service Authorization Reference: no resource types), so they need '*'.
LOGGING_ACTIONS = (
    "bedrock:PutModelInvocationLoggingConfiguration",
    "bedrock:DeleteModelInvocationLoggingConfiguration",
)
PHYSICAL_ID = "bedrock-model-invocation-logging"
# AwsCustomResource's singleton provider function (one per stack), named by its fixed UUID.
PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"


class ModelInvocationLogging(Construct):
    """``log_group``, ``role`` (assumed by Bedrock to write into it) and ``configuration`` (the custom resource)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        retention: logs.RetentionDays,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = cdk.Stack.of(self)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=retention,
            encryption_key=encryption_key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        # Confused deputy: only Bedrock acting for this account, in this region, may assume the role.
        bedrock = service_for_this_account(
            self, "bedrock.amazonaws.com", f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:*"
        )
        self.role = iam.Role(
            self, "Role", assumed_by=bedrock, description="Bedrock writes model invocation logs with this role"
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        logging_config = {
            "cloudWatchConfig": {"logGroupName": self.log_group.log_group_name, "roleArn": self.role.role_arn},
            "textDataDeliveryEnabled": True,
            "imageDataDeliveryEnabled": False,
            "embeddingDataDeliveryEnabled": False,
            "videoDataDeliveryEnabled": False,
        }
        put = cr.AwsSdkCall(
            service="@aws-sdk/client-bedrock",
            action="PutModelInvocationLoggingConfiguration",
            parameters={"loggingConfig": logging_config},
            physical_resource_id=cr.PhysicalResourceId.of(PHYSICAL_ID),
        )
        self.configuration = cr.AwsCustomResource(
            self,
            "Configuration",
            on_create=put,
            on_update=put,
            on_delete=cr.AwsSdkCall(
                service="@aws-sdk/client-bedrock", action="DeleteModelInvocationLoggingConfiguration"
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(actions=list(LOGGING_ACTIONS), resources=["*"]),
                    iam.PolicyStatement(
                        actions=["iam:PassRole"],
                        resources=[self.role.role_arn],
                        conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
                    ),
                ]
            ),
            install_latest_aws_sdk=False,
        )
        # Bedrock checks the role and the log group when the configuration is put: create them (and the role's
        # policy) first.
        self.configuration.node.add_dependency(self.role)
        self.configuration.node.add_dependency(self.log_group)
        self._acknowledge(stack)

    def _acknowledge(self, stack: cdk.Stack) -> None:
        acknowledge(
            self.configuration,
            "AwsSolutions-IAM5[Resource::*]",
            "PutModelInvocationLoggingConfiguration and DeleteModelInvocationLoggingConfiguration take no resource "
            "(an account-level setting); '*' is the only resource IAM accepts for them.",
        )
        provider = stack.node.try_find_child(PROVIDER_ID)
        if provider is None:
            return
        acknowledge(
            provider,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "AwsCustomResource's provider function (made by CDK) logs with the AWS managed basic execution policy; it "
            "runs only when the stack is deployed, updated or deleted.",
        )
        acknowledge(
            provider,
            "AwsSolutions-L1",
            "AwsCustomResource's provider function (made by CDK) uses the Node.js runtime CDK pins for it; it runs "
            "only when the stack is deployed, updated or deleted.",
        )
