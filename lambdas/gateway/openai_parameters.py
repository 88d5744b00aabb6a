"""Every request parameter of OpenAI's chat completions contract, and what the gateway does with it: honoured, or
refused with a 400 that names it and says why. None is ignored in silence (docs/gateway/openai.md lists them).

``HONOURED``: parameters the gateway acts on (by modality: a text parameter sent to an image bot is refused, as the
image bot could not honour it). ``REFUSED``: parameters Bedrock cannot honour; a value that asks for nothing (null,
the default, an empty map) passes, any other is a 400. ``GATEWAY_EXTRAS``: the gateway's own body fields
(``lambdas.gateway.parameters``). A body field in none of the three is a 400 naming it.

The fields of each message and the types of its content parts follow the same rule (``MESSAGE_FIELDS``,
``MESSAGE_REFUSED``, ``PART_TYPES``, ``PART_REFUSED``; ``check_messages``), with ``param`` the field's path
(``messages.2.name``, ``messages.0.content.1``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lambdas.gateway.errors import USER_CAUSED, GatewayError
from lambdas.gateway.parameters import IMAGE_PARAMETERS

TEXT, MEDIA = frozenset({"text"}), frozenset({"image", "video"})
ALL = TEXT | MEDIA

# name -> the modalities whose bots act on it
HONOURED: dict[str, frozenset[str]] = {
    "model": ALL,
    "messages": ALL,
    "stream": ALL,
    "stream_options": ALL,  # include_usage; include_obfuscation: see REFUSED_OPTIONS
    "n": ALL,  # text bots: 1 only (REFUSED_VALUES); image bots: the number of images
    "max_tokens": TEXT,
    "max_completion_tokens": TEXT,
    "temperature": TEXT,
    "top_p": TEXT,
    "stop": TEXT,
    "tools": TEXT,
    "tool_choice": TEXT,
    "parallel_tool_calls": TEXT,  # true (the default): models may call several tools; false: REFUSED_VALUES
    "reasoning_effort": TEXT,
    "response_format": TEXT,  # lambdas.gateway.structured
    "seed": frozenset({"image"}),  # the image's seed; a text bot: REFUSED_VALUES
    "user": ALL,  # logged with the request as ``end_user`` (abuse tracing), sent nowhere
    "safety_identifier": ALL,  # likewise
}
GATEWAY_EXTRAS = frozenset({*IMAGE_PARAMETERS, "thinking_budget"}) - {"seed"}


def _unset(value: Any) -> bool:
    return value is None


def _false(value: Any) -> bool:
    return value is None or value is False


def _zero(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value == 0)


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


@dataclass(frozen=True)
class Refused:
    why: str  # why Bedrock (or the gateway) cannot honour it
    passes: Callable[[Any], bool] = _unset  # values that ask for nothing


REFUSED: dict[str, Refused] = {
    "logprobs": Refused("Bedrock Converse returns no log probabilities", _false),
    "top_logprobs": Refused("Bedrock Converse returns no log probabilities"),
    "logit_bias": Refused("Bedrock Converse takes no token biases", _empty),
    "frequency_penalty": Refused("Bedrock Converse has no frequency penalty", _zero),
    "presence_penalty": Refused("Bedrock Converse has no presence penalty", _zero),
    "audio": Refused("the gateway answers in text only"),
    "modalities": Refused("the gateway answers in text only", lambda v: v is None or v == ["text"]),
    "prediction": Refused("Bedrock has no predicted outputs"),
    "web_search_options": Refused("the gateway has no web search"),
    "verbosity": Refused("Bedrock Converse has no verbosity setting"),
    "moderation": Refused("the gateway's moderation is the bot's Bedrock guardrail, set by the operator"),
    "functions": Refused("the deprecated functions are not supported: send 'tools'"),
    "function_call": Refused("the deprecated function_call is not supported: send 'tool_choice'"),
    "store": Refused("the gateway stores no completions", _false),
    "metadata": Refused("the gateway stores no completions to attach metadata to", _empty),
    "prompt_cache_key": Refused("prompt caching is set per bot (a cache point after the system prompt)"),
    "prompt_cache_retention": Refused("prompt caching is set per bot (a cache point after the system prompt)"),
    "prompt_cache_options": Refused("prompt caching is set per bot (a cache point after the system prompt)"),
    "service_tier": Refused(
        "the bot's Bedrock service tier is set by the operator: only 'auto' or 'default' are accepted",
        lambda v: v in (None, "auto", "default"),
    ),
}
# values of honoured parameters a text bot cannot honour
REFUSED_VALUES: dict[str, Refused] = {
    "n": Refused("Bedrock Converse gives one answer per request: send n = 1, or n requests", lambda v: v in (None, 1)),
    "parallel_tool_calls": Refused(
        "Bedrock Converse cannot limit a model to one tool call per answer: leave it unset or true",
        lambda v: v is None or v is True,
    ),
    "seed": Refused("Bedrock Converse takes no seed for text answers"),
}
REFUSED_OPTIONS: dict[str, Refused] = {
    "include_obfuscation": Refused("the gateway adds no obfuscation field to stream chunks: send false", _false),
}


# message fields the gateway acts on (``lambdas.gateway.app.OpenAIMessage``). Its own answer fields, sent back with
# an assistant message (SDKs dump the answer's message into the next request): ``thinking_blocks`` (the signed
# reasoning, which goes back to the model) and ``reasoning_content`` (the same reasoning as plain text, which Bedrock
# cannot take back unsigned: the thinking blocks carry it)
MESSAGE_FIELDS = frozenset(
    {"role", "content", "tool_calls", "tool_call_id", "refusal", "thinking_blocks", "reasoning_content"}
)
MESSAGE_REFUSED: dict[str, Refused] = {
    "name": Refused(
        "Bedrock Converse messages carry no participant name (a message is a role and its content): write the name "
        "into the message's content"
    ),
    "function_call": Refused("the deprecated function_call is not supported: send the assistant's 'tool_calls'"),
    "audio": Refused("the gateway answers in text only, so there is no earlier audio answer to refer to"),
    "annotations": Refused(
        "an earlier answer's annotations (URL citations) cannot go back to a Bedrock model: send them empty", _empty
    ),
}
# content part types the gateway reads: text, images (``image_url``), files with their data (``file.file_data``) and
# an assistant's ``refusal`` (its text, as the assistant said it)
PART_TYPES = frozenset({"text", "image_url", "file", "refusal"})
PART_REFUSED: dict[str, str] = {
    "input_audio": "no bot of this gateway reads audio (it passes text, images and documents to Bedrock Converse)",
}
FILE_REFUSED: dict[str, str] = {
    "file_id": "the chat route reads a file's content from 'file_data' (a data: URL or base64); it looks up no "
    "uploaded file ids",
}


def refused(name: str, value: Any, why: str) -> GatewayError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return GatewayError(
        400,
        f"'{name}' = {shown} is not supported: {why}.",
        error_type=USER_CAUSED,
        code="unsupported_parameter",
        param=name,
    )


def check(body: Mapping[str, Any], modality: str, bot: str) -> None:
    """Every field of a chat completions request body, for ``bot`` of ``modality``; the first one the gateway
    cannot honour is a 400 naming it (OpenAI ``error.param``) and saying why. A bot that does not chat (an embedding
    model) is a 400 naming the route it answers."""
    if modality not in ALL:
        raise GatewayError(
            400,
            f"'{bot}' is an {modality} model: it answers POST /v1/embeddings, not chat.",
            error_type=USER_CAUSED,
            code="wrong_endpoint",
            param="model",
        )
    for name, value in body.items():
        if name in REFUSED:
            if not REFUSED[name].passes(value):
                raise refused(name, value, REFUSED[name].why)
        elif name in HONOURED:
            if modality not in HONOURED[name] and value is not None:
                raise refused(name, value, f"bot '{bot}' makes {modality}s and cannot use it")
            rule = REFUSED_VALUES.get(name) if modality == "text" else None
            if rule is not None and not rule.passes(value):
                raise refused(name, value, rule.why)
        elif name not in GATEWAY_EXTRAS:
            raise GatewayError(
                400,
                f"Unknown parameter '{name[:60]}': it is not a chat completions parameter nor one of the gateway's "
                f"({', '.join(sorted(GATEWAY_EXTRAS))}).",
                error_type=USER_CAUSED,
                code="unknown_parameter",
                param=name[:60],
            )
    messages = body.get("messages")
    if isinstance(messages, list):
        check_messages(messages)
    options = body.get("stream_options")
    if isinstance(options, Mapping):
        for name, rule in REFUSED_OPTIONS.items():
            if not rule.passes(options.get(name)):
                raise refused(f"stream_options.{name}", options.get(name), rule.why)


def unknown_field(path: str, allowed: frozenset[str]) -> GatewayError:
    return GatewayError(
        400,
        f"Unknown field '{path[:80]}': a chat message has {', '.join(sorted(allowed))}.",
        error_type=USER_CAUSED,
        code="unknown_parameter",
        param=path[:80],
    )


def check_messages(messages: list[Any]) -> None:
    """Every field of every message and the type of every content part: honoured, or a 400 naming its path."""
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") == "function":
            continue  # the body's own validation names it; the deprecated role is refused for itself (messages.N.role)
        for name, value in message.items():
            path = f"messages.{index}.{name}"
            if name in MESSAGE_REFUSED:
                if not MESSAGE_REFUSED[name].passes(value):
                    raise refused(path, value, MESSAGE_REFUSED[name].why)
            elif name not in MESSAGE_FIELDS:
                raise unknown_field(path, MESSAGE_FIELDS | set(MESSAGE_REFUSED))
        content = message.get("content")
        for number, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, Mapping) else None
            path = f"messages.{index}.content.{number}"
            if kind in PART_REFUSED:
                raise refused(path, {"type": kind}, PART_REFUSED[kind])
            if kind not in PART_TYPES:
                raise GatewayError(
                    400,
                    f"Content part type {str(kind)[:40]!r} is not supported: send {', '.join(sorted(PART_TYPES))}.",
                    error_type=USER_CAUSED,
                    code="invalid_content",
                    param=path,
                )
            if kind == "refusal" and message.get("role") != "assistant":
                raise GatewayError(
                    400,
                    "A 'refusal' part belongs to an assistant message (what the assistant refused with).",
                    error_type=USER_CAUSED,
                    code="invalid_content",
                    param=path,
                )
            file = part.get("file") if kind == "file" else None
            for name, why in FILE_REFUSED.items():
                if isinstance(file, Mapping) and file.get(name) is not None:
                    raise refused(f"{path}.file.{name}", file[name], why)
