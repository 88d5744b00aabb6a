"""Structured output: OpenAI ``response_format`` -> a JSON answer that is checked before it is called one.

Request (``parse_response_format``): ``{"type": "text"}`` (or unset) asks for nothing; ``{"type": "json_object"}``
asks for a JSON object; ``{"type": "json_schema", "json_schema": {name, description?, schema, strict?}}`` for a JSON
value matching ``schema`` (a JSON Schema whose root is an object, checked with ``jsonschema``; ``name`` matches
``^[a-zA-Z0-9_-]{1,64}$``). Anything else is a 400 naming the field.

How the bot is asked (``prepare``, by the bot's capabilities):

- ``structured_output`` and a ``json_schema``: Bedrock's own structured output, Converse ``outputConfig.textFormat``
  ``{type: json_schema, structure: {jsonSchema: {schema: <JSON text>, name, description}}}``; the answer is text;
- otherwise ``forced_tool``: one tool whose input schema is the schema (``{"type": "object"}`` for ``json_object``),
  forced with ``toolChoice.any``; the tool's input JSON is the answer's content (streamed as content deltas), the
  call itself is not shown and the finish reason is ``stop``. Other ``tools`` cannot be offered beside it (a 400);
- a bot with neither: a 400 naming ``response_format`` and the bots that can.

The answer (``answer_events``): the JSON text is collected as it streams and checked when the model stops: it must
parse, be an object for ``json_object``, and validate against the schema for ``json_schema``. A failure (the model
answered in prose, broke the schema, or was cut at ``max_tokens``) is a 502 ``invalid_structured_output`` in
OpenAI's error shape: before the answer is sent when not streamed; when streamed, the content already sent is
followed by that error chunk instead of a finish chunk, then ``[DONE]`` (the openai SDK raises it), so no client
takes a broken answer for a finished one.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match
from referencing.exceptions import Unresolvable

from lambdas.gateway.errors import USER_CAUSED, GatewayError
from lambdas.gateway.events import Event, Finished, TextDelta, ToolCallDelta, ToolCallStart
from lambdas.gateway.response_format import ResponseFormat
from lambdas.gateway.tools import ToolChoice, ToolSpec

if TYPE_CHECKING:
    from lambdas.gateway.config import BotConfig
    from lambdas.gateway.translate import ChatRequest

SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
JSON_OBJECT: dict[str, Any] = {"type": "object"}
TOOL_DESCRIPTION = "Give your whole answer as this tool's input: a JSON value matching its input schema."


def invalid_format(message: str, param: str = "response_format") -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code="invalid_response_format", param=param)


def parse_response_format(value: Any) -> ResponseFormat | None:
    """OpenAI ``response_format``; None for plain text."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise invalid_format(
            f"'response_format' must have type 'text', 'json_object' or 'json_schema', not {kind!r}.",
            "response_format.type",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise invalid_format("'response_format.json_schema' must be an object with 'name' and 'schema'.")
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.match(name):
        raise invalid_format(
            f"'response_format.json_schema.name' {name!r} must be 1 to 64 letters, digits, '_' or '-'.",
            "response_format.json_schema.name",
        )
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise invalid_format("'response_format.json_schema.description' must be text.")
    schema = spec.get("schema")
    where = "response_format.json_schema.schema"
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise invalid_format(f"'{where}' must be a JSON Schema whose root has type 'object'.", where)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise invalid_format(f"'{where}' is not a valid JSON Schema: {error.message[:200]}", where) from None
    if spec.get("strict") not in (None, True, False):
        raise invalid_format("'response_format.json_schema.strict' must be true or false.")
    return ResponseFormat("json_schema", name, dict(schema), description)


def prepare(bot: BotConfig, chat: ChatRequest) -> ChatRequest:
    """``chat`` set up for its ``response_format`` on ``bot`` (see the module docstring), or a 400."""
    fmt = chat.response_format
    if fmt is None:
        return chat
    caps = bot.capabilities
    if fmt.kind == "json_schema" and caps.structured_output:
        return replace(chat, response_format=replace(fmt, via="native"))
    if not (caps.tools and caps.forced_tool):
        raise invalid_format(
            f"Bot '{bot.name}' cannot give structured output: its model has neither Bedrock's structured output nor "
            "forced tool use (capabilities.structured_output / forced_tool in bots.json). Remove 'response_format', "
            "or ask a Claude, Nova or Mistral Large bot."
        )
    if chat.tools:
        raise invalid_format(
            f"Bot '{bot.name}' gives structured output through a forced tool call, so it cannot offer 'tools' in the "
            "same request: send either, or ask a bot with Bedrock's structured output (Claude 4.5)."
        )
    tool = ToolSpec(fmt.name, fmt.description or TOOL_DESCRIPTION, fmt.schema or JSON_OBJECT)
    return replace(chat, tools=(tool,), tool_choice=ToolChoice("required"), response_format=replace(fmt, via="tool"))


def unusable(fmt: ResponseFormat, why: str) -> GatewayError:
    return GatewayError(
        502,
        f"The model's answer is not valid structured output for '{fmt.name}': {why}. Retry, or simplify the schema.",
        openai_type="upstream_error",
        code="invalid_structured_output",
        allow_retry=True,
    )


def check_answer(fmt: ResponseFormat, text: str, stop_reason: str | None) -> None:
    """A 502 unless ``text`` is the JSON ``fmt`` asks for."""
    if stop_reason == "max_tokens":
        raise unusable(fmt, "it was cut at max_tokens (raise max_tokens)")
    if not text.strip():
        raise unusable(fmt, "the model gave no JSON")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise unusable(fmt, f"it is not JSON ({error.msg} at character {error.pos})") from None
    if fmt.schema is None:
        if not isinstance(value, dict):
            raise unusable(fmt, f"it is a JSON {type(value).__name__}, not an object")
        return
    try:
        problem = best_match(Draft202012Validator(fmt.schema).iter_errors(value))
    except Unresolvable as error:
        raise invalid_format(f"The schema's reference cannot be resolved: {error}.", "response_format") from None
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "(root)"
        raise unusable(fmt, f"at {where}: {problem.message[:200]}")


async def answer_events(events: AsyncIterable[Event], fmt: ResponseFormat) -> AsyncIterator[Event]:
    """The answer's events with the JSON as text (a forced tool's input becomes content), checked at ``Finished``."""
    text: list[str] = []
    stream = aiter(events)
    try:
        async for event in stream:
            if isinstance(event, Finished):
                check_answer(fmt, "".join(text), event.stop_reason)
                yield replace(event, stop_reason="end_turn") if event.stop_reason == "tool_use" else event
            elif fmt.via == "tool" and isinstance(event, ToolCallDelta):
                text.append(event.arguments)
                yield TextDelta(event.arguments)
            elif fmt.via == "tool" and isinstance(event, ToolCallStart | TextDelta):
                continue  # the forced call is the answer's carrier; prose beside it is no part of the JSON
            else:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                yield event
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
