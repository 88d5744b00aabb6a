"""Security options (cdk.json ``kmsKey``, ``tags``): off by default, and what each one changes when it is on.

The default template is the shared one (conftest). The options-on apps are built once per module, with cdk-nag: their
``app.synth()`` is the nag gate with every option on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from stacks.synth import build_app, gateway_stack
from tests.infra.conftest import Synthesized, as_list, cfn_lint, policy_statements

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TAGS = {"project": "batch-inference", "owner": "ml-platform", "costCentre": "cc-1234", "environment": "test"}
ALL_ON = {"kmsKey": "create", "tags": TAGS, "batchVpc": {"create": True}}
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
EXISTING_VPC = {"vpcId": "vpc-0123456789abcdef0", "subnetIds": SUBNETS}


@pytest.fixture(scope="module")
def secured() -> Synthesized:
    """Every security option on, both stacks (the gateway too: tags are app-wide)."""
    app, stack = build_app(ALL_ON, skip_bundling=True, gateway=True)
    assembly = app.synth()  # the nag gate: raises on any unacknowledged finding
    return Synthesized(app=app, stack=stack, assembly=assembly, template=Template.from_stack(stack))


@pytest.fixture(scope="module")
def existing_key() -> Synthesized:
    """An existing key and an existing VPC's subnets."""
    app, stack = build_app({"kmsKey": KEY_ARN, "batchVpc": EXISTING_VPC}, skip_bundling=True)
    assembly = app.synth()
    return Synthesized(app=app, stack=stack, assembly=assembly, template=Template.from_stack(stack))


def _resources(template: Template, type_: str) -> dict[str, Any]:
    return dict(template.find_resources(type_))


def _key_id(secured: Synthesized) -> str:
    (key_id,) = _resources(secured.template, "AWS::KMS::Key")
    return key_id


def _submit_environment(synth: Synthesized) -> dict[str, Any]:
    submit = synth.resource(synth.stack.workflow.functions["submit"].function)
    return dict(submit["Properties"]["Environment"]["Variables"])


# --- Off by default ----------------------------------------------------------------------------------------------


def test_by_default_no_key_and_s3_managed_encryption(template: Template) -> None:
    # GIVEN cdk.json without kmsKey / WHEN synthesized / THEN no KMS key, SSE-S3 buckets, AWS-owned log and SFN keys
    template.resource_count_is("AWS::KMS::Key", 0)
    for bucket in _resources(template, "AWS::S3::Bucket").values():
        rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    for log_group in _resources(template, "AWS::Logs::LogGroup").values():
        assert "KmsKeyId" not in log_group["Properties"]
    for machine in _resources(template, "AWS::StepFunctions::StateMachine").values():
        assert "EncryptionConfiguration" not in machine["Properties"]


def test_by_default_submit_sends_no_key_and_no_extra_tags(synthesized: Synthesized) -> None:
    env = _submit_environment(synthesized)
    assert "OUTPUT_KMS_KEY_ID" not in env
    assert "JOB_TAGS" not in env


def test_by_default_no_network_resources(synthesized: Synthesized, template: Template) -> None:
    # GIVEN no batchVpc / THEN nothing of EC2 is created, the Bedrock role gets no EC2 action, jobs get no vpcConfig
    assert "JOB_SUBNET_IDS" not in _submit_environment(synthesized)
    role_id = synthesized.logical_id(synthesized.stack.bedrock_role.role)
    assert "ec2:" not in json.dumps(policy_statements(template, role_id))
    assert not [t for t in (r["Type"] for r in template.to_json()["Resources"].values()) if t.startswith("AWS::EC2::")]


# --- kmsKey: "create" --------------------------------------------------------------------------------------------


def test_created_key_rotates_and_is_retained(secured: Synthesized) -> None:
    secured.template.has_resource(
        "AWS::KMS::Key",
        {"Properties": Match.object_like({"EnableKeyRotation": True}), "DeletionPolicy": "Retain"},
    )


def test_key_policy_lets_bedrock_in_for_this_accounts_jobs_only(secured: Synthesized) -> None:
    key = secured.template.to_json()["Resources"][_key_id(secured)]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (bedrock,) = [s for s in statements if s.get("Principal", {}).get("Service") == "bedrock.amazonaws.com"]
    assert sorted(as_list(bedrock["Action"])) == ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
    # the confused-deputy conditions: this account, and its model invocation jobs
    assert bedrock["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = json.dumps(bedrock["Condition"]["ArnLike"]["aws:SourceArn"])
    assert ":model-invocation-job/*" in source_arn and "AWS::AccountId" in source_arn


def test_key_policy_lets_cloudwatch_logs_in_for_this_accounts_log_groups(secured: Synthesized) -> None:
    key = secured.template.to_json()["Resources"][_key_id(secured)]
    (logs,) = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == "AllowCloudWatchLogsOfThisAccount"
    ]
    assert "logs." in json.dumps(logs["Principal"]["Service"])
    assert ":log-group:*" in json.dumps(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])


def test_data_bucket_uses_sse_kms_with_the_key(secured: Synthesized) -> None:
    bucket = secured.resource(secured.stack.data_bucket.bucket)
    rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule == {
        "BucketKeyEnabled": True,
        "ServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [_key_id(secured), "Arn"]},
        },
    }


def test_access_log_bucket_stays_sse_s3(secured: Synthesized) -> None:
    # server access log delivery supports SSE-S3 only
    access_logs = secured.resource(secured.stack.data_bucket.access_logs_bucket)
    rule = access_logs["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_every_log_group_is_encrypted_with_the_key(secured: Synthesized) -> None:
    log_groups = _resources(secured.template, "AWS::Logs::LogGroup")
    assert len(log_groups) >= 7  # six functions and the state machine
    for log_group in log_groups.values():
        assert log_group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [_key_id(secured), "Arn"]}


def test_state_machine_is_encrypted_with_the_key(secured: Synthesized) -> None:
    secured.template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "EncryptionConfiguration": Match.object_like(
                {"Type": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": {"Fn::GetAtt": [_key_id(secured), "Arn"]}}
            )
        },
    )


def test_state_machine_role_may_use_the_key_for_its_execution_data(secured: Synthesized) -> None:
    role_id = secured.logical_id(secured.stack.workflow.state_machine.role)
    contexts = [
        json.dumps(s["Condition"]["StringLike"]["kms:EncryptionContext:aws:states:stateMachineArn"])
        for s in policy_statements(secured.template, role_id)
        if "StringLike" in s.get("Condition", {})
    ]
    assert len(contexts) == 1 and ":stateMachine:*" in contexts[0]


def test_bedrock_role_gets_exactly_decrypt_and_generate_data_key_on_the_key(secured: Synthesized) -> None:
    role_id = secured.logical_id(secured.stack.bedrock_role.role)
    kms = [
        s
        for s in policy_statements(secured.template, role_id)
        if any(a.startswith("kms:") for a in as_list(s["Action"]))
    ]
    assert kms == [
        {
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [_key_id(secured), "Arn"]},
        }
    ]


@pytest.mark.parametrize("key", ["preprocess", "postprocess", "resubmit", "finalize"])
def test_data_functions_may_use_the_key_through_s3_only(secured: Synthesized, key: str) -> None:
    role_id = secured.logical_id(secured.stack.workflow.functions[key].role)
    kms = [
        s
        for s in policy_statements(secured.template, role_id)
        if any(a.startswith("kms:") for a in as_list(s["Action"]))
    ]
    assert len(kms) == 1
    assert kms[0]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "kms:ViaService" in kms[0]["Condition"]["StringEquals"]


@pytest.mark.parametrize("key", ["submit", "poll"])
def test_control_functions_get_no_key_access(secured: Synthesized, key: str) -> None:
    role_id = secured.logical_id(secured.stack.workflow.functions[key].role)
    assert not [s for s in policy_statements(secured.template, role_id) if "kms:" in json.dumps(s["Action"])]


def test_submit_is_told_the_output_key_and_the_tags(secured: Synthesized) -> None:
    env = _submit_environment(secured)
    assert env["OUTPUT_KMS_KEY_ID"] == {"Fn::GetAtt": [_key_id(secured), "Arn"]}
    assert json.loads(env["JOB_TAGS"]) == TAGS


def test_no_secrets_in_function_environments(secured: Synthesized) -> None:
    # Environment variables carry configuration only (names, ARNs, numbers): no credentials or tokens
    for fn in _resources(secured.template, "AWS::Lambda::Function").values():
        names = fn["Properties"].get("Environment", {}).get("Variables", {})
        assert not [n for n in names if any(w in n.upper() for w in ("SECRET", "PASSWORD", "ACCESS_KEY", "TOKEN"))]


# --- kmsKey: an existing key ARN ---------------------------------------------------------------------------------


def test_existing_key_is_used_not_created(existing_key: Synthesized) -> None:
    existing_key.template.resource_count_is("AWS::KMS::Key", 0)
    bucket = existing_key.resource(existing_key.stack.data_bucket.bucket)
    rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}
    assert _submit_environment(existing_key)["OUTPUT_KMS_KEY_ID"] == KEY_ARN
    for log_group in _resources(existing_key.template, "AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["KmsKeyId"] == KEY_ARN


# --- tags --------------------------------------------------------------------------------------------------------

TAGGED_TYPES = (
    "AWS::S3::Bucket",
    "AWS::KMS::Key",
    "AWS::IAM::Role",
    "AWS::Lambda::Function",
    "AWS::Logs::LogGroup",
    "AWS::StepFunctions::StateMachine",
)


def test_cost_tags_are_on_every_taggable_resource_of_both_stacks(secured: Synthesized) -> None:
    expected = [{"Key": k, "Value": v} for k, v in sorted(TAGS.items())]
    gateway = Template.from_stack(gateway_stack(secured.app))
    for template in (secured.template, gateway):
        resources = template.to_json()["Resources"]
        tagged = {r["Type"] for r in resources.values() if "Tags" in r.get("Properties", {})}
        for resource in resources.values():
            tags = resource.get("Properties", {}).get("Tags")
            if isinstance(tags, list):
                for tag in expected:
                    assert tag in tags, (resource["Type"], tags)
        assert tagged >= {"AWS::IAM::Role", "AWS::Lambda::Function", "AWS::Logs::LogGroup"}
    batch_types = {
        r["Type"] for r in secured.template.to_json()["Resources"].values() if "Tags" in r.get("Properties", {})
    }
    assert batch_types >= set(TAGGED_TYPES)


def test_no_tags_by_default(template: Template) -> None:
    for resource in template.to_json()["Resources"].values():
        keys = {t["Key"] for t in resource.get("Properties", {}).get("Tags", []) if isinstance(t, dict)}
        assert not keys & set(TAGS)


# --- IAM: no wildcard Bedrock ------------------------------------------------------------------------------------


def test_no_wildcard_bedrock_actions_or_resources(secured: Synthesized) -> None:
    # GIVEN every IAM policy of the batch stack with every option on
    for policy in _resources(secured.template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            # THEN no Bedrock action is a wildcard, and none is allowed on '*' (every one the code calls has a resource)
            # but ListModelInvocationJobs, which has no resource type, alone in its statement
            actions = as_list(statement["Action"])
            assert not [a for a in actions if a.startswith("bedrock:") and "*" in a]
            bedrock = any(a.startswith("bedrock:") for a in actions)
            if actions == ["bedrock:ListModelInvocationJobs"]:
                continue
            assert not (bedrock and "*" in as_list(statement["Resource"])), statement


# --- batchVpc ----------------------------------------------------------------------------------------------------


def _ec2_statements(synth: Synthesized) -> dict[str, dict[str, Any]]:
    role_id = synth.logical_id(synth.stack.bedrock_role.role)
    found: dict[str, dict[str, Any]] = {}
    for statement in policy_statements(synth.template, role_id):
        for action in as_list(statement["Action"]):
            if action.startswith("ec2:"):
                found[action] = statement
    return found


def test_created_vpc_is_isolated_with_an_s3_gateway_endpoint_and_flow_logs(secured: Synthesized) -> None:
    template = secured.template
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    template.resource_count_is("AWS::EC2::FlowLog", 1)
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )
    endpoint = next(iter(_resources(template, "AWS::EC2::VPCEndpoint").values()))
    assert ".s3" in json.dumps(endpoint["Properties"]["ServiceName"])


def test_job_security_group_has_no_inbound_and_https_outbound_only(secured: Synthesized) -> None:
    network = secured.stack.network
    assert network is not None
    group = secured.template.to_json()["Resources"][secured.logical_id(network.security_group)]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["SecurityGroupEgress"]] == [("tcp", 443, 443)]


def test_submit_is_told_the_job_subnets_and_security_group(secured: Synthesized) -> None:
    env = _submit_environment(secured)
    subnets = json.dumps(env["JOB_SUBNET_IDS"])
    assert subnets.count("Subnet") >= 2  # the two isolated subnets of the created VPC
    network = secured.stack.network
    assert network is not None
    assert env["JOB_SECURITY_GROUP_IDS"] == {"Fn::GetAtt": [secured.logical_id(network.security_group), "GroupId"]}


def test_bedrock_role_gets_the_eni_permissions_bedrock_documents_for_vpc_jobs(secured: Synthesized) -> None:
    ec2 = _ec2_statements(secured)
    assert set(ec2) == {
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeVpcs",
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission",
        "ec2:CreateTags",
    }
    create = ec2["ec2:CreateNetworkInterface"]
    assert create["Condition"]["StringEquals"] == {"aws:RequestTag/BedrockManaged": "true"}
    assert ":model-invocation-job/*" in json.dumps(
        create["Condition"]["ArnEquals"]["aws:RequestTag/BedrockModelInvocationJobArn"]
    )
    delete = ec2["ec2:DeleteNetworkInterface"]
    assert "ec2:Subnet" in delete["Condition"]["StringEquals"]
    assert "ec2:ResourceTag/BedrockModelInvocationJobArn" in delete["Condition"]["ArnEquals"]
    tags = ec2["ec2:CreateTags"]["Condition"]
    assert tags["StringEquals"] == {"ec2:CreateAction": "CreateNetworkInterface"}


def test_existing_vpc_subnets_are_used_with_a_new_security_group(existing_key: Synthesized) -> None:
    template = existing_key.template
    template.resource_count_is("AWS::EC2::VPC", 0)
    template.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": EXISTING_VPC["vpcId"]})
    assert _submit_environment(existing_key)["JOB_SUBNET_IDS"] == ",".join(SUBNETS)
    delete = _ec2_statements(existing_key)["ec2:DeleteNetworkInterface"]
    subnet_arns = json.dumps(delete["Condition"]["StringEquals"]["ec2:Subnet"])
    assert all(f"subnet/{subnet}" in subnet_arns for subnet in SUBNETS)


@pytest.mark.parametrize("service", ["bedrock.amazonaws.com", "vpc-flow-logs.amazonaws.com", "states.amazonaws.com"])
def test_service_roles_carry_confused_deputy_conditions(secured: Synthesized, service: str) -> None:
    roles = [
        r["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        for r in _resources(secured.template, "AWS::IAM::Role").values()
        if f'"{service}"' in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    ]
    assert len(roles) == 1
    (trust,) = roles[0]
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "AWS::AccountId" in json.dumps(trust["Condition"]["ArnLike"]["aws:SourceArn"])


def test_every_template_with_every_option_on_passes_cfn_lint(tmp_path: Path) -> None:
    # GIVEN both stacks with every security option and the alarm email on (cdk-nag runs in app.synth())
    app, _stack = build_app({**ALL_ON, "alarmEmail": "ops@example.com"}, skip_bundling=True, gateway=True)
    templates = {stack.stack_name: stack.template for stack in app.synth().stacks}
    # WHEN cfn-lint checks them THEN both templates pass
    assert len(templates) == 2 and cfn_lint(templates, tmp_path) == ""
