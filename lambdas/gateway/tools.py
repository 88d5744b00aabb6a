"""Tool use (function calling), pure: OpenAI / Poe tool fields -> Converse ``toolConfig`` and content blocks.

Request (OpenAI ``tools``, ``tool_choice``; Poe ``tools``, ``tool_calls``, ``tool_results``):

- each ``{"type": "function", "function": {name, description, parameters}}`` -> ``{"toolSpec": {name, description,
  "inputSchema": {"json": parameters}}}``; names match ``^[a-zA-Z0-9_-]{1,64}$`` (Converse), once each;
- ``tool_choice``: ``"auto"`` (or unset) -> no ``toolChoice`` (Converse's default is auto, and every tool model
  takes it); ``"required"`` -> ``{"any": {}}``; ``{"type": "function", "function": {"name": n}}`` ->
  ``{"tool": {"name": n}}``; ``"none"`` -> no ``toolConfig`` at all;
- an assistant message's ``tool_calls`` -> ``toolUse`` blocks ``{toolUseId, name, input}`` after its text; a ``tool``
  message -> a user ``toolResult`` block ``{toolUseId, content: [{text}]}`` (consecutive ones merge into one user
  message, as Converse wants roles to alternate);
- without a ``toolConfig`` (no tools, or ``"none"``) Converse refuses tool blocks, so earlier calls and results are
  sent as plain text instead.

Answer: ConverseStream ``contentBlockStart.start.toolUse`` {toolUseId, name} then ``delta.toolUse.input`` (JSON
pieces) become ``ToolCallStart`` / ``ToolCallDelta`` events (OpenAI ``delta.tool_calls``; Poe ``json`` events in the
same chunk shape, which fastapi_poe's client reads); stop reason ``tool_use`` -> finish reason ``tool_calls``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lambdas.gateway.errors import USER_CAUSED, GatewayError

if TYPE_CHECKING:
    from lambdas.gateway.config import BotConfig

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
ChoiceMode = Literal["auto", "none", "required", "tool"]


def invalid_tools(message: str, code: str = "invalid_tools") -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code=code)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None  # a JSON schema (an object); None: no parameters


@dataclass(frozen=True)
class ToolChoice:
    mode: ChoiceMode = "auto"
    name: str | None = None  # mode "tool": the tool the model must call


@dataclass(frozen=True)
class ToolCall:
    """A call the assistant made (OpenAI ``tool_calls[]``): ``arguments`` is the JSON text of an object."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned (OpenAI ``tool`` message, Poe ``tool_results[]``)."""

    tool_call_id: str
    content: str


# ---------------------------------------------------------------- parsing the front ends' fields


def parse_tools(tools: Sequence[Any] | None) -> tuple[ToolSpec, ...]:
    """OpenAI / Poe ``tools`` -> specs; a clear 400 for a shape Converse cannot take."""
    if not tools:
        return ()
    if len(tools) > MAX_TOOLS:
        raise invalid_tools(f"'tools' has {len(tools)} entries; at most {MAX_TOOLS} are allowed.")
    specs: list[ToolSpec] = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, Mapping) else type(tool).__name__
            raise invalid_tools(f"{where}: only tools of type 'function' are supported, got {kind!r}.")
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise invalid_tools(f"{where}.function must be an object with a 'name'.")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise invalid_tools(
                f"{where}.function.name {name!r} is not a valid tool name: use 1 to 64 letters, digits, '_' or '-'.",
                code="invalid_tool_name",
            )
        if any(spec.name == name for spec in specs):
            raise invalid_tools(f"{where}: the tool name '{name}' is used twice; give each tool its own name.")
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise invalid_tools(f"{where}.function.description must be text.")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise invalid_tools(f"{where}.function.parameters must be a JSON schema object.")
        specs.append(ToolSpec(name, description, parameters))
    return tuple(specs)


def parse_tool_choice(choice: Any, tools: Sequence[ToolSpec]) -> ToolChoice:
    """OpenAI ``tool_choice`` (unset, a mode string, or a named function) against the request's tools."""
    if choice is None:
        return ToolChoice()
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise invalid_tools(f"'tool_choice' must be 'auto', 'none', 'required' or a function, not {choice!r}.")
        if choice != "none" and not tools:
            raise invalid_tools(f"'tool_choice' {choice!r} needs 'tools'; send the tools the model may call.")
        return ToolChoice(choice)  # type: ignore[arg-type]  # one of the three checked above
    function = choice.get("function") if isinstance(choice, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(choice, Mapping) or choice.get("type") != "function" or not isinstance(name, str):
        raise invalid_tools('\'tool_choice\' as an object must be {"type": "function", "function": {"name": ...}}.')
    if name not in {spec.name for spec in tools}:
        raise invalid_tools(f"'tool_choice' names the function '{name}', which is not in 'tools'; add it or pick one.")
    return ToolChoice("tool", name)


def parse_tool_calls(calls: Sequence[Any] | None) -> tuple[ToolCall, ...]:
    """An assistant message's OpenAI ``tool_calls`` (``{id, type, function: {name, arguments}}``)."""
    parsed: list[ToolCall] = []
    for index, call in enumerate(calls or ()):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(call, Mapping) or not isinstance(function, Mapping):
            raise invalid_tools(f"tool_calls[{index}] must be {{id, type: 'function', function: {{name, arguments}}}}.")
        call_id, name = call.get("id"), function.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise invalid_tools(f"tool_calls[{index}] needs its 'id' (the one the model gave).")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise invalid_tools(f"tool_calls[{index}].function.name {name!r} is not a valid tool name.")
        arguments = function.get("arguments")
        parsed.append(ToolCall(call_id, name, arguments if isinstance(arguments, str) and arguments else "{}"))
    return tuple(parsed)


def content_text(content: Any) -> str:
    """A tool message's ``content``: a string, or text parts joined."""
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return content if isinstance(content, str) else ""


# ---------------------------------------------------------------- Converse shapes


def tool_config(tools: Sequence[ToolSpec], choice: ToolChoice) -> dict[str, Any] | None:
    """The Converse ``toolConfig``, or None when the model gets no tools (none given, or ``"none"``)."""
    if not tools or choice.mode == "none":
        return None
    specs: list[dict[str, Any]] = []
    for tool in tools:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": dict(tool.parameters or EMPTY_SCHEMA)}}
        if tool.description.strip():
            spec["description"] = tool.description
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif choice.mode == "tool":
        config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise invalid_tools(
            f"The arguments of tool call '{call.id}' ({call.name}) must be the JSON text of an object, "
            f"got {call.arguments[:60]!r}."
        )
    return {"toolUse": {"toolUseId": call.id, "name": call.name, "input": arguments}}


def tool_result_block(result: ToolResult) -> dict[str, Any]:
    # Converse refuses a blank text block, and a tool may well return nothing
    return {"toolResult": {"toolUseId": result.tool_call_id, "content": [{"text": result.content or "(no output)"}]}}


def tool_call_text(call: ToolCall) -> dict[str, Any]:
    return {"text": f"[called tool {call.name} (id {call.id}) with arguments {call.arguments}]"}


def tool_result_text(result: ToolResult) -> dict[str, Any]:
    return {"text": f"[result of tool call {result.tool_call_id}]: {result.content or '(no output)'}"}


# ---------------------------------------------------------------- what a bot accepts


def check_tools(bot: BotConfig, tools: Sequence[ToolSpec]) -> None:
    """Tools on a bot without ``capabilities.tools``: a 400 naming the field, the bot and the fix."""
    if tools and not bot.capabilities.tools:
        raise GatewayError(
            400,
            f"Bot '{bot.name}' does not support 'tools' (function calling): its model has no tool use on Bedrock "
            "Converse, or the bot does not enable it (capabilities.tools in bots.json). Remove 'tools' and "
            "'tool_choice', or ask a bot with tool use (Claude 3+, Nova, Llama 3.1+, Mistral Large, Command R).",
            error_type=USER_CAUSED,
            code="tools_not_supported",
        )
