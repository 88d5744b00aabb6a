"""What the emulator's Converse enforces, as Bedrock does, on Claude thinking with tools, forced tool choice and
streaming tool use, read by boto3 (real restJson1 and eventstream wire formats)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local.emulator.conversation import REDACTED_THINKING_TRIGGER
from local.emulator.tool_use import SIGNING_KEY
from tests.functional.emulator.conftest import user

SONNET = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
TIME = {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
TOOLS = {"tools": [TIME]}


def refused(runtime: BaseClient, **request: Any) -> str:
    """The ValidationException message of a Converse call Bedrock refuses."""
    with pytest.raises(ClientError) as error:
        runtime.converse(**{"messages": [user("x")], **request})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    return str(error.value.response["Error"]["Message"])


def tool_loop(runtime: BaseClient, text: str = "x") -> tuple[dict[str, Any], dict[str, Any]]:
    """Claude with thinking calls the tool: (its assistant message, the user message with the result)."""
    answer = runtime.converse(
        modelId=SONNET, messages=[user(text)], toolConfig=TOOLS, additionalModelRequestFields=THINKING
    )
    message = answer["output"]["message"]
    assert [list(block) for block in message["content"]] == [["reasoningContent"], ["toolUse"]]
    use = message["content"][1]["toolUse"]
    result = {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "9"}]}}]}
    return message, result


def test_a_tool_loop_with_thinking_needs_the_signed_thinking_block_back(runtime: BaseClient) -> None:
    message, result = tool_loop(runtime)
    # WHEN the result goes back with the assistant message as returned (thinking block first) THEN Claude answers
    kept = runtime.converse(
        modelId=SONNET,
        messages=[user("x"), message, result],
        toolConfig=TOOLS,
        additionalModelRequestFields=THINKING,
    )
    assert kept["stopReason"] == "end_turn"
    # WHEN the thinking block is dropped (what an OpenAI-format client sends) THEN thinking on is refused
    stripped = {"role": "assistant", "content": message["content"][1:]}
    text = refused(
        runtime,
        modelId=SONNET,
        messages=[user("x"), stripped, result],
        toolConfig=TOOLS,
        additionalModelRequestFields=THINKING,
    )
    assert "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`" in text
    assert "To avoid this requirement, disable `thinking`" in text
    # AND with thinking off (the documented way out) the same history is answered
    off = runtime.converse(modelId=SONNET, messages=[user("x"), stripped, result], toolConfig=TOOLS)
    assert off["stopReason"] == "end_turn" and "reasoningContent" not in off["output"]["message"]["content"][0]


def test_reasoning_is_signed_with_the_emulators_key_in_both_operations(runtime: BaseClient) -> None:
    # GIVEN Claude with thinking WHEN it answers with Converse and with ConverseStream
    message, _ = tool_loop(runtime)
    signed = message["content"][0]["reasoningContent"]["reasoningText"]
    events = list(
        runtime.converse_stream(
            modelId=SONNET, messages=[user("x")], toolConfig=TOOLS, additionalModelRequestFields=THINKING
        )["stream"]
    )
    deltas = [e["contentBlockDelta"]["delta"].get("reasoningContent") for e in events if "contentBlockDelta" in e]
    deltas = [delta for delta in deltas if delta]
    # THEN the signature is the HMAC of the reasoning text with the emulator's fixed key, the same both ways (the
    # stream sends the text in pieces, then the signature)
    mac = hmac.new(SIGNING_KEY, signed["text"].encode(), hashlib.sha256).digest()
    assert signed["signature"] == base64.b64encode(mac).decode()
    assert "".join(d.get("text", "") for d in deltas) == signed["text"]
    assert deltas[-1] == {"signature": signed["signature"]}


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ({"text": "I should not call the tool.", "signature": "tampered"}, "Invalid `signature` in `thinking` block"),
        ({"text": "I should not call the tool."}, "messages.1.content.0.thinking.signature: Field required"),
    ],
    ids=["tampered", "unsigned"],
)
def test_a_tampered_or_unsigned_thinking_block_is_refused(
    runtime: BaseClient, block: dict[str, Any], error: str
) -> None:
    # GIVEN Claude's tool call WHEN its thinking block goes back altered (another text, no signature)
    message, result = tool_loop(runtime)
    signed = message["content"][0]["reasoningContent"]["reasoningText"]
    altered = {**signed, **block}
    if "signature" not in block:
        del altered["signature"]
    sent = {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": altered}}, message["content"][1]]}
    # THEN Bedrock refuses it with thinking on
    text = refused(
        runtime,
        modelId=SONNET,
        messages=[user("x"), sent, result],
        toolConfig=TOOLS,
        additionalModelRequestFields=THINKING,
    )
    assert text.startswith("The model returned the following errors: messages.1.content.0")
    assert error in text


def test_a_redacted_thinking_block_round_trips(runtime: BaseClient) -> None:
    # GIVEN Anthropic's test string, which makes Claude's thinking come redacted
    message, result = tool_loop(runtime, f"x {REDACTED_THINKING_TRIGGER}")
    redacted = message["content"][0]["reasoningContent"]["redactedContent"]
    # THEN boto3 reads the block's data as bytes, and the stream gives the same data in one delta
    assert isinstance(redacted, bytes) and redacted
    events = runtime.converse_stream(
        modelId=SONNET,
        messages=[user(f"x {REDACTED_THINKING_TRIGGER}")],
        toolConfig=TOOLS,
        additionalModelRequestFields=THINKING,
    )["stream"]
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert deltas[0] == {"reasoningContent": {"redactedContent": redacted}}
    # WHEN it goes back unchanged THEN the loop continues with thinking
    history = [user(f"x {REDACTED_THINKING_TRIGGER}"), message, result]
    kept = runtime.converse(modelId=SONNET, messages=history, toolConfig=TOOLS, additionalModelRequestFields=THINKING)
    assert kept["stopReason"] == "end_turn" and "reasoningContent" in kept["output"]["message"]["content"][0]
    # AND altered data is refused
    altered = {
        "role": "assistant",
        "content": [{"reasoningContent": {"redactedContent": b"x" + redacted}}, message["content"][1]],
    }
    text = refused(
        runtime,
        modelId=SONNET,
        messages=[history[0], altered, result],
        toolConfig=TOOLS,
        additionalModelRequestFields=THINKING,
    )
    assert "messages.1.content.0: Invalid `data` in `redacted_thinking` block" in text


def test_a_new_turn_after_a_tool_loop_needs_no_thinking_block(runtime: BaseClient) -> None:
    message, result = tool_loop(runtime)
    stripped = {"role": "assistant", "content": message["content"][1:]}
    history = [user("x"), stripped, result, {"role": "assistant", "content": [{"text": "9"}]}, user("and now?")]
    answer = runtime.converse(modelId=SONNET, messages=history, toolConfig=TOOLS, additionalModelRequestFields=THINKING)
    assert "reasoningContent" in answer["output"]["message"]["content"][0]


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"toolConfig": {**TOOLS, "toolChoice": {"any": {}}}}, "Thinking may not be enabled when tool_choice forces"),
        ({"toolConfig": {**TOOLS, "toolChoice": {"tool": {"name": "get_time"}}}}, "tool_choice forces tool use"),
        ({"inferenceConfig": {"temperature": 0.5}}, "`temperature` may only be set to 1 when thinking is enabled"),
    ],
    ids=["any", "tool", "temperature"],
)
def test_thinking_refuses_forced_tools_and_temperature(
    runtime: BaseClient, request_fields: dict[str, Any], message: str
) -> None:
    text = refused(runtime, modelId=SONNET, additionalModelRequestFields=THINKING, **request_fields)
    assert message in text


@pytest.mark.parametrize(
    ("model", "choice", "accepted"),
    [
        ("us.amazon.nova-lite-v1:0", {"tool": {"name": "get_time"}}, True),
        ("mistral.mistral-large-2407-v1:0", {"any": {}}, True),
        ("mistral.mistral-large-2407-v1:0", {"tool": {"name": "get_time"}}, False),
        ("mistral.mistral-small-2402-v1:0", {"any": {}}, False),
        ("cohere.command-r-v1:0", {"any": {}}, False),
    ],
)
def test_forced_tool_choice_follows_the_models_that_take_it(
    runtime: BaseClient, model: str, choice: dict[str, Any], accepted: bool
) -> None:
    request = {"modelId": model, "toolConfig": {**TOOLS, "toolChoice": choice}}
    if accepted:
        assert runtime.converse(messages=[user("x")], **request)["stopReason"] == "tool_use"
    else:
        assert f"doesn't support the toolConfig.toolChoice.{next(iter(choice))} field" in refused(runtime, **request)


@pytest.mark.parametrize(
    ("model", "streams"),
    [("us.meta.llama3-1-8b-instruct-v1:0", False), ("mistral.mistral-large-2407-v1:0", False)]
    + [("cohere.command-r-v1:0", True), ("us.amazon.nova-lite-v1:0", True)],
)
def test_converse_stream_with_tools_only_on_models_with_streaming_tool_use(
    runtime: BaseClient, model: str, streams: bool
) -> None:
    if streams:
        events = list(runtime.converse_stream(modelId=model, messages=[user("x")], toolConfig=TOOLS)["stream"])
        assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"
        return
    with pytest.raises(ClientError) as error:
        runtime.converse_stream(modelId=model, messages=[user("x")], toolConfig=TOOLS)
    assert error.value.response["Error"]["Message"] == "This model doesn't support tool use in streaming mode."
    # AND Converse takes the same request
    assert runtime.converse(modelId=model, messages=[user("x")], toolConfig=TOOLS)["stopReason"] == "tool_use"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"top_k": 501}, "top_k: Input should be an integer from 0 to 500"),
        ({"top_k": "5"}, "top_k: Input should be an integer from 0 to 500"),
        ({**THINKING, "top_k": 5}, "`top_k` may not be set when thinking is enabled"),
    ],
)
def test_claude_top_k_is_an_integer_to_500_and_not_with_thinking(
    runtime: BaseClient, fields: dict[str, Any], says: str
) -> None:
    # GIVEN Claude's top_k outside 0-500, not an integer, or beside thinking WHEN Converse is called THEN refused
    assert says in refused(runtime, modelId=SONNET, additionalModelRequestFields=fields)
    # AND a top_k in range without thinking is taken
    answer = runtime.converse(modelId=SONNET, messages=[user("x")], additionalModelRequestFields={"top_k": 500})
    assert answer["stopReason"] == "end_turn"
