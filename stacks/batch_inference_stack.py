"""The batch inference stack: the data bucket, the Bedrock service role and the workflow, wired together."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import AppConfig
from stacks.constructs.batch_network import BatchNetwork
from stacks.constructs.batch_workflow import BatchWorkflow
from stacks.constructs.bedrock_batch_role import BedrockBatchRole, model_invocation_job_arn
from stacks.constructs.data_bucket import INPUTS_PREFIX, RUNS_PREFIX, DataBucket, grant_objects
from stacks.constructs.encryption_key import EncryptionKey, grant_s3_objects_key
from stacks.constructs.nag import acknowledge_wildcard_resource
from stacks.constructs.observability import BatchObservability

# Who may touch which keys of the data bucket (S3 key patterns; list_prefixes limit s3:ListBucket by s3:prefix).
DATA_ACCESS: dict[str, dict[str, list[str]]] = {
    "preprocess": {
        "read": [f"{INPUTS_PREFIX}*", f"{RUNS_PREFIX}*"],
        "write": [f"{RUNS_PREFIX}*"],
        "list_prefixes": [INPUTS_PREFIX, RUNS_PREFIX],
    },
    # IAM's '*' spans '/': runs/*/output/* also covers the resubmission jobs' runs/<run>/retry/output/ (and results).
    "postprocess": {
        "read": [f"{RUNS_PREFIX}*"],
        "write": [f"{RUNS_PREFIX}*/output/*", f"{RUNS_PREFIX}*/results/*"],
        "list_prefixes": [RUNS_PREFIX],
    },
    "resubmit": {
        "read": [f"{RUNS_PREFIX}*"],
        "write": [f"{RUNS_PREFIX}*/retry/*"],
        "list_prefixes": [RUNS_PREFIX],
    },
    # Finalize rewrites the outputs that have resubmitted rows.
    "finalize": {
        "read": [f"{RUNS_PREFIX}*"],
        "write": [f"{RUNS_PREFIX}*/summary.json", f"{RUNS_PREFIX}*/output/*"],
        "list_prefixes": [RUNS_PREFIX],
    },
}


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
            self, "DataBucket", settings=cfg.storage, existing_bucket=existing_bucket, encryption_key=kms_key
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

        for key, access in DATA_ACCESS.items():
            fn = self.workflow.functions[key]
            grant_objects(bucket, fn.role, **access)
            if kms_key is not None:
                grant_s3_objects_key(kms_key, fn.role)
            for pattern in dict.fromkeys(access["read"] + access["write"]):
                acknowledge_wildcard_resource(
                    fn.role,
                    bucket.arn_for_objects(pattern),
                    f"{key} works on the files of runs (and uploads) whose ids are only known at run time; "
                    "access is limited to this key pattern of the data bucket.",
                )
        # Submit passes the Bedrock role to CreateModelInvocationJob, and may pass it to nothing else.
        self.workflow.functions["submit"].role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.bedrock_role.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
            )
        )

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
