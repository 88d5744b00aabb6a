"""The Bedrock service role: trusted for this account's invocation jobs only, scoped to job files and allowed models."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk.assertions import Template

from stacks.config import BatchConfig
from stacks.constructs.bedrock_batch_role import model_arns
from tests.infra.conftest import Synthesized, as_list, policy_statements


def _role_id(synthesized: Synthesized) -> str:
    return synthesized.logical_id(synthesized.stack.bedrock_role.role)


def test_trust_is_limited_to_this_accounts_invocation_jobs(synthesized: Synthesized) -> None:
    # GIVEN the Bedrock role
    trust = synthesized.resource(synthesized.stack.bedrock_role.role)["Properties"]["AssumeRolePolicyDocument"]
    # WHEN reading its single trust statement
    (statement,) = trust["Statement"]
    # THEN only bedrock.amazonaws.com may assume it, for a model-invocation-job of this account
    assert statement["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1]
    assert source_arn == [
        "arn:",
        {"Ref": "AWS::Partition"},
        ":bedrock:",
        {"Ref": "AWS::Region"},
        ":",
        {"Ref": "AWS::AccountId"},
        ":model-invocation-job/*",
    ]


def test_role_writes_only_bedrock_output_and_reads_only_job_files(synthesized: Synthesized, template: Template) -> None:
    # GIVEN every statement of the Bedrock role's policies
    statements = policy_statements(template, _role_id(synthesized))
    bucket_arn = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.data_bucket.bucket), "Arn"]}
    # WHEN grouping the resources by S3 action
    by_action: dict[str, list[object]] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, []).extend(as_list(statement["Resource"]))
    # THEN the actions are exactly these (no wildcards), PutObject only under bedrock-output, GetObject only job files
    assert set(by_action) == {"s3:GetObject", "s3:ListBucket", "s3:PutObject", "bedrock:InvokeModel"}
    assert by_action["s3:PutObject"] == [{"Fn::Join": ["", [bucket_arn, "/runs/*/bedrock-output/*"]]}]
    assert by_action["s3:GetObject"] == [{"Fn::Join": ["", [bucket_arn, "/runs/*/jobs/*"]]}]
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["runs/*"]}}


def test_invoke_model_covers_profiles_and_their_regional_models() -> None:
    # GIVEN a foundation model, a US inference profile and a global one
    stack = cdk.Stack(cdk.App(), "Arns", env=cdk.Environment(account="111122223333", region="us-east-1"))
    cfg = BatchConfig(
        allowed_model_ids=(
            "amazon.titan-embed-text-v2:0",
            "us.anthropic.claude-x-v1:0",
            "global.anthropic.claude-y-v1:0",
        ),
        bedrock_regions=("us-east-1", "us-west-2"),
    )
    # WHEN building the ARNs the role may invoke
    arns = [stack.resolve(arn) for arn in model_arns(stack, cfg)]
    flat = [
        "".join(p if isinstance(p, str) else "<p>" for p in a["Fn::Join"][1]) if isinstance(a, dict) else a
        for a in arns
    ]
    # THEN a foundation model is invoked in the stack's region, a profile in its own and its destination regions
    assert flat == [
        "arn:<p>:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
        "arn:<p>:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-x-v1:0",
        "arn:<p>:bedrock:us-east-1::foundation-model/anthropic.claude-x-v1:0",
        "arn:<p>:bedrock:us-west-2::foundation-model/anthropic.claude-x-v1:0",
        "arn:<p>:bedrock:us-east-1:111122223333:inference-profile/global.anthropic.claude-y-v1:0",
        "arn:<p>:bedrock:us-east-1::foundation-model/anthropic.claude-y-v1:0",
        "arn:<p>:bedrock:us-west-2::foundation-model/anthropic.claude-y-v1:0",
        "arn:<p>:bedrock:::foundation-model/anthropic.claude-y-v1:0",
    ]
