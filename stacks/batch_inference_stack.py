"""The batch inference stack: the data bucket, the Bedrock service role and the workflow, wired together."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import AppConfig
from stacks.constructs.batch_network import BatchNetwork
from stacks.constructs.batch_workflow import BatchWorkflow
from stacks.constructs.bedrock_batch_role import BedrockBatchRole, model_invocation_job_arn
from stacks.constructs.data_bucket import DataBucket
from stacks.constructs.encryption_key import EncryptionKey
from stacks.constructs.observability import BatchObservability


class BatchInferenceStack(cdk.Stack):
    """``data_bucket``, ``bedrock_role`` and ``workflow``; outputs ``BucketName`` and ``StateMachineArn``."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cfg: AppConfig,
        existing_bucket: s3.IBucket | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        # kmsKey: one customer-managed key for the bucket, logs, state machine and job output (None: AWS-managed keys).
        self.encryption_key = (
            EncryptionKey(self, "EncryptionKey", security=cfg.security).key if cfg.security.uses_kms else None
        )
        kms_key = self.encryption_key
        self.data_bucket = DataBucket(
            self,
            "DataBucket",
            settings=cfg.storage,
            existing_bucket=existing_bucket,
            encryption_key=kms_key if existing_bucket is None else None,  # an existing bucket keeps its encryption
        )
        bucket = self.data_bucket.bucket
        self.bedrock_role = BedrockBatchRole(
            self, "BedrockBatchRole", bucket=bucket, cfg=cfg.batch, encryption_key=kms_key
        )
        # batchVpc: the jobs run in a VPC (vpcConfig); Bedrock's role may manage their network interfaces there.
        self.network: BatchNetwork | None = None
        if cfg.security.batch_vpc is not None:
            self.network = BatchNetwork(
                self, "BatchNetwork", cfg=cfg.security.batch_vpc, settings=cfg.functions, encryption_key=kms_key
            )
            self.network.grant_bedrock_jobs(self.bedrock_role.role, model_invocation_job_arn(self))
        self.workflow = BatchWorkflow(
            self,
            "BatchWorkflow",
            bucket=bucket,
            bedrock_role=self.bedrock_role.role,
            cfg=cfg.batch,
            function_settings=cfg.functions,
            security=cfg.security,
            encryption_key=kms_key,
            job_subnet_ids=self.network.subnet_ids if self.network else (),
            job_security_group_ids=[self.network.security_group.security_group_id] if self.network else (),
        )

        # Each function's key patterns of the bucket (DATA_ACCESS), and Submit's iam:PassRole on the Bedrock role.
        self.workflow.grant_run_access(bucket, kms_key)

        cdk.CfnOutput(self, "BucketName", value=bucket.bucket_name, description="Upload inputs under inputs/")
        cdk.CfnOutput(
            self,
            "StateMachineArn",
            value=self.workflow.state_machine.state_machine_arn,
            description="Start a batch run here",
        )
        self.observability = BatchObservability(
            self,
            "Observability",
            state_machine=self.workflow.state_machine,
            functions=self.workflow.functions,
            cfg=cfg.observability,
        )
