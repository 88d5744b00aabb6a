"""AppConfig: context values are cast (-c passes strings) and every bad value names the key, the value and the fix."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from stacks.config import (
    DEFAULT_ALLOWED_MODEL_IDS,
    KNOWN_KEYS,
    AppConfig,
    BatchConfig,
    FunctionConfig,
    StorageConfig,
    base_model_id,
    is_inference_profile,
)


def test_defaults_without_context() -> None:
    # GIVEN no context / WHEN reading the config / THEN every documented default applies
    cfg = AppConfig.from_context({})
    assert cfg == AppConfig(batch=BatchConfig(), functions=FunctionConfig(), storage=StorageConfig())
    assert cfg.batch.max_concurrent_jobs == 20
    assert cfg.batch.execution_timeout_hours == 96
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
    # THEN each is cast to its type, and executionTimeoutHours follows jobTimeoutHours
    assert cfg.batch.max_concurrent_jobs == 7
    assert cfg.batch.poll_interval_seconds == 5
    assert cfg.batch.execution_timeout_hours == 48
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
        "executionTimeoutHours": "96",
        "maxRecordsPerJob": "50000",
        "allowedModelIds": ",".join(DEFAULT_ALLOWED_MODEL_IDS),
        "bedrockRegions": "us-east-1,us-east-2,us-west-2",
        "lambdaArchitecture": "arm64",
        "controlPlaneMemoryMb": "256",
        "dataPlaneMemoryMb": "3008",
        "dataPlaneEphemeralStorageMb": "10240",
        "logRetentionDays": "30",
        "runDataExpirationDays": "30",
        "autoDeleteObjects": "false",
    }
    assert set(defaults) == set(KNOWN_KEYS)
    assert AppConfig.from_context(defaults) == AppConfig.from_context({})


def test_inference_profile_ids() -> None:
    # GIVEN profile and foundation-model ids / WHEN / THEN the geography prefix marks a profile over its base model
    assert is_inference_profile("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    assert not is_inference_profile("anthropic.claude-3-haiku-20240307-v1:0")
    assert base_model_id("global.anthropic.claude-x-v1:0") == "anthropic.claude-x-v1:0"
    assert base_model_id("amazon.titan-embed-text-v2:0") == "amazon.titan-embed-text-v2:0"
