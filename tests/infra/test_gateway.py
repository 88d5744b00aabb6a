"""GatewayStack: the streaming REST API, the Lambda Web Adapter function, the media bucket, the access-key secret, IAM
limited to the configured bots' models, and cdk-nag for both stacks.

One app for the module (synth starts jsii and runs cdk-nag), built as ``app.py`` builds it, with a fixture bot file
and gateway keys passed as strings, as ``-c`` passes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match

from lambdas.gateway.config import GatewaySettings
from stacks.config import WEB_ADAPTER_LAYER_VERSION, GatewayBot, GatewayConfig, web_adapter_publishers
from stacks.constructs.model_gateway import MODEL_ACTIONS, bot_model_arns
from stacks.synth import GATEWAY_STACK_NAME, STACK_NAME
from tests.infra.conftest import Gateway, as_list, cfn_lint, flat, synth_gateway

BOTS_FILE = "tests/infra/data/gateway_bots.json"
CONTEXT = {
    "gatewayBotsFile": BOTS_FILE,
    "gatewayMemoryMb": "2048",
    "gatewayThrottlingRateLimit": "25",
    "gatewayThrottlingBurstLimit": "40",
    "gatewayMediaExpirationDays": "3",
}
# Env-agnostic synth: the account looked up by region and architecture (a region without the layer fails the deploy).
LWA_LAYER = (
    "arn:<AWS::Partition>:lambda:<AWS::Region>:<WebAdapterLayerPublisher[<AWS::Region>].arm64>"
    f":layer:LambdaAdapterLayerArm64:{WEB_ADAPTER_LAYER_VERSION}"
)


def _fm(region: str, model: str) -> str:
    return f"arn:<AWS::Partition>:bedrock:{region}::foundation-model/{model}"


def _profile(region: str, profile: str) -> str:
    return f"arn:<AWS::Partition>:bedrock:{region}:<AWS::AccountId>:inference-profile/{profile}"


# The fixture's bots, expanded by hand: bedrockRegions is us-east-1, us-east-2, us-west-2 (cdk.json).
US = ("us-east-1", "us-east-2", "us-west-2")
EXPECTED_MODEL_ARNS = {
    _fm("us-east-1", "anthropic.claude-3-haiku-20240307-v1:0"),  # haiku
    _profile("us-east-1", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),  # haiku-us (+ count tokens model)
    *(_fm(r, "anthropic.claude-3-5-haiku-20241022-v1:0") for r in US),
    "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1",  # router + its target
    _profile("us-east-1", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    *(_fm(r, "anthropic.claude-3-5-sonnet-20241022-v2:0") for r in US),
    _fm("us-east-1", "amazon.nova-canvas-v1:0"),  # canvas
    _fm("us-west-2", "stability.sd3-5-large-v1:0"),  # sd, in its own region
    _fm("us-east-1", "amazon.nova-reel-v1:1"),  # reel
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return synth_gateway(CONTEXT, tmp_path_factory.mktemp("gateway-assembly"))


@pytest.fixture(scope="module")
def function(gateway: Gateway) -> dict[str, Any]:
    props: dict[str, Any] = gateway.resources[gateway.logical_id(gateway.stack.gateway.function.function)]
    return props["Properties"]


def statements(gateway: Gateway) -> list[dict[str, Any]]:
    role_id = gateway.logical_id(gateway.stack.gateway.function.role)
    policies = [*gateway.of_type("AWS::IAM::Policy").values(), *gateway.of_type("AWS::IAM::ManagedPolicy").values()]
    return [
        statement
        for policy in policies  # a long list of models may overflow into a managed policy
        if {"Ref": role_id} in policy.get("Roles", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_methods_stream_from_lambda_with_a_15_minute_timeout(gateway: Gateway) -> None:
    # GIVEN the API's methods
    methods = gateway.of_type("AWS::ApiGateway::Method")
    function_id = gateway.logical_id(gateway.stack.gateway.function.function)
    # THEN ANY on the root and on {proxy+} are Lambda proxy integrations in STREAM mode with a 15-minute timeout
    assert sorted(m["HttpMethod"] for m in methods.values()) == ["ANY", "ANY"]
    assert any(r["PathPart"] == "{proxy+}" for r in gateway.of_type("AWS::ApiGateway::Resource").values())
    for method in methods.values():
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["ResponseTransferMode"] == "STREAM"
        assert integration["TimeoutInMillis"] == 900_000
        uri = flat(integration["Uri"])
        assert uri.endswith(f"/2021-11-15/functions/<{function_id}.Arn>/response-streaming-invocations")
        assert "RequestValidatorId" in method


def test_api_is_regional_with_access_logs_tracing_and_throttling_from_config(gateway: Gateway) -> None:
    # GIVEN the REST API and its stage
    (api,) = gateway.of_type("AWS::ApiGateway::RestApi").values()
    (stage,) = gateway.of_type("AWS::ApiGateway::Stage").values()
    # THEN the endpoint is REGIONAL (edge-optimized cuts streams idle for 30 s)
    assert api["EndpointConfiguration"]["Types"] == ["REGIONAL"]
    # AND access logs go to the gateway's log group, X-Ray is on, throttling comes from the (string) context
    assert stage["AccessLogSetting"]["DestinationArn"] == {
        "Fn::GetAtt": [gateway.logical_id(gateway.stack.gateway.access_logs), "Arn"]
    }
    assert stage["TracingEnabled"] is True
    (settings,) = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 25 and settings["ThrottlingBurstLimit"] == 40
    assert settings["LoggingLevel"] == "ERROR"
    # AND the request validator checks parameters and bodies
    gateway.template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True, "ValidateRequestParameters": True}
    )


def test_function_runs_the_app_under_the_web_adapter(function: dict[str, Any]) -> None:
    # THEN the function is an arm64 zip running run.sh for 15 minutes with the configured memory
    assert function["Timeout"] == 900
    assert function["Architectures"] == ["arm64"]
    assert function["Runtime"] == "python3.13"
    assert function["Handler"] == "run.sh"
    assert function["MemorySize"] == 2048
    assert function["TracingConfig"] == {"Mode": "Active"}
    # AND the Lambda Web Adapter layer of the stack's region and architecture, version and account from config
    assert [flat(layer) for layer in function["Layers"]] == [LWA_LAYER]
    # AND the adapter streams the responses of the app listening on 8080, once /health answers
    env = function["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/health"
    assert env["PORT"] == "8080"
    # AND a bot file outside lambdas/ is staged into the asset, where the app is told to read it
    assert env["GATEWAY_BOTS_FILE"] == "/var/task/gateway-bots.json"


def test_the_function_reads_every_event_as_it_arrives(function: dict[str, Any]) -> None:
    # GIVEN the Lambda option: one stream per execution environment, nothing for read pacing to group
    env = function["Environment"]["Variables"]
    # THEN the function sets no read pacing, and the app's default for it is off
    assert "GATEWAY_STREAM_INTERVAL_MS" not in env
    assert GatewaySettings.stream_interval_ms == 0


def test_env_agnostic_gateway_takes_the_layer_account_by_region(gateway: Gateway) -> None:
    # GIVEN the project's env-agnostic gateway stack / WHEN reading its mappings
    mapping = gateway.template.to_json()["Mappings"]["WebAdapterLayerPublisher"]
    # THEN the arm64 layer's account is known in exactly the regions that publish it: a deploy elsewhere stops before
    # any resource
    assert {region: accounts["arm64"] for region, accounts in mapping.items() if "arm64" in accounts} == (
        web_adapter_publishers("arm64")
    )


def test_run_script_serves_the_app_with_uvicorn() -> None:
    # GIVEN the start-up script staged as run.sh
    script = Path(__file__).resolve().parents[2] / "stacks" / "constructs" / "gateway_run.sh"
    text = script.read_text()
    # THEN it is an executable shell script that execs uvicorn on $PORT with the FastAPI app
    assert text.startswith("#!/bin/bash\n") and script.stat().st_mode & 0o111
    assert 'exec python -m uvicorn --host 127.0.0.1 --port "${PORT:-8080}"' in text
    assert text.rstrip().endswith("lambdas.gateway.app:app")


def test_access_keys_stay_in_secrets_manager(gateway: Gateway, function: dict[str, Any]) -> None:
    # GIVEN the secret
    secret_id = gateway.logical_id(gateway.stack.gateway.access_keys)
    assert gateway.resources[secret_id]["Type"] == "AWS::SecretsManager::Secret"
    # THEN the function gets its ARN, and no other variable could carry a key
    env = function["Environment"]["Variables"]
    assert env["GATEWAY_ACCESS_KEYS_SECRET_ARN"] == {"Ref": secret_id}
    assert set(env) == {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
        "AWS_LAMBDA_EXEC_WRAPPER",
        "AWS_LWA_INVOKE_MODE",
        "AWS_LWA_READINESS_CHECK_PATH",
        "PORT",
        "GATEWAY_BOTS_FILE",
        "GATEWAY_ACCOUNT_ID",
        "GATEWAY_MEDIA_BUCKET",
        "GATEWAY_ACCESS_KEYS_SECRET_ARN",
        "GATEWAY_KEYS_TABLE",  # team keys: the table's name and the admin key's secret ARN
        "GATEWAY_ADMIN_KEY_SECRET_ARN",
        "GATEWAY_BATCH_BUCKET",  # the Batch API: the batch stack's bucket and state machine (names, no key)
        "GATEWAY_BATCH_STATE_MACHINE_ARN",
    }
    admin_id = gateway.logical_id(gateway.stack.gateway.team_keys.admin_key)
    assert env["GATEWAY_ADMIN_KEY_SECRET_ARN"] == {"Ref": admin_id}
    # AND the role may read those secrets only
    reads = [s for s in statements(gateway) if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    resources = [resource for s in reads for resource in as_list(s["Resource"])]
    assert sorted(map(str, resources)) == sorted([str({"Ref": secret_id}), str({"Ref": admin_id})])


def test_media_bucket_is_private_encrypted_ssl_only_and_expires(gateway: Gateway, function: dict[str, Any]) -> None:
    # GIVEN the media bucket
    bucket_id = gateway.logical_id(gateway.stack.gateway.media_bucket.bucket)
    bucket = gateway.resources[bucket_id]["Properties"]
    # THEN it is encrypted, blocks public access, logs access and expires objects after gatewayMediaExpirationDays
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "LoggingConfiguration" in bucket
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireMedia"]["ExpirationInDays"] == 3 and "Prefix" not in rules["ExpireMedia"]
    # AND its policy denies requests without TLS
    gateway.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            },
        },
    )
    # AND the function reads (presigns) and writes (one PutObject, never multipart) its objects, and knows its name
    assert function["Environment"]["Variables"]["GATEWAY_MEDIA_BUCKET"] == {"Ref": bucket_id}
    media = [
        s
        for s in statements(gateway)
        if any(a.startswith("s3:") for a in as_list(s["Action"])) and bucket_id in json.dumps(s["Resource"])
    ]  # (the Batch API's S3 grants, on the batch stack's bucket: tests/infra/test_gateway_batch_api.py)
    assert [(sorted(as_list(s["Action"])), flat(s["Resource"])) for s in media] == [
        (["s3:GetObject", "s3:PutObject"], f"<{bucket_id}.Arn>/*")
    ]


def test_bedrock_access_is_exactly_the_bots_models(gateway: Gateway) -> None:
    # GIVEN the role's Bedrock statements
    bedrock = [s for s in statements(gateway) if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]
    model_statements = [s for s in bedrock if "bedrock:CountTokens" in as_list(s["Action"])]
    # THEN one statement allows the model actions on the fixture's models (profiles and router targets expanded)
    (models,) = model_statements
    assert sorted(as_list(models["Action"])) == sorted(MODEL_ACTIONS)
    resources = [flat(r) for r in as_list(models["Resource"])]
    assert len(resources) == len(set(resources))
    assert set(resources) == EXPECTED_MODEL_ARNS
    # AND the only other Bedrock statement lets the video bot start and follow this account's async invocations in
    # its region (StartAsyncInvoke is authorized as InvokeModel on the model and on the async-invoke ARN)
    (async_invokes,) = [s for s in bedrock if s is not models]
    assert sorted(as_list(async_invokes["Action"])) == ["bedrock:GetAsyncInvoke", "bedrock:InvokeModel"]
    assert flat(async_invokes["Resource"]) == "arn:<AWS::Partition>:bedrock:us-east-1:<AWS::AccountId>:async-invoke/*"
    # AND no Bedrock action is allowed on '*'
    assert all("*" not in as_list(s["Resource"]) for s in bedrock)


def test_bots_without_a_region_use_the_stack_region_and_global_profiles_any_region() -> None:
    # GIVEN bots without a region, one on a global profile
    stack = cdk.Stack(cdk.App(), "Probe", env=cdk.Environment(account="111122223333", region="eu-west-1"))
    cfg = GatewayConfig(
        bots=(
            GatewayBot(name="a", model_id="amazon.nova-lite-v1:0"),
            GatewayBot(name="b", model_id="global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ),
        bedrock_regions=("eu-west-1", "eu-central-1"),
    )
    # WHEN expanding their models
    arns = [stack.resolve(arn) for arn in bot_model_arns(stack, cfg)]
    # THEN the stack's region is used, and a global profile adds the region-less foundation-model ARN
    base = "anthropic.claude-haiku-4-5-20251001-v1:0"
    assert [flat(arn) for arn in arns] == [
        _fm("eu-west-1", "amazon.nova-lite-v1:0"),
        "arn:<AWS::Partition>:bedrock:eu-west-1:111122223333:inference-profile/global." + base,
        _fm("eu-west-1", base),
        _fm("eu-central-1", base),
        _fm("", base),
    ]


def test_an_account_less_router_arn_is_the_deploying_accounts_router() -> None:
    # GIVEN a bot on a default prompt router whose ARN leaves the account empty (as bots.json ships them)
    stack = cdk.Stack(cdk.App(), "Probe", env=cdk.Environment(account="111122223333", region="us-east-1"))
    router = "arn:aws:bedrock:us-east-1::default-prompt-router/anthropic.claude:1"
    cfg = GatewayConfig(
        bots=(GatewayBot(name="r", model_id=router, target_model_ids=("us.anthropic.claude-3-haiku-20240307-v1:0",)),),
        bedrock_regions=("us-east-1",),
    )
    # WHEN expanding its models
    arns = [flat(stack.resolve(arn)) for arn in bot_model_arns(stack, cfg)]
    # THEN IAM names the router in the stack's account, then the models it routes to
    assert arns[0] == "arn:<AWS::Partition>:bedrock:us-east-1:111122223333:default-prompt-router/anthropic.claude:1"
    assert "::default-prompt-router" not in " ".join(arns)


def test_the_function_knows_its_account_for_account_less_arns(function: dict[str, Any]) -> None:
    assert function["Environment"]["Variables"]["GATEWAY_ACCOUNT_ID"] == {"Ref": "AWS::AccountId"}


def test_template_passes_cfn_lint(gateway: Gateway, tmp_path: Path) -> None:
    # GIVEN the gateway template WHEN cfn-lint checks it (it also knows every IAM action and its resource types)
    # THEN it reports nothing
    assert cfn_lint({"BedrockModelGateway": gateway.template.to_json()}, tmp_path) == ""


def test_outputs_name_the_api_url_and_the_media_bucket(gateway: Gateway) -> None:
    outputs = gateway.template.to_json()["Outputs"]
    api_id = gateway.logical_id(gateway.stack.gateway.api)
    assert flat(outputs["ApiUrl"]["Value"]).startswith(f"https://<{api_id}>.execute-api.")
    assert outputs["MediaBucketName"]["Value"] == {"Ref": gateway.logical_id(gateway.stack.gateway.media_bucket.bucket)}


def test_outputs_name_the_access_key_secret(gateway: Gateway) -> None:
    # GIVEN the gateway template WHEN its outputs are read
    outputs = gateway.template.to_json()["Outputs"]
    # THEN AccessKeysSecretArn is the secret the function reads its keys from (cli smoke reads the key there)
    secret = {"Ref": gateway.logical_id(gateway.stack.gateway.access_keys)}
    assert outputs["AccessKeysSecretArn"]["Value"] == secret


def test_nag_passes_for_both_stacks(gateway: Gateway) -> None:
    # GIVEN the app synthesized as app.py builds it, with AwsSolutionsChecks registered (the synth raises on errors)
    report = json.loads((Path(gateway.assembly.directory) / "validation-report.json").read_text())
    # THEN both stacks were checked and no violation remains, neither error nor warning
    assert {artifact.stack_name for artifact in gateway.assembly.stacks} == {STACK_NAME, GATEWAY_STACK_NAME}
    violations = [violation for plugin in report["pluginReports"] for violation in plugin["violations"]]
    assert violations == []


def test_gateway_metrics_have_their_own_namespace(function: dict[str, Any]) -> None:
    # GIVEN the gateway function THEN its Powertools metrics (cost per bot) go to BedrockGateway, not BedrockBatch
    assert function["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "BedrockGateway"


# --- guardrails, kmsKey and modelInvocationLogging ------------------------------------------------------------------

GUARDED_BOTS_FILE = "tests/infra/data/gateway_bots_guarded.json"
GUARDED_CONTEXT = {"gatewayBotsFile": GUARDED_BOTS_FILE, "kmsKey": "create", "modelInvocationLogging": "true"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    """Bots with guardrails (one from ``defaults``, one ARN, one bot opting out), ``kmsKey: create`` and model
    invocation logging on, passed as strings as ``-c`` passes them."""
    return synth_gateway(GUARDED_CONTEXT, tmp_path_factory.mktemp("gateway-guarded-assembly"))


def test_apply_guardrail_is_allowed_on_the_bots_guardrails_only(guarded: Gateway, gateway: Gateway) -> None:
    # GIVEN the role's guardrail statements, with and without guardrails in the bot file
    applies = [s for s in statements(guarded) if "bedrock:ApplyGuardrail" in as_list(s["Action"])]
    # THEN one statement allows ApplyGuardrail on the configured guardrails: an id in the bot's region (the stack's
    # when it names none) and the stack's account, an ARN as given; the bot with "guardrail": null adds none
    (apply,) = applies
    assert as_list(apply["Action"]) == ["bedrock:ApplyGuardrail"]
    assert sorted(flat(r) for r in as_list(apply["Resource"])) == sorted(
        [
            "arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:guardrail/gr0default1",
            "arn:<AWS::Partition>:bedrock:us-west-2:<AWS::AccountId>:guardrail/gr0default1",
            "arn:aws:bedrock:us-east-1:123456789012:guardrail/gr0canvas2",
        ]
    )
    # AND without any guardrail the role has no guardrail permission at all
    assert not [s for s in statements(gateway) if "bedrock:ApplyGuardrail" in as_list(s["Action"])]


def test_dashboard_counts_interventions_of_the_guarded_bots(guarded: Gateway) -> None:
    # GIVEN the guarded app's dashboard THEN it graphs GuardrailInterventions for each bot with a guardrail
    (dashboard,) = guarded.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["DashboardBody"])
    assert "Guardrail interventions per bot" in body
    for bot in ("haiku", "haiku-west", "canvas"):
        assert f'\\"GuardrailInterventions\\",\\"bot\\",\\"{bot}\\"' in body
    assert '\\"GuardrailInterventions\\",\\"bot\\",\\"open\\"' not in body


def test_kms_key_encrypts_the_media_bucket_and_lets_the_function_presign(guarded: Gateway, gateway: Gateway) -> None:
    # GIVEN kmsKey "create": the gateway stack's own rotated key
    ((key_id, key),) = guarded.of_type("AWS::KMS::Key").items()
    assert key["EnableKeyRotation"] is True
    # THEN the media bucket is SSE-KMS with it (and an S3 Bucket Key)
    bucket_id = guarded.logical_id(guarded.stack.gateway.media_bucket.bucket)
    (rule,) = guarded.resources[bucket_id]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert rule["BucketKeyEnabled"] is True
    # AND the function may encrypt (puts) and decrypt (presigned gets are authorized as its role) through S3 only
    uses = [
        s
        for s in statements(guarded)
        if {"Fn::GetAtt": [key_id, "Arn"]} in as_list(s["Resource"]) and "kms:GenerateDataKey" in as_list(s["Action"])
    ]
    (use,) = uses
    assert sorted(as_list(use["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert flat(use["Condition"]["StringEquals"]["kms:ViaService"]) == "s3.<AWS::Region>.amazonaws.com"
    # AND without kmsKey: no key, SSE-S3, no KMS permission
    assert not gateway.of_type("AWS::KMS::Key")
    assert not [s for s in statements(gateway) if any(a.startswith("kms:") for a in as_list(s["Action"]))]


def test_model_invocation_logging_writes_to_an_encrypted_log_group(guarded: Gateway, gateway: Gateway) -> None:
    logging = guarded.stack.invocation_logging
    assert logging is not None and gateway.stack.invocation_logging is None
    # GIVEN modelInvocationLogging on THEN the log group is encrypted with the key and kept on delete
    group_id = guarded.logical_id(logging.log_group)
    group = guarded.resources[group_id]
    (key_id,) = guarded.of_type("AWS::KMS::Key")
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert group["DeletionPolicy"] == "Retain" and group["Properties"]["RetentionInDays"] == 30
    # AND only Bedrock acting for this account and region may assume the logging role (confused deputy)
    role_id = guarded.logical_id(logging.role)
    (trust,) = guarded.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert flat(trust["Condition"]["ArnLike"]["aws:SourceArn"]) == (
        "arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:*"
    )
    # AND the role may write into that log group only
    writes = [
        s
        for policy in guarded.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Roles"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    assert [(sorted(as_list(s["Action"])), s["Resource"]) for s in writes] == [
        (["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::GetAtt": [group_id, "Arn"]})
    ]


def test_model_invocation_logging_is_set_and_removed_by_a_custom_resource(guarded: Gateway, gateway: Gateway) -> None:
    logging = guarded.stack.invocation_logging
    assert logging is not None
    # GIVEN the custom resource
    (custom,) = [r for r in guarded.resources.values() if r["Type"] == "Custom::AWS"]
    create = json.loads(flat(custom["Properties"]["Create"]))
    # THEN create and update put the configuration: text data into the log group, written with the role
    assert (create["service"], create["action"]) == (
        "@aws-sdk/client-bedrock",
        "PutModelInvocationLoggingConfiguration",
    )
    config = create["parameters"]["loggingConfig"]
    assert config["cloudWatchConfig"] == {
        "logGroupName": f"<{guarded.logical_id(logging.log_group)}>",
        "roleArn": f"<{guarded.logical_id(logging.role)}.Arn>",
    }
    assert config["textDataDeliveryEnabled"] is True and config["imageDataDeliveryEnabled"] is False
    assert json.loads(flat(custom["Properties"]["Update"])) == create
    # AND delete removes it
    delete = json.loads(custom["Properties"]["Delete"])
    assert (delete["service"], delete["action"]) == (
        "@aws-sdk/client-bedrock",
        "DeleteModelInvocationLoggingConfiguration",
    )
    # AND its policy allows the two logging actions (no resource types: '*') and passing the logging role only
    (policy,) = [
        p
        for k, p in guarded.of_type("AWS::IAM::Policy").items()
        if k.startswith("ModelInvocationLogging") and "CustomResourcePolicy" in k
    ]
    by_action = {tuple(sorted(as_list(s["Action"]))): s for s in policy["PolicyDocument"]["Statement"]}
    assert (
        by_action[
            ("bedrock:DeleteModelInvocationLoggingConfiguration", "bedrock:PutModelInvocationLoggingConfiguration")
        ]["Resource"]
        == "*"
    )
    pass_role = by_action[("iam:PassRole",)]
    assert pass_role["Resource"] == {"Fn::GetAtt": [guarded.logical_id(logging.role), "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
    # AND off (the default) there is no custom resource, no logging role and no extra log group
    assert not [r for r in gateway.resources.values() if r["Type"] == "Custom::AWS"]


def test_guarded_app_passes_nag_and_cfn_lint(guarded: Gateway, tmp_path: Path) -> None:
    # GIVEN the app with guardrails, kmsKey and invocation logging THEN cdk-nag leaves no finding
    report = json.loads((Path(guarded.assembly.directory) / "validation-report.json").read_text())
    assert [v for plugin in report["pluginReports"] for v in plugin["violations"]] == []
    # AND cfn-lint reports nothing on the gateway template
    assert cfn_lint({"BedrockModelGateway": guarded.template.to_json()}, tmp_path) == ""


def test_lambda_is_the_default_compute(gateway: Gateway) -> None:
    # GIVEN no gatewayCompute / THEN the gateway is the function behind the REST API: no ECS, load balancer or VPC
    assert gateway.stack.service is None
    assert len(gateway.of_type("AWS::ApiGateway::RestApi")) == 1
    for type_ in ("AWS::ECS::Service", "AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::EC2::VPC"):
        assert gateway.of_type(type_) == {}
    # AND the stack stays environment-agnostic (the Lambda Web Adapter layer is looked up per partition)
    assert cdk.Token.is_unresolved(gateway.stack.region)
