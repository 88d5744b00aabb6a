"""The ``anthropic-beta`` rule of the Messages API routes (``lambdas.gateway.anthropic_betas``) and its agreement
with the emulator's copy of Bedrock's beta list."""

from __future__ import annotations

import asyncio

import pytest

from lambdas.gateway import anthropic_betas
from lambdas.gateway.anthropic import MessagesRequest, converse_request
from lambdas.gateway.attachments import AttachmentReader, Fetcher
from lambdas.gateway.config import load_bots
from lambdas.gateway.errors import GatewayError
from lambdas.shared.model_families import claude_betas_of
from local.emulator import claude_betas as emulator_betas

# what Claude Code sends by default (the beta header of its requests as reported in public gateway issue threads)
CLAUDE_CODE = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,effort-2025-11-24,fine-grained-tool-streaming-2025-05-14"
)
SONNET_45 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"


def test_claude_codes_default_betas_are_all_accepted() -> None:
    # GIVEN the header Claude Code sends WHEN it is parsed THEN every beta is accepted, in order, once each
    assert anthropic_betas.parse(CLAUDE_CODE + ", claude-code-20250219") == tuple(CLAUDE_CODE.split(","))


@pytest.mark.parametrize("beta", ["files-api-2025-04-14", "mcp-client-2025-04-04", "some-future-beta-2030-01-01"])
def test_a_beta_for_a_feature_bedrock_lacks_is_a_400_naming_it(beta: str) -> None:
    # GIVEN a beta neither served nor Bedrock's WHEN parsed THEN a 400 naming it
    with pytest.raises(GatewayError) as raised:
        anthropic_betas.parse(f"claude-code-20250219,{beta}")
    assert raised.value.status == 400 and beta in raised.value.message and "claude-code" not in raised.value.message


def test_betas_are_forwarded_only_to_models_that_take_them() -> None:
    # GIVEN Claude Code's betas
    given = anthropic_betas.parse(CLAUDE_CODE)
    # WHEN they are sorted for Claude Sonnet 4.5 and for Claude 3 Haiku
    sonnet = anthropic_betas.for_model(given, SONNET_45, [], "claude-sonnet-4.5")
    haiku = anthropic_betas.for_model(given, HAIKU_3, [], "claude-3-haiku")
    # THEN Sonnet 4.5 gets the Bedrock betas it takes; the others are accepted and named as not forwarded
    assert sonnet.forwarded == ("interleaved-thinking-2025-05-14", "context-management-2025-06-27")
    assert sonnet.not_forwarded == ("effort-2025-11-24",)
    assert haiku.forwarded == ()
    assert haiku.not_forwarded == (
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
        "effort-2025-11-24",
    )


@pytest.mark.parametrize(
    ("betas", "model_id", "field", "words"),
    [
        ((), SONNET_45, "context_management", "needs the anthropic-beta header 'context-management-2025-06-27'"),
        (("context-management-2025-06-27",), HAIKU_3, "context_management", "does not take the beta"),
        (("effort-2025-11-24",), SONNET_45, "output_config", "does not take the beta 'effort-2025-11-24'"),
    ],
)
def test_a_betas_field_without_the_beta_or_on_a_model_without_it_is_a_400(
    betas: tuple[str, ...], model_id: str, field: str, words: str
) -> None:
    # GIVEN a request field a beta opens WHEN its beta is missing or the model lacks it THEN a 400 naming the field
    with pytest.raises(GatewayError) as raised:
        anthropic_betas.for_model(betas, model_id, [field, "model"], "bot")
    assert raised.value.message.startswith(f"{field}:") and words in raised.value.message


def test_forwarded_betas_and_their_fields_go_into_additional_model_request_fields() -> None:
    # GIVEN the Sonnet 4.5 bot and a request with context editing and Claude Code's betas
    bot = load_bots()["claude-sonnet-4.5"]
    body = MessagesRequest.model_validate(
        {
            "model": "claude-sonnet-4.5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        }
    )
    betas = anthropic_betas.for_model(anthropic_betas.parse(CLAUDE_CODE), bot.model_id, ["context_management"], "x")
    # WHEN it is translated
    reader = AttachmentReader(bot, Fetcher(max_bytes=1_000_000, timeout=1))
    call = asyncio.run(converse_request(bot, body, reader, betas.forwarded))
    # THEN the betas Bedrock takes for the model and the field go to Bedrock beside the bot's own fields
    fields = call.request["additionalModelRequestFields"]
    assert fields["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
    assert fields["context_management"] == body.context_management


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        SONNET_45,
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "us.anthropic.claude-opus-4-1-20250805-v1:0",
        "global.anthropic.claude-opus-4-5-20251101-v1:0",
        "us.amazon.nova-pro-v1:0",
    ],
)
def test_the_gateway_forwards_no_beta_the_emulator_refuses(model_id: str) -> None:
    # GIVEN the gateway's beta table and the emulator's copy of Bedrock's list
    # WHEN a model's betas are looked up in both THEN the gateway's are among Bedrock's (the gateway leaves out the
    # computer-use betas: it runs no Anthropic-defined tools)
    assert claude_betas_of(model_id) <= emulator_betas.betas_of(model_id)


def test_no_beta_is_both_served_and_forwarded_and_every_field_beta_is_forwarded() -> None:
    # GIVEN the beta tables THEN a beta has one rule, and a beta that opens a field is one Bedrock takes
    assert not anthropic_betas.FORWARDED & anthropic_betas.SERVED
    assert set(anthropic_betas.FIELD_BETAS.values()) <= anthropic_betas.FORWARDED


def test_a_bots_own_betas_are_kept_beside_the_requests() -> None:
    # GIVEN a bot whose own request fields name a beta, and a request forwarding another
    bot = load_bots()["claude-sonnet-4.5"]
    bot = bot.model_copy(update={"additional_request_fields": {"anthropic_beta": ["context-1m-2025-08-07"]}})
    body = MessagesRequest.model_validate(
        {"model": "x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    )
    reader = AttachmentReader(bot, Fetcher(max_bytes=1_000_000, timeout=1))
    # WHEN it is translated
    call = asyncio.run(converse_request(bot, body, reader, ("interleaved-thinking-2025-05-14",)))
    # THEN both go to Bedrock, the bot's first, once each
    assert call.request["additionalModelRequestFields"]["anthropic_beta"] == [
        "context-1m-2025-08-07",
        "interleaved-thinking-2025-05-14",
    ]
