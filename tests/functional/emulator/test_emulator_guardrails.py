"""The emulator's Bedrock Guardrails, through a real boto3 client over HTTP: ``guardrailConfig`` on Converse and
ConverseStream (checked like the service, deterministic intervention on ``BLOCKME``) and ``ApplyGuardrail``."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local.emulator.guardrails import BLOCKED_INPUT_MESSAGE
from tests.functional.emulator.conftest import user

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123"
GUARDRAIL = {"guardrailIdentifier": ARN, "guardrailVersion": "1", "trace": "enabled"}


def ask(text: str) -> list[dict[str, Any]]:
    return [user(text)]


def test_a_blocked_prompt_is_answered_with_the_blocked_message_and_a_trace(runtime: BaseClient) -> None:
    # GIVEN a guardrail WHEN Converse gets a prompt with the blocked word
    answer = runtime.converse(modelId=MODEL, messages=ask("tell me about blockme"), guardrailConfig=GUARDRAIL)
    # THEN the model's answer is replaced by the blocked message, and the stop reason says why
    assert answer["output"]["message"]["content"] == [{"text": BLOCKED_INPUT_MESSAGE}]
    assert answer["stopReason"] == "guardrail_intervened"
    # AND the trace names the guardrail (by id) and the word that matched
    trace = answer["trace"]["guardrail"]
    words = trace["inputAssessment"]["abc123"]["wordPolicy"]["customWords"]
    assert words == [{"match": "BLOCKME", "action": "BLOCKED", "detected": True}]
    assert trace["actionReason"] == "Guardrail blocked."


def test_a_stream_ends_with_guardrail_intervened_and_the_trace_in_metadata(runtime: BaseClient) -> None:
    # GIVEN a guardrail in sync stream mode WHEN ConverseStream gets the blocked word
    config = {**GUARDRAIL, "streamProcessingMode": "sync"}
    events = list(runtime.converse_stream(modelId=MODEL, messages=ask("BLOCKME"), guardrailConfig=config)["stream"])
    # THEN the text is the blocked message, the stop reason guardrail_intervened, the trace in the metadata event
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == BLOCKED_INPUT_MESSAGE
    assert [e["messageStop"]["stopReason"] for e in events if "messageStop" in e] == ["guardrail_intervened"]
    assert "guardrail" in events[-1]["metadata"]["trace"]


def test_a_harmless_prompt_passes_and_trace_off_sends_none(runtime: BaseClient) -> None:
    config = {**GUARDRAIL, "trace": "disabled"}
    answer = runtime.converse(modelId=MODEL, messages=ask("hello"), guardrailConfig=config)
    assert answer["stopReason"] == "end_turn" and answer["output"]["message"]["content"] == [{"text": "hello"}]
    assert "guardrail" not in (answer.get("trace") or {})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"guardrailIdentifier": "Not_An_Id", "guardrailVersion": "1"}, "guardrailConfig.guardrailIdentifier"),
        ({"guardrailIdentifier": "abc123", "guardrailVersion": "latest"}, "guardrailConfig.guardrailVersion"),
        ({"guardrailIdentifier": "", "guardrailVersion": "1"}, "must not be empty"),
    ],
)
def test_malformed_guardrail_configs_are_validation_errors(
    runtime: BaseClient, config: dict[str, str], message: str
) -> None:
    with pytest.raises(ClientError) as error:
        runtime.converse(modelId=MODEL, messages=ask("hello"), guardrailConfig=config)
    assert error.value.response["Error"]["Code"] == "ValidationException" and message in str(error.value)


def test_apply_guardrail_intervenes_on_the_blocked_word_only(runtime: BaseClient) -> None:
    # GIVEN ApplyGuardrail on an input WHEN it holds the blocked word THEN the action is GUARDRAIL_INTERVENED
    content = [{"text": {"text": "a poster of BLOCKME"}}]
    blocked = runtime.apply_guardrail(
        guardrailIdentifier=ARN, guardrailVersion="DRAFT", source="INPUT", content=content
    )
    assert blocked["action"] == "GUARDRAIL_INTERVENED"
    assert blocked["outputs"] == [{"text": BLOCKED_INPUT_MESSAGE}]
    assert blocked["assessments"][0]["wordPolicy"]["customWords"][0]["match"] == "BLOCKME"
    assert blocked["usage"]["wordPolicyUnits"] == 1
    # AND a harmless input passes untouched
    content = [{"text": {"text": "a poster of a lighthouse"}}]
    passed = runtime.apply_guardrail(
        guardrailIdentifier="abc123", guardrailVersion="2", source="INPUT", content=content
    )
    assert (passed["action"], passed["outputs"]) == ("NONE", [])
