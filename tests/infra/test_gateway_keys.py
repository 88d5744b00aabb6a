"""The team-key table and admin key: on demand, point-in-time recovery, deletion protection from cdk.json, encrypted
with the stack's key when ``kmsKey`` is set; the app's role may call exactly the item actions its code calls, on
this table only, on Lambda and on Fargate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.gateway.metrics import BUDGET_USED_PERCENT, COST, INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS
from stacks.config import GatewayKeysConfig
from stacks.constructs.gateway_keys import TABLE_ACTIONS, TTL_ATTRIBUTE, per_key
from stacks.constructs.gateway_service import METRICS_NAMESPACE
from tests.infra.conftest import Gateway, flat, synth_gateway
from tests.infra.iam_usage import code_actions

FARGATE_KMS = {
    "kmsKey": "create",
    "gatewayCompute": "fargate",
    "gatewayCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
    "gatewayKeysDeletionProtection": "false",
    "gatewayKeyBudgetAlarmPercent": "90",
}


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return synth_gateway({}, tmp_path_factory.mktemp("keys-default"))


@pytest.fixture(scope="module")
def fargate_kms(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return synth_gateway(FARGATE_KMS, tmp_path_factory.mktemp("keys-fargate-kms"))


def _table(gateway: Gateway) -> tuple[str, dict[str, Any]]:
    (item,) = [(k, v) for k, v in gateway.resources.items() if v["Type"] == "AWS::DynamoDB::Table"]
    return item


def _statements(gateway: Gateway, role_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in gateway.of_type("AWS::IAM::Policy").values():
        if any(flat(role) == role_id or role_id in flat(role) for role in policy["Roles"]):
            statements.extend(policy["PolicyDocument"]["Statement"])
    return statements


def _app_role(gateway: Gateway) -> str:
    role = gateway.stack.gateway.function.role if gateway.stack.service is None else gateway.stack.service.task_role
    return gateway.logical_id(role)


def test_the_table_is_on_demand_recoverable_protected_and_keeps_its_data(default: Gateway) -> None:
    # GIVEN the default gateway stack WHEN its key table is read
    _, table = _table(default)
    props = table["Properties"]
    # THEN it is on demand, with point-in-time recovery, deletion protection, TTL on the minute windows
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] is True == GatewayKeysConfig().deletion_protection
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["pk", "sk"]
    # AND a deleted stack leaves it (the keys and their spend)
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    # AND without kmsKey it uses DynamoDB's default encryption (no customer key)
    assert "KMSMasterKeyId" not in str(props.get("SSESpecification", {}))


def test_with_kms_key_the_table_and_admin_key_use_the_stacks_key(fargate_kms: Gateway) -> None:
    # GIVEN kmsKey=create and deletion protection off
    _, table = _table(fargate_kms)
    props = table["Properties"]
    (key_id,) = fargate_kms.of_type("AWS::KMS::Key")
    # THEN the table is encrypted with the stack's key, deletion protection follows cdk.json
    assert props["SSESpecification"]["SSEEnabled"] is True and props["SSESpecification"]["SSEType"] == "KMS"
    assert key_id in flat(props["SSESpecification"]["KMSMasterKeyId"])
    assert props["DeletionProtectionEnabled"] is False
    # AND the admin key's secret too
    secrets = fargate_kms.of_type("AWS::SecretsManager::Secret")
    (admin,) = [s for s in secrets.values() if "admin key" in s["Description"]]
    assert key_id in flat(admin["KmsKeyId"]) and admin["GenerateSecretString"]["PasswordLength"] == 48


@pytest.mark.parametrize("fixture", ["default", "fargate_kms"])
def test_the_app_may_call_exactly_the_item_actions_its_code_calls_on_this_table(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    # GIVEN the gateway on Lambda (no kmsKey) or Fargate (kmsKey)
    gateway: Gateway = request.getfixturevalue(fixture)
    table_id, _ = _table(gateway)
    statements = _statements(gateway, _app_role(gateway))
    # WHEN its DynamoDB statements are read
    dynamodb = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    # THEN one statement grants the item actions on the key table only, and they are what the code calls
    (statement,) = dynamodb
    assert sorted(_actions(statement)) == sorted(TABLE_ACTIONS)
    assert flat(statement["Resource"]) == flat({"Fn::GetAtt": [table_id, "Arn"]})
    called = {action for action in code_actions("lambdas.gateway.app") if action.startswith("dynamodb:")}
    assert called == set(TABLE_ACTIONS)
    # AND with kmsKey the key is usable through DynamoDB only
    kms = [s for s in statements if "via:dynamodb" in _via(s)]
    assert bool(kms) == (fixture == "fargate_kms")


def test_with_kms_key_the_app_may_decrypt_the_table_key_through_dynamodb_for_this_table_only(
    fargate_kms: Gateway,
) -> None:
    # GIVEN the gateway with kmsKey (the key table under the stack's customer managed key)
    table_id, _ = _table(fargate_kms)
    (key_id,) = fargate_kms.of_type("AWS::KMS::Key")
    # WHEN the app role's statements that DynamoDB may use on its behalf are read
    (statement,) = [s for s in _statements(fargate_kms, _app_role(fargate_kms)) if _via(s) == "via:dynamodb"]
    # THEN it is kms:Decrypt alone (DynamoDB decrypts the table key for the principal that reads or writes the
    # table; the rest runs on the grants made for the table's creator), on the stack's key
    assert _actions(statement) == ["kms:Decrypt"]
    assert key_id in flat(statement["Resource"])
    # AND only with this table's DynamoDB encryption context: its name and this account
    conditions = statement["Condition"]["StringEquals"]
    assert flat(conditions["kms:EncryptionContext:aws:dynamodb:tableName"]) == flat({"Ref": table_id})
    assert flat(conditions["kms:EncryptionContext:aws:dynamodb:subscriberId"]) == flat({"Ref": "AWS::AccountId"})
    assert flat(conditions["kms:ViaService"]) == "dynamodb.us-east-1.amazonaws.com"  # the certificate's region


def test_the_app_is_told_where_the_table_and_admin_key_are(default: Gateway, fargate_kms: Gateway) -> None:
    # GIVEN the Lambda function's and the Fargate container's environments
    (function,) = [f for f in default.of_type("AWS::Lambda::Function").values() if f["Handler"] == "run.sh"]
    (task,) = fargate_kms.of_type("AWS::ECS::TaskDefinition").values()
    (app,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "Gateway"]
    container_env = {e["Name"]: e["Value"] for e in app["Environment"]}
    for env, gateway in ((function["Environment"]["Variables"], default), (container_env, fargate_kms)):
        table_id, _ = _table(gateway)
        # THEN the table's name and the admin secret's ARN, never a secret value
        assert flat(env["GATEWAY_KEYS_TABLE"]) == flat({"Ref": table_id})
        assert "AdminKey" in flat(env["GATEWAY_ADMIN_KEY_SECRET_ARN"])


def test_the_admin_key_secret_is_an_output(default: Gateway) -> None:
    # GIVEN the stack's outputs THEN the admin key's secret is one (cli keys --target aws reads it)
    outputs = default.template.to_json()["Outputs"]
    assert "AdminKey" in flat(outputs["AdminKeySecretArn"]["Value"])


def test_budget_alarm_share_and_deletion_protection_are_validated() -> None:
    # GIVEN bad values WHEN read THEN the error names the key and the fix
    with pytest.raises(ValueError, match="gatewayKeyBudgetAlarmPercent must be an integer between 1 and 100"):
        GatewayKeysConfig.from_context({"gatewayKeyBudgetAlarmPercent": "0"})
    with pytest.raises(ValueError, match="gatewayKeysDeletionProtection must be true or false"):
        GatewayKeysConfig.from_context({"gatewayKeysDeletionProtection": "maybe"})
    assert GatewayKeysConfig.from_context(FARGATE_KMS) == GatewayKeysConfig(False, 90)


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _via(statement: dict[str, Any]) -> str:
    conditions = statement.get("Condition", {}).get("StringEquals", {})
    service = flat(conditions.get("kms:ViaService", ""))
    return "via:" + service.split(".", 1)[0] if service else ""


@pytest.mark.parametrize("fixture", ["default", "fargate_kms"])
def test_the_dashboard_shows_each_key_and_an_alarm_watches_the_budgets(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    # GIVEN the gateway stack (budget alarm at the default 80 %, or 90 % from cdk.json)
    gateway: Gateway = request.getfixturevalue(fixture)
    namespace = METRICS_NAMESPACE  # the app's, on Lambda and on Fargate
    percent = 80 if fixture == "default" else 90
    (dashboard,) = gateway.of_type("AWS::CloudWatch::Dashboard").values()
    body = str(flat(dashboard["DashboardBody"]))  # the dashboard JSON as text: quotes inside strings escaped
    # THEN per-key widgets query the metrics the app emits with the key's name, grouped by key
    for metric in (REQUESTS, COST, INPUT_TOKENS, OUTPUT_TOKENS, BUDGET_USED_PERCENT):
        assert json.dumps(per_key(namespace, metric, "MAX" if metric == BUDGET_USED_PERCENT else "SUM"))[1:-1] in body
    # AND one alarm fires when any key passes the configured share of its budget
    (alarm,) = [
        a for a in gateway.of_type("AWS::CloudWatch::Alarm").values() if "monthly budget" in a["AlarmDescription"]
    ]
    assert alarm["Threshold"] == percent and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    (query,) = alarm["Metrics"]
    assert query["Expression"] == f'SELECT MAX({BUDGET_USED_PERCENT}) FROM SCHEMA("{namespace}", key, service)'
