"""Converse tool use: ``toolConfig`` checks in the service's words, and the emulator's deterministic tool calls.

Checks (ValidationException): tool blocks (``toolUse`` / ``toolResult``) in the messages need a ``toolConfig``;
``toolConfig.tools`` holds at least one entry, each exactly one of ``toolSpec`` / ``cachePoint`` / ``systemTool``;
a ``toolSpec`` has a name matching ``^[a-zA-Z0-9_-]{1,64}$`` (unique), a non-empty description if any, and an
``inputSchema.json`` object; ``toolChoice`` is exactly one of ``auto`` / ``any`` / ``tool`` (``tool.name`` one of
the tools; ``any`` and ``tool`` only on models that take them); every ``toolResult`` answers a ``toolUse`` of the
assistant message just before it.

Answer: with tools, the model calls one unless the last user message brings tool results and the choice is
``auto`` (then it answers in text, echoing the results). It calls the forced tool (``toolChoice.tool``) or the first
one, with an input built from the schema's required properties: strings get the last user text, numbers 1,
booleans true, arrays [], objects their own required properties, enums their first value.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from local.emulator.errors import validation_error

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NEEDS_TOOL_CONFIG = "The toolConfig field must be defined when using toolUse and toolResult content blocks."
FORCED_CHOICE_FAMILIES = frozenset({"anthropic", "nova", "mistral", "profile"})  # toolChoice any / tool


def _blocks(messages: Sequence[Mapping[str, Any]], kind: str) -> list[tuple[int, Mapping[str, Any]]]:
    return [
        (index, block[kind])
        for index, message in enumerate(messages)
        for block in message.get("content") or []
        if isinstance(block, Mapping) and kind in block
    ]


def check_tool_config(request: Mapping[str, Any], family: str) -> None:
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
        if modes[0] != "auto" and family not in FORCED_CHOICE_FAMILIES:
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


def example_input(schema: Mapping[str, Any], text: str) -> Any:
    """A value for ``schema``: see the module docstring."""
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or [] if isinstance(name, str)]
        return {name: example_input(properties.get(name) or {}, text) for name in required}
    values: dict[str, Any] = {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}
    return values.get(str(kind), text)


def tool_call(request: Mapping[str, Any], text: str) -> dict[str, Any] | None:
    """The ``toolUse`` block content the model answers with, or None when it answers in text."""
    config = request.get("toolConfig") or {}
    specs = [tool["toolSpec"] for tool in config.get("tools") or [] if "toolSpec" in tool]
    if not specs:
        return None
    choice = config.get("toolChoice") or {"auto": {}}
    messages = request.get("messages") or []
    last = messages[-1].get("content") or [] if messages else []
    if "auto" in choice and any("toolResult" in block for block in last):
        return None
    forced = (choice.get("tool") or {}).get("name")
    spec = next((spec for spec in specs if spec["name"] == forced), specs[0])
    digest = hashlib.sha256(json.dumps([spec["name"], messages], sort_keys=True, default=str).encode()).hexdigest()
    return {
        "toolUseId": f"tooluse_{digest[:22]}",
        "name": spec["name"],
        "input": example_input(spec["inputSchema"]["json"], text),
    }


def json_pieces(text: str, size: int = 16) -> list[str]:
    """``text`` in pieces of about ``size`` characters, at least two (as models stream tool input)."""
    size = max(1, min(size, len(text) // 2 or 1))
    return [text[start : start + size] for start in range(0, len(text), size)]
