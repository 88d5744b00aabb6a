"""Guardrails in the bot configuration (validated at start) and the Converse ``guardrailConfig`` they become."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.gateway.config import BotConfigError, parse_bots
from lambdas.gateway.guardrails import converse_guardrail, with_guardrail

GUARDRAIL_ARN = "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123def456"


def bots(defaults: dict[str, Any], **entries: dict[str, Any]) -> dict[str, Any]:
    return {"defaults": defaults, "bots": entries}


def test_a_guardrail_in_defaults_applies_to_every_bot_unless_one_opts_out() -> None:
    # GIVEN a guardrail in defaults, a bot overriding its version and one opting out with null
    document = bots(
        {"guardrail": {"identifier": "abc123def456", "version": 2}},
        chat={"model_id": "amazon.nova-lite-v1:0"},
        pinned={"model_id": "amazon.nova-lite-v1:0", "guardrail": {"version": "DRAFT"}},
        open={"model_id": "amazon.nova-lite-v1:0", "guardrail": None},
        canvas={"model_id": "amazon.nova-canvas-v1:0", "modality": "image", "image_format": "amazon"},
    )
    # WHEN the bots are validated
    parsed = parse_bots(document)
    # THEN each bot has the merged guardrail (a version number is read as its string), trace on, sync streaming
    chat = parsed["chat"].guardrail
    assert chat is not None
    assert (chat.identifier, chat.version, chat.trace, chat.stream_processing_mode) == (
        "abc123def456",
        "2",
        True,
        "sync",
    )
    assert parsed["pinned"].guardrail is not None and parsed["pinned"].guardrail.version == "DRAFT"
    assert parsed["open"].guardrail is None
    assert parsed["canvas"].guardrail == chat


@pytest.mark.parametrize(
    ("guardrail", "expected"),
    [
        ({"identifier": "Bad_Id"}, "guardrail id (lower-case letters and digits"),
        ({"identifier": "abc123", "version": "v1"}, 'use "DRAFT" or a published version number'),
        ({"identifier": "abc123", "version": 0}, 'use "DRAFT" or a published version number'),
        ({"identifier": "abc123", "stream_processing_mode": "later"}, "'sync' or 'async'"),
        ({"version": "1"}, "guardrail.identifier"),
        ({"identifier": "arn:aws:bedrock:eu-west-1:123456789012:guardrail/abc123"}, "use a guardrail of the bot's"),
    ],
)
def test_invalid_guardrails_stop_the_start_with_the_bot_and_the_fix(guardrail: dict[str, Any], expected: str) -> None:
    # GIVEN a bot in us-east-1 with an invalid guardrail WHEN validated THEN the error names the bot and the fix
    with pytest.raises(BotConfigError) as error:
        parse_bots(bots({}, chat={"model_id": "amazon.nova-lite-v1:0", "guardrail": guardrail}))
    assert "bot 'chat'" in str(error.value) and expected in str(error.value)


def test_converse_stream_gets_the_stream_mode_and_converse_does_not() -> None:
    # GIVEN a bot with a guardrail ARN, async streaming and no trace
    guardrail = {"identifier": GUARDRAIL_ARN, "version": "3", "trace": False, "stream_processing_mode": "async"}
    bot = parse_bots(bots({}, chat={"model_id": "amazon.nova-lite-v1:0", "guardrail": guardrail}))["chat"]
    # WHEN its guardrailConfig is built for each operation
    base = {"guardrailIdentifier": GUARDRAIL_ARN, "guardrailVersion": "3", "trace": "disabled"}
    # THEN ConverseStream adds streamProcessingMode (GuardrailStreamConfiguration), Converse has none
    assert converse_guardrail(bot, streaming=True) == {**base, "streamProcessingMode": "async"}
    assert converse_guardrail(bot, streaming=False) == base
    request = {"modelId": bot.model_id, "messages": []}
    assert with_guardrail(bot, request, streaming=False) == {**request, "guardrailConfig": base}
    assert "guardrailConfig" not in request  # the request itself is left as it was


def test_a_bot_without_a_guardrail_sends_none() -> None:
    bot = parse_bots(bots({}, chat={"model_id": "amazon.nova-lite-v1:0"}))["chat"]
    assert converse_guardrail(bot, streaming=True) is None
    assert with_guardrail(bot, {"modelId": "m"}, streaming=True) == {"modelId": "m"}
