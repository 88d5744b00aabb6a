"""Converse tool use: ``toolConfig`` checks in the service's words, and the emulator's deterministic tool calls.

Checks (ValidationException): tool blocks (``toolUse`` / ``toolResult``) in the messages need a ``toolConfig``;
``toolConfig.tools`` holds at least one entry, each exactly one of ``toolSpec`` / ``cachePoint`` / ``systemTool``;
a ``toolSpec`` has a name matching ``^[a-zA-Z0-9_-]{1,64}$`` (unique), a non-empty description if any, and an
``inputSchema.json`` object; ``toolChoice`` is exactly one of ``auto`` / ``any`` / ``tool`` (``tool.name`` one of
the tools; ``any`` only on Claude, Nova and Mistral Large, ``tool`` only on Claude and Nova, as the ``ToolChoice``
API reference and the Nova user guide say); every ``toolResult`` answers a ``toolUse`` of the assistant message just
before it. ConverseStream refuses a ``toolConfig`` on models without streaming tool use (Llama, Mistral).

Claude thinking with tools (``check_thinking``, Anthropic / Bedrock extended-thinking docs): with ``thinking``
enabled, a request that continues a tool loop (its last message brings tool results) needs the assistant message
that opened the turn to start with its ``reasoningContent`` block, sent back unchanged: the emulator signs its
reasoning (``sign_reasoning``: an HMAC of the text with a fixed emulator key; a redacted block's data carries its
own HMAC, ``redact_reasoning``) and refuses a reasoning block of the loop whose signature or data does not verify,
or whose signature is missing; manual thinking (``type: enabled``) refuses a forced ``toolChoice``; thinking takes no
``temperature`` but 1. Claude's ``top_k`` (``check_claude_top_k``) is an integer 0-500 and is refused with thinking
on. Each in the model's words, as Bedrock relays them.

Answer: with tools, the model calls one unless the last user message brings tool results and the choice is
``auto`` (then it answers in text, echoing the results). It calls the forced tool (``toolChoice.tool``), or every tool
the last user text names when it names two or more (a text block saying which comes first, then one ``toolUse``
block each, as models do when they call tools in parallel), or else the first one; each with an input built from
the schema (``structured_output.example_value``: required properties only, strings the last user text, numbers 1
or their minimum, arrays of ``minItems`` items, enums their first value); ``EMULATOR_INVALID_JSON`` in the last
user text makes the input break the schema on purpose (``structured_output.invalid_value``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from local.emulator.errors import validation_error
from local.emulator.families import base_model_id
from local.emulator.structured_output import answer_value

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NEEDS_TOOL_CONFIG = "The toolConfig field must be defined when using toolUse and toolResult content blocks."
# toolChoice ``any`` / ``tool``: which models take them (``profile``: an opaque ARN, every feature)
ANY_CHOICE_FAMILIES = frozenset({"anthropic", "nova", "profile"})
ANY_CHOICE_MODELS = ("mistral.mistral-large",)  # Mistral Large (2402, 2407), not Mistral Small
TOOL_CHOICE_FAMILIES = frozenset({"anthropic", "nova", "profile"})
# "Streaming tool use" No in the Converse supported-models table (tool use Yes): Llama 3.1+, Mistral Large
NO_STREAMING_TOOL_FAMILIES = frozenset({"llama", "mistral"})
NO_STREAMING_TOOLS = "This model doesn't support tool use in streaming mode."
THINKING_NEEDS_REASONING_FIRST = (
    "The model returned the following errors: messages.{index}.content.0.type: Expected `thinking` or "
    "`redacted_thinking`, but found `{found}`. When `thinking` is enabled, a final `assistant` message must start "
    "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
    "include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our "
    "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)
THINKING_SIGNATURE_MISSING = (
    "The model returned the following errors: messages.{index}.content.{block}.thinking.signature: Field required"
)
THINKING_BAD_SIGNATURE = (
    "The model returned the following errors: messages.{index}.content.{block}: Invalid `signature` in `thinking` block"
)
THINKING_BAD_REDACTED = (
    "The model returned the following errors: messages.{index}.content.{block}: Invalid `data` in `redacted_thinking` "
    "block"
)
SIGNING_KEY = b"bedrock-emulator/thinking-signature/v1"  # fixed: signatures are deterministic across runs
THINKING_FORCED_TOOL = (
    "The model returned the following errors: Thinking may not be enabled when tool_choice forces tool use."
)
THINKING_TEMPERATURE = (
    "The model returned the following errors: `temperature` may only be set to 1 when thinking is enabled. Please "
    "consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
    "#important-considerations-when-using-extended-thinking"
)


def _mac(data: bytes) -> bytes:
    return hmac.new(SIGNING_KEY, data, hashlib.sha256).digest()


def sign_reasoning(text: str) -> str:
    """The signature of a reasoning text (base64, like Claude's)."""
    return base64.b64encode(_mac(text.encode())).decode()


def redact_reasoning(text: str) -> bytes:
    """A redacted reasoning block's data: its HMAC, then the text (opaque to clients, checkable by the emulator)."""
    return _mac(text.encode()) + text.encode()


def _verified(reasoning: Mapping[str, Any]) -> str | None:
    """Why a ``reasoningContent`` block sent back does not verify (a message template), or None when it does."""
    if "redactedContent" in reasoning:
        data = reasoning["redactedContent"]
        try:  # the JSON wire carries a blob as base64
            raw = data if isinstance(data, bytes) else base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            return THINKING_BAD_REDACTED
        return None if hmac.compare_digest(raw[:32], _mac(raw[32:])) else THINKING_BAD_REDACTED
    signed = reasoning.get("reasoningText") or {}
    if not signed.get("signature"):
        return THINKING_SIGNATURE_MISSING
    expected = sign_reasoning(str(signed.get("text", "")))
    return None if hmac.compare_digest(str(signed["signature"]), expected) else THINKING_BAD_SIGNATURE


def _blocks(messages: Sequence[Mapping[str, Any]], kind: str) -> list[tuple[int, Mapping[str, Any]]]:
    return [
        (index, block[kind])
        for index, message in enumerate(messages)
        for block in message.get("content") or []
        if isinstance(block, Mapping) and kind in block
    ]


def check_streaming_tools(request: Mapping[str, Any], family: str) -> None:
    """ConverseStream with a ``toolConfig`` on a model without streaming tool use (Llama, Mistral)."""
    if request.get("toolConfig") is not None and family in NO_STREAMING_TOOL_FAMILIES:
        raise validation_error(NO_STREAMING_TOOLS)


def forced_choice_allowed(mode: str, family: str, model_id: str) -> bool:
    """Whether the model takes ``toolChoice.any`` / ``toolChoice.tool``."""
    if mode == "tool":
        return family in TOOL_CHOICE_FAMILIES
    return family in ANY_CHOICE_FAMILIES or base_model_id(model_id).startswith(ANY_CHOICE_MODELS)


def check_tool_config(request: Mapping[str, Any], family: str, model_id: str = "") -> None:
    """ValidationException for a ``toolConfig`` (or tool blocks) Bedrock would refuse; see the module docstring."""
    messages = request.get("messages") or []
    config = request.get("toolConfig")
    uses, results = _blocks(messages, "toolUse"), _blocks(messages, "toolResult")
    if config is None:
        if uses or results:
            raise validation_error(NEEDS_TOOL_CONFIG)
        return
    tools = config.get("tools") if isinstance(config, Mapping) else None
    if not isinstance(tools, list) or not tools:
        raise validation_error(
            "1 validation error detected: Value at 'toolConfig.tools' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        )
    names: list[str] = []
    for index, tool in enumerate(tools):
        kinds = [
            kind for kind in ("toolSpec", "cachePoint", "systemTool") if isinstance(tool, Mapping) and kind in tool
        ]
        if len(kinds) != 1:
            raise validation_error(
                f"toolConfig.tools.{index} must set exactly one of toolSpec, cachePoint, systemTool."
            )
        if kinds[0] != "toolSpec":
            continue
        spec = tool["toolSpec"]
        name = spec.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise validation_error(
                f"1 validation error detected: Value '{name}' at 'toolConfig.tools.{index + 1}.member.toolSpec.name' "
                "failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
            )
        if name in names:
            raise validation_error(f"The toolConfig contains duplicate tool names: {name}. Tool names must be unique.")
        names.append(name)
        if "description" in spec and not spec["description"]:
            raise validation_error(
                f"1 validation error detected: Value at 'toolConfig.tools.{index + 1}.member.toolSpec.description' "
                "failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        schema = (spec.get("inputSchema") or {}).get("json")
        if not isinstance(schema, Mapping):
            raise validation_error(
                f"The model returned the following errors: tools.{index}.input_schema: Input should be a valid "
                "dictionary"
            )
    choice = config.get("toolChoice")
    if choice is not None:
        modes = [mode for mode in ("auto", "any", "tool") if isinstance(choice, Mapping) and mode in choice]
        if len(modes) != 1:
            raise validation_error("toolConfig.toolChoice must set exactly one of auto, any, tool.")
        if modes[0] != "auto" and not forced_choice_allowed(modes[0], family, model_id):
            raise validation_error(
                f"This model doesn't support the toolConfig.toolChoice.{modes[0]} field. Remove "
                f"toolConfig.toolChoice.{modes[0]} and try again."
            )
        if modes[0] == "tool" and choice["tool"].get("name") not in names:
            raise validation_error(
                f"The model returned the following errors: tool_choice: Tool '{choice['tool'].get('name')}' "
                "not found in provided tools"
            )
    for index, result in results:
        before = messages[index - 1] if index else {}
        called = {use.get("toolUseId") for _, use in _blocks([before], "toolUse")} if before else set()
        if before.get("role") != "assistant" or result.get("toolUseId") not in called:
            raise validation_error(
                f"The model returned the following errors: messages.{index}.content: unexpected `tool_use_id` found "
                f"in `tool_result` blocks: {result.get('toolUseId')}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )


def _snake(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


CLAUDE_MAX_TOP_K = 500  # "Anthropic Claude Messages API": top_k 0-500
THINKING_TOP_K = (
    "The model returned the following errors: `top_k` may not be set when thinking is enabled. Please consult our "
    "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
    "#important-considerations-when-using-extended-thinking"
)


def check_claude_top_k(request: Mapping[str, Any], family: str) -> None:
    """Claude's ``top_k`` in ``additionalModelRequestFields``: an integer 0-500 (the Messages API's range), and not
    with thinking on (extended thinking "isn't compatible with ... top_k modifications"); ValidationException."""
    fields = request.get("additionalModelRequestFields")
    if family != "anthropic" or not isinstance(fields, Mapping) or "top_k" not in fields:
        return
    top_k = fields["top_k"]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= CLAUDE_MAX_TOP_K:
        raise validation_error(
            f"The model returned the following errors: top_k: Input should be an integer from 0 to {CLAUDE_MAX_TOP_K}"
        )
    thinking = fields.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        raise validation_error(THINKING_TOP_K)


def check_thinking(request: Mapping[str, Any], family: str) -> None:
    """ValidationException for Claude thinking combined with what it refuses; see the module docstring."""
    fields = request.get("additionalModelRequestFields")
    thinking = fields.get("thinking") if isinstance(fields, Mapping) else None
    if family != "anthropic" or not isinstance(thinking, Mapping):
        return
    if thinking.get("type") not in ("enabled", "adaptive"):
        return
    choice = (request.get("toolConfig") or {}).get("toolChoice") or {}
    if thinking.get("type") == "enabled" and ("any" in choice or "tool" in choice):
        raise validation_error(THINKING_FORCED_TOOL)
    temperature = (request.get("inferenceConfig") or {}).get("temperature")
    if temperature is not None and temperature != 1:
        raise validation_error(THINKING_TEMPERATURE)
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") != "user" or not any("toolResult" in block for block in last.get("content") or []):
        return  # a new turn: no thinking blocks needed
    start = 0  # the user message that opened the turn: the last one without tool results
    for index, message in enumerate(messages):
        content = message.get("content") or []
        if message.get("role") == "user" and not any("toolResult" in block for block in content):
            start = index
    for index in range(start + 1, len(messages)):
        if messages[index].get("role") == "assistant":
            content = messages[index].get("content") or [{}]
            first = next(iter(content[0]), "text") if isinstance(content[0], Mapping) else "text"
            if first != "reasoningContent":
                raise validation_error(THINKING_NEEDS_REASONING_FIRST.format(index=index, found=_snake(first)))
            break
    for index in range(start + 1, len(messages)):  # every reasoning block of the loop, as it was signed
        if messages[index].get("role") != "assistant":
            continue
        for number, block in enumerate(messages[index].get("content") or []):
            if isinstance(block, Mapping) and isinstance(block.get("reasoningContent"), Mapping):
                problem = _verified(block["reasoningContent"])
                if problem is not None:
                    raise validation_error(problem.format(index=index, block=number))


def tool_calls(request: Mapping[str, Any], text: str) -> list[dict[str, Any]]:
    """The ``toolUse`` block contents the model answers with ([] when it answers in text): the forced tool, or every
    tool the last user text names when it names two or more (in the order named), else the first tool."""
    config = request.get("toolConfig") or {}
    specs = [tool["toolSpec"] for tool in config.get("tools") or [] if "toolSpec" in tool]
    if not specs:
        return []
    choice = config.get("toolChoice") or {"auto": {}}
    messages = request.get("messages") or []
    last = messages[-1].get("content") or [] if messages else []
    if "auto" in choice and any("toolResult" in block for block in last):
        return []
    forced = (choice.get("tool") or {}).get("name")
    named = sorted(
        (found.start(), spec["name"])
        for spec in specs
        if (found := re.search(rf"(?<![\w-]){re.escape(spec['name'])}(?![\w-])", text)) is not None
    )
    if forced is not None:
        chosen = [spec for spec in specs if spec["name"] == forced]
    elif len(named) > 1:
        chosen = [next(spec for spec in specs if spec["name"] == name) for _, name in named]
    else:
        chosen = specs[:1]
    calls = []
    for position, spec in enumerate(chosen):
        seed = [spec["name"], messages] if position == 0 else [spec["name"], position, messages]
        digest = hashlib.sha256(json.dumps(seed, sort_keys=True, default=str).encode()).hexdigest()
        calls.append(
            {
                "toolUseId": f"tooluse_{digest[:22]}",
                "name": spec["name"],
                "input": answer_value(spec["inputSchema"]["json"], text),
            }
        )
    return calls


def json_pieces(text: str, size: int = 16) -> list[str]:
    """``text`` in pieces of about ``size`` characters, at least two (as models stream tool input)."""
    size = max(1, min(size, len(text) // 2 or 1))
    return [text[start : start + size] for start in range(0, len(text), size)]
