"""Error mapping (Bedrock exceptions and stop reasons) and bot configuration validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError

from lambdas.gateway.config import (
    BOTS_FILE,
    BotConfigError,
    GatewaySettings,
    access_keys_from_env,
    load_bots,
    parse_bots,
)
from lambdas.gateway.errors import BEDROCK_ERRORS, GatewayError, from_bedrock, stop_outcome
from lambdas.gateway.metrics import EmfAgent


def client_error(code: str, message: str = "boom", status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "ConverseStream")


@pytest.mark.parametrize(
    ("code", "status", "allow_retry"),
    [
        ("ValidationException", 400, False),
        ("AccessDeniedException", 502, False),
        ("ResourceNotFoundException", 404, False),
        ("ThrottlingException", 429, True),
        ("ServiceQuotaExceededException", 429, False),
        ("ModelNotReadyException", 503, True),
        ("ModelTimeoutException", 504, True),
        ("ModelErrorException", 502, True),
        ("InternalServerException", 502, True),
        ("ServiceUnavailableException", 503, True),
        ("SomethingNewException", 502, True),
    ],
)
def test_bedrock_error_codes_map_to_status_and_retry(code: str, status: int, allow_retry: bool) -> None:
    # GIVEN a Bedrock ClientError WHEN it is mapped
    # THEN status and retry follow docs/bedrock-facts.md, Runtime errors and how the gateway maps them
    mapped = from_bedrock(client_error(code))
    assert (mapped.status, mapped.allow_retry, mapped.code) == (status, allow_retry, code)


def test_throttling_carries_retry_after_and_the_openai_rate_limit_type() -> None:
    # GIVEN a ThrottlingException WHEN it is mapped THEN the client is told to wait a second and retry
    mapped = from_bedrock(client_error("ThrottlingException", status=429))
    assert mapped.headers() == {"Retry-After": "1", "x-should-retry": "true"}
    assert mapped.openai_body()["error"]["type"] == "rate_limit_error"


def test_a_service_quota_error_names_the_quota_and_forbids_a_quick_retry() -> None:
    # GIVEN Bedrock's ServiceQuotaExceededException (HTTP 400), whose message names the quota
    quota = "Your request exceeds the service quota 'Concurrent invocations for Nova Reel' for your account."
    # WHEN it is mapped
    mapped = from_bedrock(client_error("ServiceQuotaExceededException", quota))
    # THEN no retry is invited (no Retry-After, x-should-retry false, Poe allow_retry false) and the quota is named
    assert mapped.headers() == {"x-should-retry": "false"} and not mapped.allow_retry
    assert "'Concurrent invocations for Nova Reel'" in mapped.message and "raise the quota" in mapped.message
    assert mapped.openai_body()["error"]["type"] == "insufficient_quota"


def test_access_denied_keeps_the_role_and_account_out_of_the_users_message() -> None:
    # GIVEN Bedrock's AccessDeniedException, whose message names the gateway's role and account
    detail = "User: arn:aws:sts::111122223333:assumed-role/GatewayRole/s is not authorized to perform: bedrock:X"
    # WHEN it is mapped
    mapped = from_bedrock(client_error("AccessDeniedException", detail, status=403))
    # THEN the user reads what happened and that retrying will not help, without the ARN or the account id
    assert "111122223333" not in mapped.message and "arn:" not in mapped.message
    assert "refused the gateway access" in mapped.message and mapped.poe_event()["allow_retry"] is False


def test_the_mapping_covers_every_exception_of_the_operations_the_gateway_calls() -> None:
    # GIVEN the exceptions botocore's bedrock-runtime model lists for the operations the gateway calls
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    operations = ("Converse", "ConverseStream", "CountTokens", "InvokeModel", "StartAsyncInvoke", "GetAsyncInvoke")
    listed = {shape.name for name in operations for shape in model.operation_model(name).error_shapes}
    # WHEN compared with the gateway's table THEN each has its own row (none falls to the unknown-code default)
    assert listed <= set(BEDROCK_ERRORS)


def test_in_stream_errors_in_camel_case_are_recognised() -> None:
    # GIVEN the EventStreamError botocore raises for a modelStreamErrorException frame
    error = EventStreamError({"Error": {"Code": "modelStreamErrorException", "Message": "broken"}}, "ConverseStream")
    # WHEN mapped THEN it is a retryable upstream error, as a Poe event too
    mapped = from_bedrock(error)
    assert mapped.code == "ModelStreamErrorException" and mapped.allow_retry
    assert mapped.poe_event() == {"allow_retry": True, "text": "Bedrock ModelStreamErrorException: broken"}


def test_too_long_validation_errors_tell_poe_the_message_is_too_long() -> None:
    mapped = from_bedrock(client_error("ValidationException", "Input is too long for requested model."))
    assert mapped.poe_event()["error_type"] == "user_message_too_long" and not mapped.allow_retry


def test_timeouts_and_unknown_exceptions_never_become_bare_500s() -> None:
    assert from_bedrock(ReadTimeoutError(endpoint_url="http://x")).status == 504
    assert from_bedrock(RuntimeError("bug")).openai_body()["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    ("stop", "finish", "poe_error_type"),
    [
        ("end_turn", "stop", None),
        ("max_tokens", "length", None),
        ("stop_sequence", "stop", None),
        ("content_filtered", "content_filter", "user_caused_error"),
        ("guardrail_intervened", "content_filter", "user_caused_error"),
        ("model_context_window_exceeded", "length", "user_message_too_long"),
    ],
)
def test_stop_reasons(stop: str, finish: str, poe_error_type: str | None) -> None:
    outcome = stop_outcome(stop)
    assert outcome.finish_reason == finish
    assert (outcome.poe_error.error_type if outcome.poe_error else None) == poe_error_type


@pytest.mark.parametrize("stop", ["malformed_model_output", "malformed_tool_use"])
def test_malformed_output_is_a_retryable_error_on_both_routes(stop: str) -> None:
    # GIVEN a malformed answer WHEN its outcome is looked up THEN Poe and OpenAI both get a retryable error
    outcome = stop_outcome(stop)
    assert isinstance(outcome.poe_error, GatewayError) and outcome.poe_error.allow_retry
    assert outcome.openai_error is outcome.poe_error and outcome.openai_error.status == 502


# ---------------------------------------------------------------- configuration


def test_the_shipped_bots_file_is_valid_and_covers_every_modality() -> None:
    # GIVEN the bots.json shipped with the gateway WHEN it is loaded
    bots = load_bots(BOTS_FILE)
    # THEN it has at least 30 bots, text, image, video and embedding ones, and routers priced by their models
    assert len(bots) >= 30
    assert {bot.modality for bot in bots.values()} == {"text", "image", "video", "embedding"}
    assert sum(bot.is_router for bot in bots.values()) == 3
    assert bots["nova-reel"].prices.per_video_second > 0


def test_defaults_merge_under_each_bot_key_by_key() -> None:
    document = {
        "defaults": {"region": "eu-west-1", "inference": {"max_tokens": 100, "temperature": 0.5}},
        "bots": {"a": {"model_id": "amazon.nova-micro-v1:0", "inference": {"max_tokens": 50}}},
    }
    bot = parse_bots(document)["a"]
    assert (bot.region, bot.inference.max_tokens, bot.inference.temperature) == ("eu-west-1", 50, 0.5)


def test_config_errors_name_the_bot_the_field_the_value_and_the_fix() -> None:
    # GIVEN a bot with a temperature out of range and one with an unknown field
    document = {
        "bots": {
            "hot": {"model_id": "amazon.nova-micro-v1:0", "inference": {"temperature": 3}},
            "typo": {"model_id": "amazon.nova-micro-v1:0", "moddality": "text"},
            "bad-id": {"model_id": "not a model"},
        }
    }
    # WHEN it is validated THEN one error lists every problem with bot, field, value and where to fix it
    with pytest.raises(BotConfigError) as error:
        parse_bots(document)
    text = str(error.value)
    assert "bot 'hot': field 'inference.temperature' = 3" in text and "less than or equal to 1" in text
    assert "bot 'typo': field 'moddality'" in text
    assert "bot 'bad-id': field 'model_id'" in text and "foundation-model id" in text
    assert "bots.json" in text


def test_a_frozen_config_cannot_change() -> None:
    bot = parse_bots({"bots": {"a": {"model_id": "amazon.nova-micro-v1:0"}}})["a"]
    with pytest.raises(ValueError, match="frozen"):
        bot.region = "eu-west-1"  # type: ignore[misc]


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "bots.json"
    broken.write_text("{not json")
    with pytest.raises(BotConfigError, match="cannot read bot configuration"):
        load_bots(broken)


def test_access_keys_come_from_the_environment() -> None:
    env = {"GATEWAY_ACCESS_KEY": "k0", "GATEWAY_ACCESS_KEYS": json.dumps({"team": "k1"})}
    assert access_keys_from_env(env) == {"default": "k0", "team": "k1"}
    with pytest.raises(BotConfigError, match="GATEWAY_ACCESS_KEYS"):
        access_keys_from_env({"GATEWAY_ACCESS_KEYS": "[1]"})


def test_settings_from_env_read_the_bots_file_and_limits() -> None:
    settings = GatewaySettings.from_env({"GATEWAY_ACCESS_KEY": "k", "GATEWAY_MAX_BODY_BYTES": "2048"})
    assert settings.max_body_bytes == 2048 and settings.access_keys == {"default": "k"} and settings.bots


@pytest.mark.parametrize("value", ["fast", "-1", "1001", "2.5"])
def test_a_stream_interval_that_is_not_whole_milliseconds_stops_the_start(value: str) -> None:
    # GIVEN GATEWAY_STREAM_INTERVAL_MS that is not 0-1000 whole milliseconds
    # WHEN the settings are read THEN the start fails naming the variable, the value and the cdk.json key
    with pytest.raises(BotConfigError, match=f"GATEWAY_STREAM_INTERVAL_MS must be whole milliseconds.*'{value}'"):
        GatewaySettings.from_env({"GATEWAY_STREAM_INTERVAL_MS": value})


def test_read_pacing_is_off_unless_the_environment_sets_it() -> None:
    # GIVEN no variable (the Lambda function), then the Fargate task's
    # WHEN the settings are read THEN pacing is off, then at the task's interval
    assert GatewaySettings.from_env({}).stream_interval_ms == 0
    assert GatewaySettings.from_env({"GATEWAY_STREAM_INTERVAL_MS": "50"}).stream_interval_ms == 50


def test_account_less_router_arns_get_the_deploying_account() -> None:
    # GIVEN the shipped bots.json, whose default prompt routers leave the account empty
    # WHEN the gateway starts in account 111122223333 (GATEWAY_ACCOUNT_ID, set by the stack)
    settings = GatewaySettings.from_env({"GATEWAY_ACCOUNT_ID": "111122223333"})
    # THEN each router ARN names that account's router; foundation-model ids are untouched
    router = settings.bots["router-claude"].model_id
    assert router == "arn:aws:bedrock:us-east-1:111122223333:default-prompt-router/anthropic.claude:1"
    assert settings.bots["claude-3-haiku"].model_id == "anthropic.claude-3-haiku-20240307-v1:0"
    # AND without the variable (local runs) the emulator's account is used
    local = GatewaySettings.from_env({})
    assert ":123456789012:default-prompt-router/" in local.bots["router-claude"].model_id


def test_a_custom_routers_target_models_are_accepted_and_filled_in() -> None:
    # GIVEN a bot on an account-less custom prompt router with its target models (the stack needs them for IAM)
    document = {
        "bots": {
            "mine": {
                "model_id": "arn:aws:bedrock:us-east-1::prompt-router/abcd1234",
                "target_model_ids": ["anthropic.claude-3-haiku-20240307-v1:0"],
            }
        }
    }
    # WHEN parsed for account 111122223333 THEN the router ARN gets the account and the targets are kept
    bot = parse_bots(document, "111122223333")["mine"]
    assert bot.model_id == "arn:aws:bedrock:us-east-1:111122223333:prompt-router/abcd1234"
    assert bot.target_model_ids == ("anthropic.claude-3-haiku-20240307-v1:0",)


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:25888", "udp://127.0.0.1", "udp://:25888", "127.0.0.1:25888", "udp://host:port", "udp://h:1/x"],
)
def test_an_emf_agent_endpoint_that_is_not_udp_host_port_is_refused(endpoint: str) -> None:
    # GIVEN the Fargate task's agent endpoint set to something other than udp://host:port
    env = {"GATEWAY_EMF_AGENT_ENDPOINT": endpoint, "GATEWAY_EMF_LOG_GROUP": "metrics"}
    # WHEN the settings are read THEN the error names the variable, the value and the form to use
    with pytest.raises(ValueError, match="GATEWAY_EMF_AGENT_ENDPOINT must be udp://host:port") as error:
        GatewaySettings.from_env(env)
    assert repr(endpoint) in str(error.value)


def test_an_emf_agent_without_a_log_group_is_refused() -> None:
    # GIVEN an agent endpoint but no log group WHEN the settings are read THEN the error names the missing variable
    with pytest.raises(ValueError, match="GATEWAY_EMF_LOG_GROUP must name the log group"):
        GatewaySettings.from_env({"GATEWAY_EMF_AGENT_ENDPOINT": "udp://127.0.0.1:25888"})


def test_the_emf_agent_is_read_from_the_environment_and_is_off_without_it() -> None:
    # GIVEN the variables the Fargate task sets, and none
    env = {"GATEWAY_EMF_AGENT_ENDPOINT": "udp://127.0.0.1:25888", "GATEWAY_EMF_LOG_GROUP": "g"}
    # WHEN the settings are read THEN the agent is the one given, and without them records are printed (no agent)
    assert GatewaySettings.from_env(env).emf_agent == EmfAgent("127.0.0.1", 25888, "g")
    assert GatewaySettings.from_env({}).emf_agent is None
