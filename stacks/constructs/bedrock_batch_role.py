"""The service role Bedrock assumes to run batch inference jobs, and the model ARNs a deployment may invoke."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import BatchConfig, base_model_id, is_inference_profile
from stacks.constructs.conditions import any_resource_arn, service_for_this_account
from stacks.constructs.data_bucket import RUNS_PREFIX, grant_objects
from stacks.constructs.nag import acknowledge_wildcard_resource

JOB_INPUT_KEYS = f"{RUNS_PREFIX}*/jobs/*"
JOB_OUTPUT_KEYS = f"{RUNS_PREFIX}*/bedrock-output/*"


def model_invocation_job_arn(scope: Construct) -> str:
    """``arn:<partition>:bedrock:<region>:<account>:model-invocation-job/*``: job ids exist only after submit."""
    return any_resource_arn(scope, "bedrock", "model-invocation-job", cdk.ArnFormat.SLASH_RESOURCE_NAME)


def model_arns(scope: Construct, cfg: BatchConfig) -> list[str]:
    """The ARNs to allow for ``cfg.allowed_model_ids``.

    A foundation-model id is invoked in the stack's region: ``arn:<p>:bedrock:<region>::foundation-model/<id>``. A
    system inference-profile id (``us.``/``eu.``/``apac.``/``global.``) needs the profile ARN in the stack's region
    plus the foundation model it routes to in every region of ``cfg.bedrock_regions``; a ``global.`` profile may route
    to any commercial region, which IAM expresses with the region-less foundation-model ARN.
    """
    stack = cdk.Stack.of(scope)
    partition = cdk.Aws.PARTITION

    def foundation_model(model_id: str, region: str) -> str:
        return f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"

    arns: list[str] = []
    for model_id in cfg.allowed_model_ids:
        if not is_inference_profile(model_id):
            arns.append(foundation_model(model_id, stack.region))
            continue
        base = base_model_id(model_id)
        arns.append(f"arn:{partition}:bedrock:{stack.region}:{stack.account}:inference-profile/{model_id}")
        arns.extend(foundation_model(base, region) for region in cfg.bedrock_regions)
        if model_id.startswith("global."):
            arns.append(foundation_model(base, ""))
    return list(dict.fromkeys(arns))


class BedrockBatchRole(Construct):
    """``role``: trusted by Bedrock for this account's invocation jobs only; reads job inputs, writes job outputs."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bucket: s3.IBucket,
        cfg: BatchConfig,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """With ``encryption_key`` the role may decrypt the job inputs and encrypt the job output with that key (the
        key of the bucket and of the job's ``s3EncryptionKeyId``), and nothing else with it."""
        super().__init__(scope, id_)
        principal = service_for_this_account(self, "bedrock.amazonaws.com", model_invocation_job_arn(self))
        self.role = iam.Role(
            self, "Role", assumed_by=principal, description="Service role of the Bedrock batch inference jobs"
        )
        grant_objects(bucket, self.role, read=[JOB_INPUT_KEYS], list_prefixes=[RUNS_PREFIX])
        output = bucket.arn_for_objects(JOB_OUTPUT_KEYS)
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=[output]))
        self.role.add_to_policy(iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=model_arns(self, cfg)))
        if encryption_key is not None:
            self.role.add_to_policy(
                iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[encryption_key.key_arn])
            )
        for resource, reason in (
            (bucket.arn_for_objects(JOB_INPUT_KEYS), "Bedrock reads the job input files of any run"),
            (output, "Bedrock writes the output of any run's jobs"),
        ):
            acknowledge_wildcard_resource(self.role, resource, f"{reason}; run ids are only known at run time.")
