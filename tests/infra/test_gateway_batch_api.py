"""The gateway's Batch API wiring, on both compute options: the batch stack exports its bucket, state machine and key,
the gateway imports them (no lookup), and its role gets exactly ``BATCH_API_ACCESS`` and the Step Functions calls.

Each app is synthesized with cdk-nag (``synth_gateway`` raises on an unacknowledged finding), with ``kmsKey`` on so the
key grants are there too; that every grant is used by the code is ``tests/infra/test_iam_usage.py``'s check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from lambdas.gateway.batch_records import new_batch_id, run_id
from stacks.config import AppConfig, GatewayConfig
from stacks.constructs.gateway_batch_api import BATCH_API_ACCESS, BATCH_RUNS_PREFIX
from stacks.gateway_stack import GatewayStack
from stacks.synth import STACK_NAME, build_app
from tests.infra.conftest import Gateway, flat, synth_gateway

LAMBDA = {"kmsKey": "create"}
FARGATE = {
    "kmsKey": "create",
    "gatewayCompute": "fargate",
    "gatewayCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
}
IMPORTS = {
    "bucket": f"{STACK_NAME}-BatchApiBucketName",
    "state_machine": f"{STACK_NAME}-BatchApiStateMachineArn",
    "executions": f"{STACK_NAME}-BatchApiExecutionsArn",
    "key": f"{STACK_NAME}-BatchApiKeyArn",
}


@pytest.fixture(scope="module")
def on_lambda(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return synth_gateway(LAMBDA, tmp_path_factory.mktemp("batch-api-lambda"))


@pytest.fixture(scope="module")
def on_fargate(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return synth_gateway(FARGATE, tmp_path_factory.mktemp("batch-api-fargate"))


def _statements(gateway: Gateway) -> list[Mapping[str, Any]]:
    """Every statement of the gateway stack's policies (only the app's role has any on the batch stack's resources)."""
    return [
        statement
        for resource in gateway.resources.values()
        if resource["Type"] == "AWS::IAM::Policy"
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def _text(node: Any) -> str:
    """A resource as text: an import as its export's name, joins joined, other references as ``flat`` renders them."""
    if isinstance(node, dict) and "Fn::ImportValue" in node:
        return str(node["Fn::ImportValue"])
    if isinstance(node, dict) and "Fn::Join" in node:
        separator, parts = node["Fn::Join"]
        return str(separator).join(_text(part) for part in parts)
    rendered = flat(node)
    return rendered if isinstance(rendered, str) else json.dumps(rendered)


def _batch_grants(gateway: Gateway) -> dict[str, set[str]]:
    """Action -> resources (flattened) of the statements on the imported batch resources."""
    grants: dict[str, set[str]] = {}
    for statement in _statements(gateway):
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for resource in resources:
            text = _text(resource).replace("arn:<AWS::Partition>:", "arn:aws:")  # a known region renders "aws"
            if "BatchApi" not in text:
                continue
            for action in actions:
                key = action
                if action.startswith("kms:"):
                    condition = json.dumps(statement.get("Condition", {}))
                    key = f"{action} ({'states' if 'stateMachineArn' in condition else 's3'})"
                grants.setdefault(key, set()).add(text)
    return grants


@pytest.mark.parametrize("fixture", ["on_lambda", "on_fargate"])
def test_the_gateway_role_gets_exactly_the_batch_api_grants(fixture: str, request: pytest.FixtureRequest) -> None:
    # GIVEN the app synthesized with kmsKey (the gateway on Lambda, or on Fargate)
    gateway: Gateway = request.getfixturevalue(fixture)
    # WHEN the app role's statements on the batch stack's resources are read
    grants = _batch_grants(gateway)
    bucket = IMPORTS["bucket"]
    # THEN S3 is openai/ (read, write, delete, list) and the batches' runs (read, list, the cancel marker) only
    assert grants["s3:GetObject"] == {f"arn:aws:s3:::{bucket}/openai/*", f"arn:aws:s3:::{bucket}/runs/batch-*"}
    put = {text.rsplit(bucket, 1)[1] for text in grants["s3:PutObject"]}
    assert put == {"/openai/*", "/runs/batch-*/cancel.json"}
    assert {text.rsplit(bucket, 1)[1] for text in grants["s3:DeleteObject"]} == {"/openai/*"}
    assert {text.rsplit(bucket, 1)[1] for text in grants["s3:ListBucket"]} == {""}
    # AND Step Functions: start on the state machine, describe on its executions only
    assert grants["states:StartExecution"] == {IMPORTS["state_machine"]}
    assert grants["states:DescribeExecution"] == {IMPORTS["executions"]}
    # AND the batch key: through S3, and Decrypt alone for the state machine's execution data (DescribeExecution;
    # StartExecution needs nothing of its caller)
    assert grants["kms:Decrypt (states)"] == {IMPORTS["key"]}
    assert "kms:GenerateDataKey (states)" not in grants
    assert IMPORTS["key"] in grants["kms:Decrypt (s3)"]


@pytest.mark.parametrize("fixture", ["on_lambda", "on_fargate"])
def test_the_execution_data_key_is_used_through_step_functions_for_this_state_machine_only(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    # GIVEN the app synthesized with kmsKey / WHEN the statement on the state machine's key is read
    gateway: Gateway = request.getfixturevalue(fixture)
    (statement,) = [s for s in _statements(gateway) if "stateMachineArn" in json.dumps(s.get("Condition", {}))]
    # THEN it lets Step Functions decrypt on the gateway's behalf (DescribeExecution), in this region, with this
    # state machine's ARN as encryption context, and nothing else
    assert statement["Action"] == "kms:Decrypt"
    conditions = statement["Condition"]["StringEquals"]
    assert _text(conditions["kms:EncryptionContext:aws:states:stateMachineArn"]) == IMPORTS["state_machine"]
    assert _text(conditions["kms:ViaService"]).startswith("states.") and set(conditions) == {
        "kms:EncryptionContext:aws:states:stateMachineArn",
        "kms:ViaService",
    }


@pytest.mark.parametrize("fixture", ["on_lambda", "on_fargate"])
def test_list_is_limited_to_the_declared_prefixes(fixture: str, request: pytest.FixtureRequest) -> None:
    # GIVEN the synthesized gateway / WHEN its ListBucket statement on the batch bucket is read
    gateway: Gateway = request.getfixturevalue(fixture)
    (listing,) = [
        s for s in _statements(gateway) if s["Action"] == "s3:ListBucket" and "BatchApi" in _text(s["Resource"])
    ]
    # THEN it is limited to openai/ and the batches' runs by s3:prefix
    prefixes = listing["Condition"]["StringLike"]["s3:prefix"]
    assert sorted(prefixes) == sorted(f"{p}*" for p in BATCH_API_ACCESS["list_prefixes"])


def test_the_function_and_the_task_are_told_the_bucket_and_the_state_machine(
    on_lambda: Gateway, on_fargate: Gateway
) -> None:
    # GIVEN both compute options / WHEN the app's environment is read
    lambda_env = on_lambda.resources[on_lambda.logical_id(on_lambda.stack.gateway.function.function)]["Properties"][
        "Environment"
    ]["Variables"]
    (task,) = on_fargate.of_type("AWS::ECS::TaskDefinition").values()
    (container,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "Gateway"]
    task_env = {e["Name"]: e["Value"] for e in container["Environment"]}
    # THEN both name the imported bucket and state machine
    for env in (lambda_env, task_env):
        assert env["GATEWAY_BATCH_BUCKET"] == {"Fn::ImportValue": IMPORTS["bucket"]}
        assert env["GATEWAY_BATCH_STATE_MACHINE_ARN"] == {"Fn::ImportValue": IMPORTS["state_machine"]}


def test_the_batch_stack_exports_what_the_gateway_imports_and_deploys_first(on_lambda: Gateway) -> None:
    # GIVEN the synthesized app / WHEN the batch stack's outputs and the stacks' order are read
    batch = on_lambda.assembly.get_stack_by_name(STACK_NAME).template
    exports = {o["Export"]["Name"]: o["Value"] for o in batch["Outputs"].values() if "Export" in o}
    # THEN every import has its export, and the gateway stack depends on the batch stack
    assert set(IMPORTS.values()) <= set(exports)
    executions = flat(exports[IMPORTS["executions"]])
    assert executions.startswith("arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:")
    assert executions.endswith(".Name>:*")
    assert STACK_NAME in [d.node.id for d in on_lambda.stack.dependencies]


def test_fargate_puts_both_stacks_in_the_certificate_s_region(on_fargate: Gateway) -> None:
    # GIVEN the gateway on Fargate (the ALB's certificate is regional) / THEN the batch stack is in that region too
    batch = on_fargate.assembly.get_stack_by_name(STACK_NAME)
    assert batch.environment.region == on_fargate.stack.region == "us-east-1"


def test_a_gateway_without_the_batch_stack_gets_no_batch_grant_or_setting(tmp_path: Path) -> None:
    # GIVEN a gateway stack composed alone (as a team reusing the constructs may)
    app, _ = build_app(skip_bundling=True, outdir=str(tmp_path))
    stack = GatewayStack(
        app,
        "GatewayAlone",
        cfg=GatewayConfig.from_app(app),
        function_settings=AppConfig.from_app(app).functions,
        storage=AppConfig.from_app(app).storage,
    )
    # WHEN it is synthesized (cdk-nag included)
    template = app.synth().get_stack_by_name(stack.stack_name).template
    text = json.dumps(template)
    # THEN nothing of the Batch API is there: the routes answer 501 naming the fix (tests/functional)
    assert "GATEWAY_BATCH" not in text and "states:" not in text and "BatchApi" not in text
    assert cdk.Stack.of(stack).dependencies == []


def test_a_batch_s_run_is_under_the_granted_runs_prefix() -> None:
    # GIVEN a new batch id / WHEN its run id is made from it (the execution's name)
    key = f"runs/{run_id(new_batch_id())}/jobs.json"
    # THEN its files are under the prefix the gateway may read and list
    assert key.startswith(BATCH_RUNS_PREFIX)
