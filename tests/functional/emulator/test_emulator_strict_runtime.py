"""The emulator's runtime held to the service's rules, through real boto3 clients over HTTP: answers with text and
several tool calls, every in-stream exception, every stop reason, prompt caching only above each model's minimum,
guardrails on the model's output, and image / document blocks only for models that read them."""

from __future__ import annotations

import base64
from typing import Any

import botocore.session
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EventStreamError

from local.emulator import EmulatorState
from local.emulator.conversation import STOP_REASONS, TRIGGERED_STOP_REASONS
from local.emulator.faults import STREAM_ERRORS, FaultSpecError, parse_faults
from local.emulator.guardrails import BLOCKED_OUTPUT_MESSAGE
from tests.functional.emulator.conftest import error_code, user

SONNET_37 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
HAIKU_35 = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
HAIKU_45 = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA_MICRO = "us.amazon.nova-micro-v1:0"
NOVA_LITE = "us.amazon.nova-lite-v1:0"
TOOLS = {
    "tools": [
        {"toolSpec": {"name": name, "inputSchema": {"json": {"type": "object", "required": ["city"]}}}}
        for name in ("get_weather", "get_time", "get_news")
    ]
}
GUARDRAIL = {"guardrailIdentifier": "abc123", "guardrailVersion": "1", "trace": "enabled"}
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


def stream(runtime: BaseClient, **request: Any) -> list[dict[str, Any]]:
    return list(runtime.converse_stream(**request)["stream"])


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)


def stop_reason(events: list[dict[str, Any]]) -> str:
    return str(next(e["messageStop"]["stopReason"] for e in events if "messageStop" in e))


def words(count: int) -> str:
    return " ".join(f"w{number}" for number in range(count))


# ---------------------------------------------------------------- text and several tool calls in one answer


def test_naming_two_tools_streams_a_text_block_then_one_block_per_call(runtime: BaseClient) -> None:
    # GIVEN three tools WHEN the user names two of them
    request = {"modelId": SONNET_37, "messages": [user("Use get_time and get_weather for Paris")], "toolConfig": TOOLS}
    events = stream(runtime, **request)
    # THEN block 0 is text, blocks 1 and 2 are the calls in the order named, each opened, filled and closed
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert [(s["contentBlockIndex"], s["start"]["toolUse"]["name"]) for s in starts] == [
        (1, "get_time"),
        (2, "get_weather"),
    ]
    stops = [e["contentBlockStop"]["contentBlockIndex"] for e in events if "contentBlockStop" in e]
    assert stops == [0, 1, 2]
    text_blocks = {
        e["contentBlockDelta"]["contentBlockIndex"]
        for e in events
        if "text" in e.get("contentBlockDelta", {}).get("delta", {})
    }
    assert text_blocks == {0} and text_of(events) == "Calling get_time, get_weather."
    tool_pieces = [
        e["contentBlockDelta"] for e in events if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    assert {piece["contentBlockIndex"] for piece in tool_pieces} == {1, 2}
    assert stop_reason(events) == "tool_use"
    # AND Converse answers the same content, with distinct tool use ids
    content = runtime.converse(**request)["output"]["message"]["content"]
    assert content[0] == {"text": "Calling get_time, get_weather."}
    ids = [block["toolUse"]["toolUseId"] for block in content[1:]]
    assert len(set(ids)) == 2 and [block["toolUse"]["name"] for block in content[1:]] == ["get_time", "get_weather"]


# ---------------------------------------------------------------- in-stream exceptions


def test_the_stream_errors_are_the_exceptions_of_the_converse_stream_union() -> None:
    # GIVEN botocore's ConverseStreamOutput union WHEN its exception members are listed
    shape = botocore.session.get_session().get_service_model("bedrock-runtime").shape_for("ConverseStreamOutput")
    exceptions = [name for name, member in shape.members.items() if member.metadata.get("exception")]
    # THEN the emulator can inject each of them, and only them
    assert sorted(exceptions) == sorted(STREAM_ERRORS)


@pytest.mark.parametrize("name", STREAM_ERRORS)
def test_each_stream_error_breaks_the_stream_after_k_text_deltas(
    runtime: BaseClient, state: EmulatorState, name: str
) -> None:
    # GIVEN the fault stream_error=<name> after 2 text deltas
    state.faults.update(parse_faults(f"stream_error={name},stream_error_after=2"))
    received: list[dict[str, Any]] = []
    # WHEN a ConverseStream is read
    with pytest.raises(EventStreamError) as error:
        for event in runtime.converse_stream(modelId=NOVA_LITE, messages=[user("one two three four")])["stream"]:
            received.append(event)
    # THEN botocore raises that exception's code mid-stream, after exactly two text deltas
    assert error.value.response["Error"]["Code"] == name and text_of(received) == "one two"
    assert "emulated fault" in error.value.response["Error"]["Message"]
    assert state.faults_injected() == {"stream_error_after": 1}


def test_stream_error_alone_breaks_the_stream_before_any_text(runtime: BaseClient, state: EmulatorState) -> None:
    # GIVEN only stream_error WHEN a stream is read
    state.faults["stream_error"] = "throttlingException"
    events: list[dict[str, Any]] = []
    with pytest.raises(EventStreamError) as error:
        for event in runtime.converse_stream(modelId=NOVA_LITE, messages=[user("hello there")])["stream"]:
            events.append(event)
    # THEN no text arrived before the exception, counted under stream_error
    assert error.value.response["Error"]["Code"] == "throttlingException" and text_of(events) == ""
    assert state.faults_injected() == {"stream_error": 1}


def test_an_unknown_stream_error_is_refused_with_the_known_ones() -> None:
    # GIVEN a spec naming an exception ConverseStream never sends WHEN it is parsed THEN the error lists the valid ones
    with pytest.raises(FaultSpecError, match="modelStreamErrorException"):
        parse_faults("stream_error=accessDeniedException")


# ---------------------------------------------------------------- stop reasons


def test_the_trigger_covers_every_stop_reason_no_request_field_produces() -> None:
    # GIVEN botocore's StopReason enum WHEN the ones a request produces are removed
    produced = {"end_turn", "tool_use", "max_tokens", "stop_sequence", "guardrail_intervened"}
    # THEN the prompt trigger produces every other one
    assert set(STOP_REASONS) - produced == set(TRIGGERED_STOP_REASONS)


@pytest.mark.parametrize("reason", TRIGGERED_STOP_REASONS)
def test_a_triggered_stop_reason_ends_the_answer_before_the_trigger(runtime: BaseClient, reason: str) -> None:
    # GIVEN a prompt with the stop-reason trigger
    request = {"modelId": NOVA_LITE, "messages": [user(f"Tell me a story EMULATOR_STOP_REASON={reason}")]}
    # WHEN it is answered, streamed and not
    answer = runtime.converse(**request)
    events = stream(runtime, **request)
    # THEN both stop with that reason, their text the words before the trigger
    assert answer["stopReason"] == reason and stop_reason(events) == reason
    assert answer["output"]["message"]["content"] == [{"text": "Tell me a story"}]
    assert text_of(events) == "Tell me a story"


def test_a_trigger_for_a_request_made_stop_reason_is_refused(runtime: BaseClient) -> None:
    # GIVEN the trigger naming max_tokens WHEN Converse gets it THEN the error says how to produce it
    with pytest.raises(ClientError) as error:
        runtime.converse(modelId=NOVA_LITE, messages=[user("hi EMULATOR_STOP_REASON=max_tokens")])
    assert error_code(error) == "ValidationException" and "maxTokens" in str(error.value)


# ---------------------------------------------------------------- prompt caching minimums


def cached(model_id: str, prefix: str, question: str = "Where?", *, points: int = 1) -> dict[str, Any]:
    system = [{"text": prefix}, *([{"cachePoint": {"type": "default"}}] * points)]
    return {"modelId": model_id, "system": system, "messages": [user(question)]}


def cache_usage(runtime: BaseClient, request: dict[str, Any]) -> tuple[int, int]:
    usage = runtime.converse(**request)["usage"]
    return usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]


@pytest.mark.parametrize(
    ("model_id", "minimum"),
    [(SONNET_37, 1024), (HAIKU_35, 2048), (NOVA_LITE, 1000)],
    ids=["sonnet-3.7", "haiku-3.5", "nova"],
)
def test_no_cache_write_or_read_below_the_model_minimum(runtime: BaseClient, model_id: str, minimum: int) -> None:
    # GIVEN a prefix one token short of the model's minimum, and one exactly at it
    short, enough = words(minimum - 1), words(minimum)
    # WHEN each is sent twice
    short_usage = [cache_usage(runtime, cached(model_id, short)) for _ in range(2)]
    enough_usage = [cache_usage(runtime, cached(model_id, enough)) for _ in range(2)]
    # THEN the short prefix is never cached (usage reports 0 written, 0 read), the other written then read
    assert short_usage == [(0, 0), (0, 0)]
    assert enough_usage == [(0, minimum), (minimum, 0)]


def test_a_second_checkpoint_needs_the_minimum_again(runtime: BaseClient) -> None:
    # GIVEN two checkpoints 1,024 and 1,524 tokens in (the second only 500 after the first)
    system = [{"text": words(1024)}, {"cachePoint": {"type": "default"}}, {"text": words(500)}]
    system.append({"cachePoint": {"type": "default"}})
    # WHEN Claude 3.7 Sonnet answers
    usage = runtime.converse(modelId=SONNET_37, system=system, messages=[user("Where?")])["usage"]
    # THEN only the first prefix is written
    assert usage["cacheWriteInputTokens"] == 1024


def test_more_than_four_cache_points_is_a_validation_error(runtime: BaseClient) -> None:
    # GIVEN five cache points WHEN Converse gets them THEN the service's limit of four is enforced
    with pytest.raises(ClientError) as error:
        runtime.converse(**cached(SONNET_37, words(10), points=5))
    assert error_code(error) == "ValidationException" and "at most 4 cache points" in str(error.value)


def test_nova_refuses_a_cache_point_in_its_tools(runtime: BaseClient) -> None:
    # GIVEN a cachePoint after Nova's tools WHEN Converse gets it THEN it is refused (Claude takes it)
    tools = {"tools": [*TOOLS["tools"], {"cachePoint": {"type": "default"}}]}
    with pytest.raises(ClientError) as error:
        runtime.converse(modelId=NOVA_LITE, messages=[user("hi")], toolConfig=tools)
    assert error_code(error) == "ValidationException" and "toolConfig.tools" in str(error.value)
    assert runtime.converse(modelId=SONNET_37, messages=[user("hi")], toolConfig=tools)["stopReason"] == "tool_use"


def test_a_one_hour_ttl_only_on_the_models_that_have_it(runtime: BaseClient) -> None:
    # GIVEN a cache point with the 1h TTL
    system = [{"text": words(4096)}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    # WHEN Claude 3.7 Sonnet gets it THEN it is refused; Claude Haiku 4.5 writes it with that TTL
    with pytest.raises(ClientError) as error:
        runtime.converse(modelId=SONNET_37, system=system, messages=[user("Where?")])
    assert error_code(error) == "ValidationException" and "1h TTL" in str(error.value)
    usage = runtime.converse(modelId=HAIKU_45, system=system, messages=[user("Where?")])["usage"]
    assert usage["cacheDetails"] == [{"ttl": "1h", "inputTokens": 4096}]


# ---------------------------------------------------------------- guardrails on the model's output


def test_converse_replaces_a_blocked_answer_with_the_blocked_output_message(runtime: BaseClient) -> None:
    # GIVEN a guardrail WHEN the answer would contain the output-only word (the prompt itself passes)
    answer = runtime.converse(modelId=NOVA_LITE, messages=[user("say BLOCKOUTPUT now")], guardrailConfig=GUARDRAIL)
    # THEN the answer is the blocked-output message, the stop reason says why, and the trace assesses the output
    assert answer["output"]["message"]["content"] == [{"text": BLOCKED_OUTPUT_MESSAGE}]
    assert answer["stopReason"] == "guardrail_intervened"
    trace = answer["trace"]["guardrail"]
    found = trace["outputAssessments"]["abc123"][0]["wordPolicy"]["customWords"]
    assert found == [{"match": "BLOCKOUTPUT", "action": "BLOCKED", "detected": True}]
    assert "wordPolicy" not in trace["inputAssessment"]["abc123"]


@pytest.mark.parametrize(
    ("mode", "sent"), [("sync", "one two"), ("async", "one two BLOCKOUTPUT three")], ids=["sync", "async"]
)
def test_a_stream_sends_what_its_mode_lets_past_then_the_message(runtime: BaseClient, mode: str, sent: str) -> None:
    # GIVEN a guardrail in sync or async stream mode
    config = {**GUARDRAIL, "streamProcessingMode": mode}
    # WHEN the answer would contain the output-only word mid-way
    events = stream(
        runtime, modelId=NOVA_LITE, messages=[user("one two BLOCKOUTPUT three four")], guardrailConfig=config
    )
    # THEN sync streams only the words before it, async the word and one more; then the blocked-output message
    assert text_of(events) == f"{sent} {BLOCKED_OUTPUT_MESSAGE}"
    assert stop_reason(events) == "guardrail_intervened"
    assert "outputAssessments" in events[-1]["metadata"]["trace"]["guardrail"]


def test_apply_guardrail_checks_output_only_words_on_outputs_only(runtime: BaseClient) -> None:
    # GIVEN a text with the output-only word
    content = [{"text": {"text": "the answer is BLOCKOUTPUT"}}]
    # WHEN ApplyGuardrail checks it as an input, then as a model output
    as_input = runtime.apply_guardrail(
        guardrailIdentifier="abc123", guardrailVersion="1", source="INPUT", content=content
    )
    as_output = runtime.apply_guardrail(
        guardrailIdentifier="abc123", guardrailVersion="1", source="OUTPUT", content=content
    )
    # THEN only the output is blocked, with the blocked-output message
    assert as_input["action"] == "NONE"
    assert as_output["action"] == "GUARDRAIL_INTERVENED" and as_output["outputs"] == [{"text": BLOCKED_OUTPUT_MESSAGE}]


# ---------------------------------------------------------------- images and documents per model


def image_message() -> dict[str, Any]:
    return {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": PNG}}}, {"text": "What?"}]}


def document_message() -> dict[str, Any]:
    document = {"format": "txt", "name": "notes", "source": {"bytes": b"some notes"}}
    return {"role": "user", "content": [{"document": document}, {"text": "Summarise"}]}


@pytest.mark.parametrize(
    ("model_id", "message", "kind"),
    [
        (NOVA_MICRO, image_message, "image"),
        (HAIKU_35, image_message, "image"),
        (NOVA_MICRO, document_message, "document"),
    ],
    ids=["nova-micro-image", "haiku-3.5-image", "nova-micro-document"],
)
def test_media_a_model_cannot_read_is_a_validation_error(
    runtime: BaseClient, model_id: str, message: Any, kind: str
) -> None:
    # GIVEN a model without that input (Converse supported-features table) WHEN it gets the block
    with pytest.raises(ClientError) as error:
        runtime.converse(modelId=model_id, messages=[message()])
    # THEN the error names the block kind and where it is
    assert error_code(error) == "ValidationException"
    assert f"the {kind} content block at messages.0.content.0" in str(error.value)


def test_an_image_inside_a_tool_result_is_checked_too(runtime: BaseClient) -> None:
    # GIVEN a tool loop whose result holds an image, on Nova Micro (no vision)
    call = {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}
    result = {"toolResult": {"toolUseId": "t1", "content": [{"image": {"format": "png", "source": {"bytes": PNG}}}]}}
    messages = [user("weather?"), {"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
    # WHEN Converse gets it THEN it is refused
    with pytest.raises(ClientError) as error:
        runtime.converse(modelId=NOVA_MICRO, messages=messages, toolConfig=TOOLS)
    assert "the image content block at messages.2.content.0" in str(error.value)


def test_models_with_vision_and_documents_read_both(runtime: BaseClient) -> None:
    # GIVEN Nova Lite (vision and document chat) WHEN it gets an image and a document THEN it answers
    assert runtime.converse(modelId=NOVA_LITE, messages=[image_message()])["stopReason"] == "end_turn"
    assert runtime.converse(modelId=NOVA_LITE, messages=[document_message()])["stopReason"] == "end_turn"
