"""AppConfig: context values are cast (-c passes strings) and every bad value names the key, the value and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lambdas.shared.model_families import BATCH_MODEL_PREFIXES
from stacks.config import (
    DEFAULT_ALLOWED_MODEL_IDS,
    KMS_KEY_CREATE,
    KNOWN_KEYS,
    OBSERVABILITY_KEYS,
    AppConfig,
    BatchConfig,
    BatchVpcConfig,
    FunctionConfig,
    GatewayBot,
    GatewayConfig,
    ObservabilityConfig,
    SecurityConfig,
    StorageConfig,
    base_model_id,
    is_inference_profile,
)


def test_defaults_without_context() -> None:
    # GIVEN no context / WHEN reading the config / THEN every documented default applies
    cfg = AppConfig.from_context({})
    assert cfg == AppConfig(batch=BatchConfig(), functions=FunctionConfig(), storage=StorageConfig())
    assert cfg.batch.max_concurrent_jobs == 20
    assert cfg.batch.execution_timeout_hours == 2 * (72 + 2 + 1)
    assert cfg.batch.allowed_model_ids == DEFAULT_ALLOWED_MODEL_IDS
    assert cfg.functions.architecture == "arm64"
    assert cfg.storage.auto_delete_objects is False


def test_cli_strings_are_cast() -> None:
    # GIVEN context values as `cdk synth -c key=value` passes them: strings
    context = {
        "maxConcurrentJobs": "7",
        "pollIntervalSeconds": " 5 ",
        "jobTimeoutHours": "24",
        "autoDeleteObjects": "TRUE",
        "allowedModelIds": '["amazon.nova-lite-v1:0", "us.amazon.nova-pro-v1:0"]',
        "bedrockRegions": "us-east-1,us-west-2",
        "lambdaArchitecture": "x86_64",
        "logRetentionDays": "7",
    }
    # WHEN reading the config
    cfg = AppConfig.from_context(context)
    # THEN each is cast to its type, and executionTimeoutHours follows jobTimeoutHours: a planned job and a
    # resubmission job, each running to its deadline plus Poll's 2-hour margin and an hour for the stop
    assert cfg.batch.max_concurrent_jobs == 7
    assert cfg.batch.poll_interval_seconds == 5
    assert cfg.batch.execution_timeout_hours == 2 * (24 + 2 + 1)
    assert cfg.storage.auto_delete_objects is True
    assert cfg.batch.allowed_model_ids == ("amazon.nova-lite-v1:0", "us.amazon.nova-pro-v1:0")
    assert cfg.batch.bedrock_regions == ("us-east-1", "us-west-2")
    assert cfg.functions.architecture == "x86_64"
    assert cfg.functions.log_retention_days == 7


def test_from_app_reads_the_app_context() -> None:
    # GIVEN anything with a construct node (a cdk.App in real use)
    app = SimpleNamespace(node=SimpleNamespace(get_all_context=lambda: {"maxConcurrentJobs": 3}))
    # WHEN / THEN from_app reads its context
    assert AppConfig.from_app(app).batch.max_concurrent_jobs == 3


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("maxConcurrentJobs", "x"),
        ("maxConcurrentJobs", 0),
        ("maxConcurrentJobs", 1001),
        ("maxConcurrentJobs", 2.5),
        ("maxConcurrentJobs", True),
        ("pollIntervalSeconds", 0),
        ("pollIntervalSeconds", "3601"),
        ("jobTimeoutHours", 23),
        ("jobTimeoutHours", "169"),
        ("executionTimeoutHours", 72),
        ("executionTimeoutHours", "9000"),
        ("lambdaArchitecture", "arm"),
        ("controlPlaneMemoryMb", 64),
        ("dataPlaneMemoryMb", 20000),
        ("dataPlaneEphemeralStorageMb", 256),
        ("logRetentionDays", 31),
        ("logRetentionDays", "forever"),
        ("runDataExpirationDays", 0),
        ("autoDeleteObjects", "yes"),
        ("maxRecordsPerJob", 99),
        ("maxRecordsPerJob", 50001),
        ("allowedModelIds", "[]"),
        ("allowedModelIds", "[not json"),
        ("allowedModelIds", "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"),
        ("allowedModelIds", [1, 2]),
        ("allowedModelIds", '["amazon.nova-lite-v1:0", "mistral.mistral-7b-instruct-v0:2"]'),
        ("bedrockRegions", "us-east"),
        ("bedrockRegions", ""),
    ],
)
def test_bad_value_names_key_value_and_fix(key: str, value: object) -> None:
    # GIVEN a context with one bad value
    # WHEN reading the config / THEN the error names the key, shows the value and says how to set it
    with pytest.raises(ValueError) as caught:
        AppConfig.from_context({key: value})
    message = str(caught.value)
    assert message.startswith(f"{key} must be ")
    assert repr(value) in message
    assert f"set it in cdk.json or pass -c {key}=" in message


@pytest.mark.parametrize(
    "model_id",
    [
        "mistral.mistral-7b-instruct-v0:2",
        "mistral.mixtral-8x7b-instruct-v0:1",
        "mistral.mistral-large-2402-v1:0",
        "cohere.embed-english-v3",
        "cohere.embed-multilingual-v3",
    ],
)
def test_allowed_model_ids_reject_a_model_without_batch_inference_at_synth(model_id: str) -> None:
    # GIVEN allowedModelIds listing a batch model and a model the registry knows but that has no batch inference
    value = ["amazon.nova-lite-v1:0", model_id]
    # WHEN reading the config
    with pytest.raises(ValueError) as caught:
        AppConfig.from_context({"allowedModelIds": value})
    # THEN the error names the key, the value and the fix
    message = str(caught.value)
    assert message.startswith("allowedModelIds must be a list whose items are ids of models that support batch")
    assert f"'{model_id}' does not support batch inference" in message and repr(value) in message
    assert "use the gateway for on-demand inference, or a batch model such as" in message


def test_allowed_model_ids_accept_every_batch_model_of_the_registry() -> None:
    # GIVEN one id for each batch model prefix of the registry, and a system profile of each
    ids = [f"{prefix}-v1:0" for prefix in BATCH_MODEL_PREFIXES] + [f"us.{p}-v1:0" for p in BATCH_MODEL_PREFIXES]
    # WHEN reading the config THEN all are accepted
    assert AppConfig.from_context({"allowedModelIds": ids}).batch.allowed_model_ids == tuple(ids)


def test_a_near_miss_key_is_rejected_with_a_suggestion() -> None:
    # GIVEN a typo of a known key, which would otherwise be silently ignored
    # WHEN / THEN the error suggests the right key
    with pytest.raises(ValueError, match="unknown context key 'maxConcurentJobs'; did you mean 'maxConcurrentJobs'"):
        AppConfig.from_context({"maxConcurentJobs": 7})
    with pytest.raises(ValueError, match="did you mean 'pollIntervalSeconds'"):
        AppConfig.from_context({"poll_interval_seconds": 5})


def test_cdk_and_unrelated_keys_are_left_alone() -> None:
    # GIVEN CDK's own context keys and an unrelated one
    context = {"@aws-cdk/aws-iam:minimizePolicies": True, "aws:cdk:bundling-stacks": [], "gatewayStage": "prod"}
    # WHEN / THEN they are not mistaken for typos
    assert AppConfig.from_context(context).batch == BatchConfig()


def test_every_known_key_is_read() -> None:
    # GIVEN every known key set to its default, as a string / WHEN reading / THEN the result equals the defaults
    defaults = {
        "maxConcurrentJobs": "20",
        "pollIntervalSeconds": "60",
        "jobTimeoutHours": "72",
        "executionTimeoutHours": "150",
        "maxRecordsPerJob": "50000",
        "allowedModelIds": ",".join(DEFAULT_ALLOWED_MODEL_IDS),
        "bedrockRegions": "us-east-1,us-east-2,us-west-2",
        "onDemandConcurrency": "4",
        "lambdaArchitecture": "arm64",
        "controlPlaneMemoryMb": "256",
        "dataPlaneMemoryMb": "3008",
        "dataPlaneEphemeralStorageMb": "10240",
        "logRetentionDays": "30",
        "runDataExpirationDays": "30",
        "autoDeleteObjects": "false",
        "kmsKey": "",
        "tags": "{}",
        "batchVpc": "",
        "prices": "",
    }
    assert set(defaults) == set(KNOWN_KEYS)
    assert AppConfig.from_context(defaults) == AppConfig.from_context({})


@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_on_demand_concurrency_is_bounded_and_named_in_the_error(value: str) -> None:
    # GIVEN onDemandConcurrency outside 1-64 (or not a number) / WHEN reading / THEN the key and the fix are named
    with pytest.raises(ValueError, match="onDemandConcurrency"):
        AppConfig.from_context({"onDemandConcurrency": value})
    # AND a value inside reaches the batch config
    assert AppConfig.from_context({"onDemandConcurrency": "8"}).batch.on_demand_concurrency == 8


def test_prices_override_the_price_file_per_model() -> None:
    # GIVEN cdk.json prices for one model, as -c passes them (a JSON string)
    context = {"prices": '{"amazon.nova-lite-v1:0": {"input_per_1m": 0.07, "output_per_1m": 0.3}}'}
    # WHEN reading the config
    batch = AppConfig.from_context(context).batch
    # THEN they are kept, and given to Finalize as the JSON its price table reads
    assert batch.prices == (("amazon.nova-lite-v1:0", 0.07, 0.3),)
    assert json.loads(batch.prices_json()) == {"amazon.nova-lite-v1:0": {"input_per_1m": 0.07, "output_per_1m": 0.3}}


@pytest.mark.parametrize(
    "prices",
    [
        {"amazon.nova-lite-v1:0": {"input_per_1m": 0.07}},
        {"amazon.nova-lite-v1:0": {"input_per_1m": -1, "output_per_1m": 0.3}},
        {"not a model": {"input_per_1m": 1, "output_per_1m": 1}},
        ["amazon.nova-lite-v1:0"],
        "{not json",
    ],
)
def test_malformed_prices_fail_with_the_key_and_an_example(prices: object) -> None:
    # GIVEN a prices value that is not model id -> {input_per_1m, output_per_1m} / WHEN / THEN synth fails, naming it
    with pytest.raises(ValueError, match="prices must be .*input_per_1m"):
        AppConfig.from_context({"prices": prices})


def test_inference_profile_ids() -> None:
    # GIVEN profile and foundation-model ids / WHEN / THEN the geography prefix marks a profile over its base model
    assert is_inference_profile("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    assert not is_inference_profile("anthropic.claude-3-haiku-20240307-v1:0")
    assert base_model_id("global.anthropic.claude-x-v1:0") == "anthropic.claude-x-v1:0"
    assert base_model_id("amazon.titan-embed-text-v2:0") == "amazon.titan-embed-text-v2:0"


# --- GatewayConfig: the gateway keys and the bot file ------------------------------------------------------------

ROUTER = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1"
CUSTOM_ROUTER = "arn:aws:bedrock:us-east-1:123456789012:prompt-router/abcdefgh1234"
NOVA_MME = "amazon.nova-2-multimodal-embeddings-v1:0"  # no published price: its bots carry their own


def _bots_file(tmp_path: Path, document: Any) -> dict[str, object]:
    path = tmp_path / "bots.json"
    path.write_text(json.dumps(document))
    return {"gatewayBotsFile": "bots.json"}


def test_gateway_reads_the_bot_file_with_defaults_applied(tmp_path: Path) -> None:
    # GIVEN a bot file with defaults, and gateway keys as -c passes them
    context = _bots_file(
        tmp_path,
        {
            "defaults": {"region": "us-east-1", "temperature": 0.5},
            "bots": {
                "chat": {"model_id": "us.amazon.nova-pro-v1:0", "count_tokens_model_id": "amazon.nova-pro-v1:0"},
                "router": {"model_id": ROUTER, "target_model_ids": ["anthropic.claude-3-haiku-20240307-v1:0"]},
                "reel": {"model_id": "amazon.nova-reel-v1:1", "modality": "video", "region": "us-west-2"},
            },
        },
    )
    context |= {"gatewayMemoryMb": "2048", "gatewayWebAdapterLayerVersion": "25", "gatewayMediaExpirationDays": "1"}
    # WHEN reading the gateway config
    cfg = GatewayConfig.from_context(context, root=tmp_path)
    # THEN the bots carry what IAM needs, defaults merged under each bot's own fields, and the keys are cast
    assert cfg.bots == (
        GatewayBot(
            name="chat",
            model_id="us.amazon.nova-pro-v1:0",
            region="us-east-1",
            count_tokens_model_id="amazon.nova-pro-v1:0",
        ),
        GatewayBot(
            name="router",
            model_id=ROUTER,
            region="us-east-1",
            target_model_ids=("anthropic.claude-3-haiku-20240307-v1:0",),
        ),
        GatewayBot(name="reel", model_id="amazon.nova-reel-v1:1", modality="video", region="us-west-2"),
    )
    assert (cfg.memory_mb, cfg.web_adapter_layer_version, cfg.media_expiration_days) == (2048, 25, 1)
    assert cfg.web_adapter_layer_account is None  # the layer the Lambda Web Adapter project publishes
    assert cfg.bots_file == "bots.json"


def test_gateway_defaults_match_cdk_json() -> None:
    # GIVEN the gateway keys of cdk.json / WHEN / THEN they are the documented defaults (the bot file aside); the Lambda
    # Web Adapter layer is not among them: its release is pinned in stacks/config/gateway.py alone (WEB_ADAPTER_*)
    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    gateway_keys = {key: value for key, value in context.items() if key.startswith("gateway")}
    assert gateway_keys == {
        "gatewayBotsFile": "lambdas/gateway/bots.json",
        "gatewayMemoryMb": GatewayConfig.memory_mb,
        "gatewayThrottlingRateLimit": GatewayConfig.throttling_rate_limit,
        "gatewayThrottlingBurstLimit": GatewayConfig.throttling_burst_limit,
        "gatewayMediaExpirationDays": GatewayConfig.media_expiration_days,
    }


def test_a_missing_bot_file_names_the_key(tmp_path: Path) -> None:
    # GIVEN no bot file / WHEN reading the gateway config / THEN the error names gatewayBotsFile and how to set it
    with pytest.raises(
        ValueError, match=r"gatewayBotsFile: the bot file .*missing.json' does not exist.*-c gatewayBots"
    ):
        GatewayConfig.from_context({"gatewayBotsFile": "missing.json"}, root=tmp_path)


@pytest.mark.parametrize(
    ("bot", "message"),
    [
        ({"model_id": "not a model"}, "model_id must be"),
        ({"model_id": "arn:aws:s3:::bucket"}, "model_id must be"),
        ({"model_id": "amazon.nova-lite-v1:0", "modality": "audio"}, "modality must be one of text, image, video"),
        ({"model_id": "amazon.nova-lite-v1:0", "region": "moon-1"}, "region must be"),
        ({"model_id": CUSTOM_ROUTER}, "target_model_ids must be the models the prompt-router sends requests to"),
        ({"model_id": ROUTER, "target_model_ids": [ROUTER]}, "target_model_ids must be model or inference-profile"),
        ({"model_id": "amazon.nova-lite-v1:0", "count_tokens_model_id": "us.amazon.nova-lite-v1:0"}, "CountTokens"),
        ({"model_id": NOVA_MME, "modality": "embedding"}, 'prices must be {"input_per_1k": <USD per 1,000 input'),
        ({"model_id": f"us.{NOVA_MME}", "prices": {"input_per_1k": 0}}, "Amazon Bedrock pricing page"),
    ],
)
def test_a_bad_bot_names_the_file_the_bot_and_the_field(tmp_path: Path, bot: dict[str, Any], message: str) -> None:
    # GIVEN a bot file with one bad bot
    context = _bots_file(tmp_path, {"defaults": {}, "bots": {"bad": bot}})
    # WHEN / THEN the error names the bot and the field
    with pytest.raises(ValueError, match="gatewayBotsFile: bot 'bad' in .*bots.json: ") as caught:
        GatewayConfig.from_context(context, root=tmp_path)
    assert message in str(caught.value)


def test_an_unpriced_model_synthesizes_with_the_bots_own_price(tmp_path: Path) -> None:
    # GIVEN a Nova Multimodal Embeddings bot (no published price) carrying the operator's price
    bot = {"model_id": NOVA_MME, "modality": "embedding", "prices": {"input_per_1k": 0.5}}
    context = _bots_file(tmp_path, {"defaults": {}, "bots": {"nova-embed": bot}})
    # WHEN reading the gateway config THEN the bot is read, for IAM to grant its model
    (read,) = GatewayConfig.from_context(context, root=tmp_path).bots
    assert (read.name, read.model_id, read.modality) == ("nova-embed", NOVA_MME, "embedding")


@pytest.mark.parametrize("document", [[], {"bots": {}}, {"bots": []}, {"defaults": [], "bots": {"a": {}}}])
def test_a_bot_file_of_the_wrong_shape_is_rejected(tmp_path: Path, document: Any) -> None:
    with pytest.raises(ValueError, match="must be"):
        GatewayConfig.from_context(_bots_file(tmp_path, document), root=tmp_path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("gatewayMemoryMb", "64"),
        ("gatewayWebAdapterLayerVersion", "0"),
        ("gatewayWebAdapterLayerAccount", "12345"),
        ("gatewayThrottlingRateLimit", "0"),
        ("gatewayThrottlingBurstLimit", "x"),
        ("gatewayMediaExpirationDays", "0"),
        ("gatewayBotsFile", "/etc/bots.json"),
        ("gatewayBotsFile", ""),
    ],
)
def test_a_bad_gateway_value_names_key_value_and_fix(tmp_path: Path, key: str, value: object) -> None:
    context = _bots_file(tmp_path, {"bots": {"a": {"model_id": "amazon.nova-lite-v1:0"}}}) | {key: value}
    with pytest.raises(ValueError) as caught:
        GatewayConfig.from_context(context, root=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{key} must be ") and repr(value) in message
    assert f"set it in cdk.json or pass -c {key}=" in message


def test_a_near_miss_gateway_key_is_rejected_by_both_readers() -> None:
    for reader in (AppConfig.from_context, GatewayConfig.from_context):
        with pytest.raises(ValueError, match="did you mean 'gatewayMemoryMb'"):
            reader({"gatewayMemoryMB_": 1024})


def test_default_prompt_routers_call_their_models_through_the_regions_profiles(tmp_path: Path) -> None:
    # GIVEN default prompt routers without target_model_ids, in a US and an EU region
    eu_router = "arn:aws:bedrock:eu-central-1:123456789012:default-prompt-router/meta.llama:1"
    context = _bots_file(tmp_path, {"bots": {"us": {"model_id": ROUTER}, "eu": {"model_id": eu_router}}})
    # WHEN reading the bots / THEN their targets are the routers' models through the geography's profiles
    us, eu = GatewayConfig.from_context(context, root=tmp_path).bots
    assert us.target_model_ids == (
        "us.anthropic.claude-3-haiku-20240307-v1:0",
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
    )
    assert eu.target_model_ids == ("eu.meta.llama3-1-8b-instruct-v1:0", "eu.meta.llama3-1-70b-instruct-v1:0")


def test_the_project_bot_file_is_readable_when_present() -> None:
    # GIVEN the gateway's own bot file (written alongside lambdas/gateway), if it exists yet
    if not (Path(__file__).resolve().parents[2] / "lambdas" / "gateway" / "bots.json").exists():
        pytest.skip("lambdas/gateway/bots.json is not there yet")
    # WHEN / THEN the synth-time reader accepts it: every bot has a model IAM can name
    cfg = GatewayConfig.from_context({})
    assert cfg.bots and all(bot.model_id for bot in cfg.bots)


# --- Security options (kmsKey, tags): off by default -------------------------------------------------------------

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_security_options_are_off_by_default() -> None:
    # GIVEN no security keys / WHEN reading the config / THEN no customer-managed key and no cost tags
    security = AppConfig.from_context({}).security
    assert security == SecurityConfig()
    assert security.kms_key is None and not security.uses_kms and security.tags == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("create", KMS_KEY_CREATE), (" Create ", KMS_KEY_CREATE), (KEY_ARN, KEY_ARN), ("", None), ("none", None)],
)
def test_kms_key_is_create_an_arn_or_nothing(value: str, expected: str | None) -> None:
    # GIVEN kmsKey as cdk.json or -c gives it / WHEN reading the config / THEN it is normalised
    assert AppConfig.from_context({"kmsKey": value}).security.kms_key == expected


@pytest.mark.parametrize("value", ["yes", "alias/batch", "arn:aws:kms:us-east-1:123456789012:alias/batch", 7])
def test_a_bad_kms_key_names_the_key_and_the_fix(value: object) -> None:
    # GIVEN a kmsKey that is neither "create" nor a key ARN / WHEN reading / THEN the error names the key and the fix
    with pytest.raises(ValueError, match=r"kmsKey must be .*create.*-c kmsKey=create"):
        AppConfig.from_context({"kmsKey": value})


def test_tags_come_from_an_object_or_its_json_string() -> None:
    # GIVEN the cost tags in cdk.json (an object) and with -c (a JSON string)
    tags = {"project": "batch", "owner": "team@example.com", "costCentre": "1234", "environment": "dev"}
    # WHEN reading the config THEN both give the same ordered pairs
    expected = tuple(tags.items())
    assert AppConfig.from_context({"tags": tags}).security.tags == expected
    assert AppConfig.from_context({"tags": json.dumps(tags)}).security.tags == expected


@pytest.mark.parametrize(
    "value",
    ['["project"]', "{not json", {"aws:createdBy": "me"}, {"project": 7}, {"": "x"}, {"a" * 129: "x"}],
)
def test_bad_tags_name_the_key(value: object) -> None:
    # GIVEN tags that AWS would reject / WHEN reading / THEN the error names the key and an example
    with pytest.raises(ValueError, match=r"^tags must be .*-c tags="):
        AppConfig.from_context({"tags": value})


def test_a_misspelt_security_key_is_caught() -> None:
    # GIVEN kmsKey misspelt / WHEN reading / THEN the typo check points at the right key
    with pytest.raises(ValueError, match="did you mean 'kmsKey'"):
        AppConfig.from_context({"kmsKeys": "create"})


# --- ObservabilityConfig: alarm mail and thresholds ---------------------------------------------------------------


def test_observability_defaults_and_cdk_json() -> None:
    # GIVEN no context / WHEN reading / THEN no alarm mail and the documented thresholds
    assert AppConfig.from_context({}).observability == ObservabilityConfig()
    assert ObservabilityConfig().alarm_email is None
    # AND cdk.json sets exactly these keys to the defaults ("" for no mail)
    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    assert {key: context[key] for key in OBSERVABILITY_KEYS} == {
        "alarmEmail": "",
        "alarmRecordFailurePercent": ObservabilityConfig.alarm_record_failure_percent,
        "alarmJobFailurePercent": ObservabilityConfig.alarm_job_failure_percent,
        "alarmGateway5xxPercent": ObservabilityConfig.alarm_gateway_5xx_percent,
        "alarmGateway4xxPercent": ObservabilityConfig.alarm_gateway_4xx_percent,
    }


def test_observability_strings_are_cast() -> None:
    # GIVEN the keys as -c passes them
    context = {
        "alarmEmail": " ops@example.com ",
        "alarmRecordFailurePercent": "20",
        "alarmJobFailurePercent": "5",
        "alarmGateway5xxPercent": "1",
        "alarmGateway4xxPercent": "100",
    }
    # WHEN reading / THEN they are cast and trimmed
    assert AppConfig.from_context(context).observability == ObservabilityConfig(
        alarm_email="ops@example.com",
        alarm_record_failure_percent=20,
        alarm_job_failure_percent=5,
        alarm_gateway_5xx_percent=1,
        alarm_gateway_4xx_percent=100,
    )
    # AND an empty or blank address means no alarm mail
    assert ObservabilityConfig.from_context({"alarmEmail": "  "}).alarm_email is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("alarmEmail", "ops"),
        ("alarmEmail", "ops@example"),
        ("alarmEmail", 7),
        ("alarmRecordFailurePercent", "0"),
        ("alarmRecordFailurePercent", 101),
        ("alarmJobFailurePercent", "0"),
        ("alarmGateway5xxPercent", "x"),
        ("alarmGateway4xxPercent", 2.5),
    ],
)
def test_a_bad_observability_value_names_key_value_and_fix(key: str, value: object) -> None:
    with pytest.raises(ValueError) as caught:
        AppConfig.from_context({key: value})
    message = str(caught.value)
    assert message.startswith(f"{key} must be ") and repr(value) in message
    assert f"set it in cdk.json or pass -c {key}=" in message


def test_a_near_miss_observability_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="did you mean 'alarmEmail'"):
        AppConfig.from_context({"alarm_email": "ops@example.com"})


def test_batch_vpc_is_created_or_existing_subnets() -> None:
    # GIVEN batchVpc as an object (cdk.json) or a JSON string (-c) / WHEN reading / THEN it is parsed
    assert AppConfig.from_context({"batchVpc": {"create": True}}).security.batch_vpc == BatchVpcConfig(create=True)
    existing = '{"vpcId": "vpc-0123abcd", "subnetIds": ["subnet-0123abcd", "subnet-0123abce", "subnet-0123abcd"]}'
    assert AppConfig.from_context({"batchVpc": existing}).security.batch_vpc == BatchVpcConfig(
        vpc_id="vpc-0123abcd", subnet_ids=("subnet-0123abcd", "subnet-0123abce")
    )
    assert AppConfig.from_context({}).security.batch_vpc is None


@pytest.mark.parametrize(
    "value",
    [
        {"create": "yes"},
        {"create": True, "vpcId": "vpc-0123abcd"},
        {"vpcId": "vpc-0123abcd"},
        {"vpcId": "vpc-0123abcd", "subnetIds": []},
        {"vpcId": "vpc-0123abcd", "subnetIds": ["subnet-0123abcd"] * 17},
        {"vpcId": "my-vpc", "subnetIds": ["subnet-0123abcd"]},
        {"vpcId": "vpc-0123abcd", "subnetIds": ["sg-0123abcd"]},
        {"vpcId": "vpc-0123abcd", "subnetIds": ["subnet-0123abcd"], "securityGroupIds": ["sg-1"]},
        "[1]",
        "{nope",
    ],
)
def test_a_bad_batch_vpc_names_the_key_and_the_fix(value: object) -> None:
    with pytest.raises(ValueError, match=r"^batchVpc must be .*-c batchVpc="):
        AppConfig.from_context({"batchVpc": value})


# --- gateway guardrails and modelInvocationLogging ---------------------------------------------------------------


def test_gateway_bots_carry_their_guardrail_for_iam(tmp_path: Path) -> None:
    # GIVEN a guardrail in defaults, one bot with its own ARN and one opting out
    arn = "arn:aws:bedrock:us-west-2:123456789012:guardrail/abc123"
    context = _bots_file(
        tmp_path,
        {
            "defaults": {"guardrail": {"identifier": "gr0default", "version": "DRAFT"}},
            "bots": {
                "chat": {"model_id": "amazon.nova-lite-v1:0"},
                "west": {"model_id": "amazon.nova-lite-v1:0", "guardrail": {"identifier": arn, "version": "1"}},
                "open": {"model_id": "amazon.nova-lite-v1:0", "guardrail": None},
            },
        },
    )
    # WHEN reading the gateway config THEN each bot names its guardrail id or ARN (None without one)
    cfg = GatewayConfig.from_context(context | {"modelInvocationLogging": "true"}, root=tmp_path)
    assert [(bot.name, bot.guardrail_id) for bot in cfg.bots] == [("chat", "gr0default"), ("west", arn), ("open", None)]
    # AND modelInvocationLogging is read as -c passes it (off by default)
    assert cfg.model_invocation_logging is True
    assert GatewayConfig.from_context(context, root=tmp_path).model_invocation_logging is False


@pytest.mark.parametrize("guardrail", ["abc", {"identifier": "Not_An_Id"}, {"version": "1"}])
def test_a_bad_guardrail_names_the_bot_and_the_shape(tmp_path: Path, guardrail: object) -> None:
    context = _bots_file(tmp_path, {"bots": {"chat": {"model_id": "amazon.nova-lite-v1:0", "guardrail": guardrail}}})
    with pytest.raises(ValueError, match=r"bot 'chat' .*: guardrail must be an object \{\"identifier\""):
        GatewayConfig.from_context(context, root=tmp_path)


def test_a_bad_model_invocation_logging_value_names_the_key(tmp_path: Path) -> None:
    context = _bots_file(tmp_path, {"bots": {"chat": {"model_id": "amazon.nova-lite-v1:0"}}})
    with pytest.raises(ValueError, match=r"^modelInvocationLogging must be true or false"):
        GatewayConfig.from_context(context | {"modelInvocationLogging": "maybe"}, root=tmp_path)
