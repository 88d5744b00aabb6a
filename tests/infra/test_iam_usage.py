"""IAM that matches the code: every granted action is called by the code of the role's function, by its state
machine's definition, or by the service the role is for (``tests/infra/iam_usage.py`` derives each from its source),
and every resource policy lets each service principal do exactly what it must, for this account only.

Both stacks are synthesized once per module with every option on, as ``make synth-all-options`` does, and once more
with bots that have guardrails (the only grant that depends on the bot file's content).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from stacks.constructs.encryption_key import LOGS_KEY_ACTIONS
from stacks.constructs.invocation_logging import PROVIDER_ID
from stacks.synth import build_app
from tests.infra.conftest import Synthesized, flat
from tests.infra.iam_usage import (
    PROJECT_ROOT,
    code_actions,
    role_statements,
    ungranted_calls,
    ungranted_key_uses,
    unused_grants,
)

# make synth-all-options (Makefile ALL_OPTIONS), as context values.
ALL_OPTIONS: dict[str, Any] = {
    "kmsKey": "create",
    "batchVpc": {"create": True},
    "alarmEmail": "ops@example.com",
    "modelInvocationLogging": "true",
    "tags": {"project": "bedrock-genai", "owner": "platform", "cost-centre": "cc-1234", "environment": "dev"},
}
GUARDED = {**ALL_OPTIONS, "gatewayBotsFile": "tests/infra/data/gateway_bots_guarded.json"}
# The gateway on ECS Fargate: the task role must pass the same checks as the function's role (KMS included).
FARGATE = {
    **ALL_OPTIONS,
    "gatewayCompute": "fargate",
    "gatewayCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
}
# Granted only when the bot file asks for it: the code may call it, a deployment without such bots never does.
BOT_DEPENDENT = {
    "bedrock:ApplyGuardrail": "granted only on the guardrails of bots that name one",
    "bedrock:GetAsyncInvoke": "granted only in the regions of video bots",
}


def _templates(context: dict[str, Any]) -> dict[str, dict[str, Any]]:
    app, _stack = build_app(context, skip_bundling=True, gateway=True)
    return {stack.stack_name: stack.template for stack in app.synth().stacks}  # cdk-nag runs here


@pytest.fixture(scope="module")
def all_options() -> dict[str, dict[str, Any]]:
    return _templates(ALL_OPTIONS)


@pytest.fixture(scope="module")
def guarded() -> dict[str, dict[str, Any]]:
    return _templates(GUARDED)


@pytest.fixture(scope="module")
def fargate() -> dict[str, dict[str, Any]]:
    return _templates(FARGATE)


def test_all_options_are_the_makefiles() -> None:
    # GIVEN the Makefile's synth-all-options context / THEN this module turns on the same keys
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    block = makefile[makefile.index("ALL_OPTIONS :=") : makefile.index("synth-all-options: CONTEXT")]
    assert set(re.findall(r"-c '?(\w+)=", block)) == set(ALL_OPTIONS)


@pytest.mark.parametrize("fixture", ["all_options", "guarded", "fargate"])
def test_every_granted_action_is_used(fixture: str, request: pytest.FixtureRequest) -> None:
    # GIVEN both stacks with every option on (and with guarded bots)
    templates: dict[str, dict[str, Any]] = request.getfixturevalue(fixture)
    for name, template in templates.items():
        # WHEN each role's statements are matched with what its code, definition or service uses
        # THEN no granted action is left over
        assert unused_grants(template) == [], name


@pytest.mark.parametrize(
    ("fixture", "not_granted"),
    [
        ("all_options", {"bedrock:ApplyGuardrail"}),  # the default bot file: no guardrail, but a video bot
        ("guarded", {"bedrock:GetAsyncInvoke"}),  # guardrails, no video bot
        ("fargate", {"bedrock:ApplyGuardrail"}),  # the default bot file, served by the ECS task role
    ],
)
def test_every_action_the_code_calls_is_granted(
    fixture: str, not_granted: set[str], request: pytest.FixtureRequest
) -> None:
    # GIVEN both stacks / WHEN each function's code calls are matched with its role's grants
    templates: dict[str, dict[str, Any]] = request.getfixturevalue(fixture)
    missing = {m.split(": ")[1].split(" ")[0] for template in templates.values() for m in ungranted_calls(template)}
    # THEN only what no configured bot needs is not granted
    assert missing == not_granted and not_granted <= set(BOT_DEPENDENT)


@pytest.mark.parametrize("fixture", ["all_options", "fargate"])
def test_every_key_use_the_code_needs_is_granted(fixture: str, request: pytest.FixtureRequest) -> None:
    # GIVEN both stacks with kmsKey (every bucket, secret, key table and the state machine under the key), the
    # gateway on Lambda or on Fargate
    templates: dict[str, dict[str, Any]] = request.getfixturevalue(fixture)
    for name, template in templates.items():
        # WHEN each function's or task's code is matched with its role's key statements (by the service they go
        # through: S3, Secrets Manager, DynamoDB, Step Functions)
        # THEN every key use the code needs is granted (with test_every_granted_action_is_used: no more, no less)
        assert ungranted_key_uses(template) == [], name


def test_the_code_scan_finds_each_control_function_s_calls() -> None:
    # GIVEN the submit and poll handlers / WHEN their code (and what it imports) is scanned
    submit, poll = code_actions("lambdas.submit_job.handler"), code_actions("lambdas.poll_job.handler")
    # THEN submit creates jobs with tags and a role to pass and lists jobs for its job-slot check, poll gets and
    # stops them, both look for the run's cancel marker (by listing, never reading it), and neither reads Service
    # Quotas (Preprocess alone does)
    cancel_marker = {"s3:ListBucket"}
    assert (
        set(submit)
        == {
            "bedrock:CreateModelInvocationJob",
            "bedrock:TagResource",
            "iam:PassRole",
            "bedrock:ListModelInvocationJobs",
        }
        | cancel_marker
    )
    assert set(poll) == {"bedrock:GetModelInvocationJob", "bedrock:StopModelInvocationJob"} | cancel_marker
    preprocess = code_actions("lambdas.preprocess.handler")
    assert {"servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas"} <= set(preprocess)
    assert not {action for action in {*submit, *poll} if action.startswith("servicequotas:")}


def test_a_grant_no_code_uses_fails_the_check() -> None:
    # GIVEN the batch stack with every option on and one extra grant: Submit may get a job, which its code never does
    app, stack = build_app(ALL_OPTIONS, skip_bundling=True)
    job = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcd1234"
    stack.workflow.functions["submit"].role.add_to_principal_policy(
        iam.PolicyStatement(actions=["bedrock:GetModelInvocationJob"], resources=[job])
    )
    assembly = app.synth()
    synthesized = Synthesized(app=app, stack=stack, assembly=assembly, template=Template.from_stack(stack))
    # WHEN the check runs / THEN it names that role and action, and nothing else
    submit_role = synthesized.logical_id(stack.workflow.functions["submit"].role)
    template = assembly.get_stack_by_name(stack.stack_name).template
    assert unused_grants(template) == [f"{submit_role}: bedrock:GetModelInvocationJob"]


@pytest.mark.parametrize(
    ("role_prefix", "statement", "expected"),
    [
        # a data function deleting objects: no code deletes any
        ("BatchWorkflowFinalizeRole", {"Action": "s3:DeleteObject", "Resource": "*"}, "s3:DeleteObject"),
        # the state machine writing SSE-KMS objects: it only reads the job manifests
        (
            "BatchWorkflowStateMachineRole",
            {
                "Action": "kms:GenerateDataKey",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
            },
            "kms:GenerateDataKey (via:s3)",
        ),
        # a control function using the key at all: it touches no encrypted data
        ("BatchWorkflowPollJobRole", {"Action": "kms:Decrypt", "Resource": "*"}, "kms:Decrypt (direct)"),
        # the Bedrock job role listing jobs: Bedrock does not need it for a job
        ("BedrockBatchRole", {"Action": "bedrock:ListModelInvocationJobs", "Resource": "*"}, "ListModelInvocation"),
    ],
)
def test_an_extra_statement_fails_the_check(
    all_options: dict[str, dict[str, Any]], role_prefix: str, statement: dict[str, Any], expected: str
) -> None:
    # GIVEN the batch template with one statement added to one role's policy
    template = copy.deepcopy(all_options["BedrockBatchInference"])
    policies = template["Resources"]
    policy = next(
        p
        for p in policies.values()
        if p["Type"] == "AWS::IAM::Policy" and p["Properties"]["Roles"][0]["Ref"].startswith(role_prefix)
    )
    policy["Properties"]["PolicyDocument"]["Statement"].append({"Effect": "Allow", **statement})
    # WHEN the check runs / THEN it reports exactly that grant
    (unused,) = unused_grants(template)
    assert unused.startswith(role_prefix) and expected in unused


# Actions that have no resource type in the Service Authorization Reference (so only '*'), and the one role whose code
# calls each: Submit's job-slot check lists jobs, Preprocess reads the model's batch quotas.
WITHOUT_RESOURCE_TYPE = {
    "bedrock:ListModelInvocationJobs": "BatchWorkflowSubmitJobRole",
    "servicequotas:ListServiceQuotas": "BatchWorkflowPreprocessRole",
    "servicequotas:ListAWSDefaultServiceQuotas": "BatchWorkflowPreprocessRole",
}


def test_function_roles_allow_only_x_ray_on_any_resource(all_options: dict[str, dict[str, Any]]) -> None:
    # GIVEN the role of every function of both stacks (CDK's custom resource provider aside: its '*' is acknowledged
    # for the logging configuration calls)
    for template in all_options.values():
        functions = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
        roles = {f["Role"]["Fn::GetAtt"][0] for f in functions} - {r for r in template["Resources"] if PROVIDER_ID in r}
        for role in roles:
            # THEN the only actions it has on '*' are X-Ray's (the reason acknowledged to cdk-nag for the role) and
            # the actions without a resource type that its own code calls
            on_any = {
                action
                for s in role_statements(template)[role]
                if s["Resource"] == "*"
                for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
            }
            own = {action for action, user in WITHOUT_RESOURCE_TYPE.items() if role.startswith(user)}
            assert on_any == {"xray:PutTraceSegments", "xray:PutTelemetryRecords", *own}, role


# --- Resource policies: what each service principal may do --------------------------------------------------------

ACCOUNT = "<AWS::AccountId>"
REGION_ARN = f"arn:<AWS::Partition>:{{}}:<AWS::Region>:{ACCOUNT}:{{}}"


def _service_grants(template: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(resource type, service principal, actions, conditions as JSON) of every Allow to a service principal in a
    key, topic or bucket policy."""
    documents = {
        "AWS::KMS::Key": "KeyPolicy",
        "AWS::SNS::TopicPolicy": "PolicyDocument",
        "AWS::S3::BucketPolicy": "PolicyDocument",
    }
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] not in documents:
            continue
        for s in resource["Properties"][documents[resource["Type"]]]["Statement"]:
            service = s.get("Principal", {}).get("Service") if isinstance(s.get("Principal"), dict) else None
            if s["Effect"] != "Allow" or service is None:
                continue
            actions = tuple(sorted(s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
            found.append((resource["Type"], flat(service), actions, json.dumps(flat(s["Condition"]), sort_keys=True)))
    return sorted(found)


def _for_this_account(source_arn: str) -> str:
    return json.dumps(
        {"ArnLike": {"aws:SourceArn": source_arn}, "StringEquals": {"aws:SourceAccount": ACCOUNT}}, sort_keys=True
    )


ALARMS = _for_this_account(REGION_ARN.format("cloudwatch", "alarm:*"))
CLOUDWATCH_GRANTS = [
    ("AWS::KMS::Key", "cloudwatch.amazonaws.com", ("kms:Decrypt", "kms:GenerateDataKey*"), ALARMS),
    ("AWS::SNS::TopicPolicy", "cloudwatch.amazonaws.com", ("sns:Publish",), ALARMS),
]
LOGS_GRANT = (
    "AWS::KMS::Key",
    "logs.<AWS::Region>.amazonaws.com",
    tuple(sorted(LOGS_KEY_ACTIONS)),
    json.dumps({"ArnLike": {"kms:EncryptionContext:aws:logs:arn": REGION_ARN.format("logs", "log-group:*")}}),
)


def _access_logs_grant(bucket_id: str) -> tuple[str, str, tuple[str, ...], str]:
    source = json.dumps(
        {"ArnLike": {"aws:SourceArn": f"<{bucket_id}.Arn>"}, "StringEquals": {"aws:SourceAccount": ACCOUNT}},
        sort_keys=True,
    )
    return ("AWS::S3::BucketPolicy", "logging.s3.amazonaws.com", ("s3:PutObject",), source)


def test_each_service_principal_may_do_exactly_what_it_must(all_options: dict[str, dict[str, Any]]) -> None:
    # GIVEN both stacks with every option on (each has an alarm topic, a key and a data/media bucket with access logs)
    batch, gateway = all_options["BedrockBatchInference"], all_options["BedrockModelGateway"]
    # WHEN every Allow to a service principal in a key, topic or bucket policy is listed
    # THEN each is one of these, each for this account (and its own kind of resource) only:
    #   CloudWatch alarms publish to the topic and use its key; CloudWatch Logs encrypts this account's log groups;
    #   S3 server access logging writes the access logs of this bucket; Bedrock encrypts this account's batch job
    #   output; CloudWatch Logs delivery decrypts for the state machine's log delivery
    bucket = next(lid for lid in batch["Resources"] if re.fullmatch(r"DataBucket[0-9A-F]{8}", lid))
    media = next(lid for lid in gateway["Resources"] if re.fullmatch(r"ModelGatewayMediaBucket[0-9A-F]{8}", lid))
    bedrock = (
        "AWS::KMS::Key",
        "bedrock.amazonaws.com",
        ("kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"),
        _for_this_account(REGION_ARN.format("bedrock", "model-invocation-job/*")),
    )
    delivery = (
        "AWS::KMS::Key",
        "delivery.logs.amazonaws.com",
        ("kms:Decrypt",),
        _for_this_account(REGION_ARN.format("logs", "*")),
    )
    assert _service_grants(batch) == sorted(
        [*CLOUDWATCH_GRANTS, LOGS_GRANT, bedrock, delivery, _access_logs_grant(bucket)]
    )
    assert _service_grants(gateway) == sorted([*CLOUDWATCH_GRANTS, LOGS_GRANT, _access_logs_grant(media)])


def test_alarm_topics_deny_publishing_without_tls_and_allow_only_cloudwatch(all_options: dict[str, Any]) -> None:
    for template in all_options.values():
        # GIVEN each stack's alarm topic policy
        (policy,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        # THEN it denies publishing without TLS to anyone, and allows publishing to CloudWatch alone
        assert [s["Principal"] for s in statements if s["Effect"] == "Deny"] == ["*"]
        assert [s["Principal"] for s in statements if s["Effect"] == "Allow"] == [
            {"Service": "cloudwatch.amazonaws.com"}
        ]
