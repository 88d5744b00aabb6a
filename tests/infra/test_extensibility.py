"""Constructs take existing resources (bucket, key, VPC) and reject combinations that would configure new ones."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from stacks.config import BatchConfig, BatchVpcConfig, FunctionConfig, StorageConfig
from stacks.constructs.batch_network import BatchNetwork
from stacks.constructs.batch_workflow import BatchWorkflow
from stacks.constructs.data_bucket import DataBucket


def _logical_id(stack: cdk.Stack, construct: Any) -> str:
    return stack.get_logical_id(construct.node.default_child)


def _stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Reuse")


def _workflow(stack: cdk.Stack, bucket: s3.IBucket | None = None, **options: Any) -> BatchWorkflow:
    """A ``BatchWorkflow`` with default settings, on ``bucket`` or a new one, and the construct's ``options``."""
    return BatchWorkflow(
        stack,
        "Batch",
        bucket=bucket if bucket is not None else s3.Bucket(stack, "B"),
        cfg=BatchConfig(),
        function_settings=FunctionConfig(),
        **options,
    )


def test_data_bucket_rejects_an_existing_bucket_with_a_key_for_a_new_one() -> None:
    # GIVEN an existing bucket and a key that would encrypt a new bucket
    stack = _stack()
    existing = s3.Bucket.from_bucket_name(stack, "Theirs", "their-bucket")
    key = kms.Key.from_key_arn(stack, "Key", "arn:aws:kms:us-east-1:123456789012:key/abc")
    # WHEN / THEN the construct names what to drop
    with pytest.raises(ValueError, match="existing_bucket or encryption_key, not both"):
        DataBucket(stack, "DataBucket", existing_bucket=existing, encryption_key=key)


def test_workflow_with_a_vpc_object_makes_its_security_group_and_role() -> None:
    # GIVEN a VPC of the caller's own stack and a bucket of theirs
    stack = _stack()
    vpc = ec2.Vpc(
        stack,
        "TeamVpc",
        max_azs=2,
        nat_gateways=0,
        subnet_configuration=[ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
    )
    bucket = s3.Bucket(stack, "TeamBucket")
    # WHEN the workflow is given them (no Bedrock role: it makes its own and grants itself)
    workflow = _workflow(stack, bucket, existing_vpc=vpc)
    template = Template.from_stack(stack)
    # THEN the jobs' security group is in that VPC, Submit gets its subnets, and the role may create job ENIs
    assert workflow.network is not None and isinstance(workflow.bedrock_role, iam.Role)
    template.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": {"Ref": _logical_id(stack, vpc)}})
    submit = template.to_json()["Resources"][_logical_id(stack, workflow.functions["submit"].function)]
    assert "JOB_SUBNET_IDS" in submit["Properties"]["Environment"]["Variables"]
    assert "ec2:CreateNetworkInterface" in json.dumps(template.find_resources("AWS::IAM::Policy"))
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like({"Action": "iam:PassRole"})])}},
    )


def test_workflow_rejects_a_vpc_object_with_subnet_ids() -> None:
    # GIVEN both a VPC object and subnet ids
    stack = _stack()
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"])
    # WHEN / THEN the workflow refuses the ambiguity
    with pytest.raises(ValueError, match="existing_vpc .* not both"):
        _workflow(stack, existing_vpc=vpc, job_subnet_ids=["subnet-0123456789abcdef0"])


def test_network_takes_config_or_vpc_object_exactly_once() -> None:
    stack = _stack()
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"])
    with pytest.raises(ValueError, match="exactly one"):
        BatchNetwork(stack, "Both", cfg=BatchVpcConfig(create=True), existing_vpc=vpc)
    with pytest.raises(ValueError, match="exactly one"):
        BatchNetwork(stack, "Neither")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/hostname", "inside the project"),
        ("prompt_templates.py", "existing .json file"),
        ("tests/infra/data/missing.json", "existing .json file"),
    ],
)
def test_workflow_rejects_a_bad_prompt_templates_file(path: str, message: str) -> None:
    # GIVEN a templates file that cannot be staged / WHEN / THEN synth fails naming the problem
    stack = _stack()
    with pytest.raises(ValueError, match=message):
        _workflow(stack, prompt_templates_file=path)


def test_storage_settings_default_for_a_new_bucket() -> None:
    # GIVEN no settings / WHEN a new bucket is made / THEN the defaults apply (runs/ expire after 30 days, retained)
    stack = _stack()
    DataBucket(stack, "DataBucket")
    Template.from_stack(stack).has_resource(
        "AWS::S3::Bucket",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "LifecycleConfiguration": {
                        "Rules": Match.array_with([Match.object_like({"Id": "ExpireRunData", "ExpirationInDays": 30})])
                    }
                }
            ),
        },
    )
    assert StorageConfig().run_data_expiration_days == 30
