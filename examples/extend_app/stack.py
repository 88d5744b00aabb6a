"""A team's own stack that reuses the project's constructs: its bucket, key, prompt template, model and gateway bot.

```
TeamGenAiStack
  TeamKey (EncryptionKey) ──────────── encrypts the team's buckets, every log group, the state machine, job output
  TeamAccessLogs, TeamData, TeamMedia  the team's own S3 buckets (SSE-KMS, TLS only, access-logged)
  Data      = DataBucket(existing_bucket=TeamData)              wraps the team's bucket, creates none
  Batch     = BatchWorkflow(bucket=..., encryption_key=TeamKey,  makes its Bedrock role and grants itself;
                            prompt_templates_file=prompt_templates.json)   + the team's template, staged in the image
  Gateway   = ModelGateway(existing_media_bucket=TeamMedia, encryption_key=TeamKey)   bots: bots.json (team model)
```
The team's model (``amazon.nova-pro-v1:0``) comes from configuration: ``allowedModelIds`` in this example's
``cdk.json``. Nothing here edits the project's files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from stacks.config import AppConfig, GatewayConfig, SecurityConfig
from stacks.constructs.batch_workflow import BatchWorkflow
from stacks.constructs.data_bucket import DataBucket
from stacks.constructs.encryption_key import EncryptionKey
from stacks.constructs.model_gateway import ModelGateway
from stacks.constructs.nag import acknowledge

HERE = Path(__file__).resolve().parent
CDK_JSON = HERE / "cdk.json"
STACK_NAME = "TeamGenAi"
# Paths relative to the project root: the Lambda assets are built from the project (prompt_templates_file is staged
# into the data-plane image; the bot file into the gateway's zip).
PROMPT_TEMPLATES_FILE = "examples/extend_app/prompt_templates.json"
TEAM_MODEL_ID = "amazon.nova-pro-v1:0"  # added to allowedModelIds in this example's cdk.json
MEDIA_EXPIRATION = cdk.Duration.days(7)


class TeamGenAiStack(cdk.Stack):
    """``key``, ``access_logs_bucket``, ``data_bucket`` and ``media_bucket`` (the team's), ``data`` (DataBucket),
    ``batch`` (BatchWorkflow) and ``gateway`` (ModelGateway)."""

    def __init__(self, scope: Construct, id_: str, *, cfg: AppConfig, gateway: GatewayConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        if TEAM_MODEL_ID not in cfg.batch.allowed_model_ids:
            raise ValueError(f"allowedModelIds must list the team's model {TEAM_MODEL_ID!r}; add it to {CDK_JSON}")
        # The team's own resources. A created EncryptionKey's policy lets CloudWatch Logs and Bedrock jobs use it.
        self.key: kms.IKey = EncryptionKey(self, "TeamKey", security=SecurityConfig(kms_key="create")).key
        self.access_logs_bucket = s3.Bucket(
            self,
            "TeamAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # server access log delivery needs SSE-S3
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This is the server access log bucket of the team's buckets; logging it into itself would loop.",
        )
        self.data_bucket = self._team_bucket("TeamData", "data/")
        self.media_bucket = self._team_bucket(
            "TeamMedia", "media/", s3.LifecycleRule(id="ExpireMedia", expiration=MEDIA_EXPIRATION)
        )

        # The project's constructs, given the team's resources.
        self.data = DataBucket(self, "Data", existing_bucket=self.data_bucket)
        self.batch = BatchWorkflow(
            self,
            "Batch",
            bucket=self.data.bucket,
            cfg=cfg.batch,
            function_settings=cfg.functions,
            security=cfg.security,
            encryption_key=self.key,
            prompt_templates_file=PROMPT_TEMPLATES_FILE,
        )
        self.gateway = ModelGateway(
            self,
            "Gateway",
            cfg=gateway,
            function_settings=cfg.functions,
            storage=cfg.storage,
            existing_media_bucket=self.media_bucket,
            encryption_key=self.key,
        )

        cdk.CfnOutput(self, "BucketName", value=self.data.bucket.bucket_name, description="Upload inputs under inputs/")
        cdk.CfnOutput(self, "StateMachineArn", value=self.batch.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "ApiUrl", value=self.gateway.api.url)

    def _team_bucket(self, id_: str, log_prefix: str, *rules: s3.LifecycleRule) -> s3.Bucket:
        return s3.Bucket(
            self,
            id_,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=[
                *rules,
                s3.LifecycleRule(
                    id="AbortIncompleteMultipartUploads",
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                ),
            ],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )


def build_app(
    context: Mapping[str, object] | None = None, *, skip_bundling: bool = False, outdir: str | None = None
) -> tuple[cdk.App, TeamGenAiStack]:
    """The example app: this directory's ``cdk.json`` context, then ``context``, then (CLI) ``-c``; cdk-nag registered.

    ``skip_bundling`` stages no Lambda code (tests; never deploy such a synth).
    """
    defaults = json.loads(CDK_JSON.read_text()).get("context", {})
    app = cdk.App(
        context={**defaults, **(context or {})},
        post_cli_context={"aws:cdk:bundling-stacks": []} if skip_bundling else None,
        outdir=outdir,
    )
    cfg = AppConfig.from_app(app)
    stack = TeamGenAiStack(
        app,
        STACK_NAME,
        cfg=cfg,
        gateway=GatewayConfig.from_app(app),
        description="A team's stack reusing the Bedrock batch workflow and model gateway constructs",
    )
    for key, value in cfg.security.tags:
        cdk.Tags.of(app).add(key, value)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack
