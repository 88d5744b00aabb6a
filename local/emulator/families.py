"""Emulated model answers, one function per request family, chosen through small registries.

Text families echo the last user text exactly as sent (so a wrong join shows downstream); embeddings are
deterministic per input text. A ``modelInput`` that does not fit its family raises ``RecordError``, which the batch
job turns into a record-level ``error`` (errorCode 400), with the real service's wording.

This module does not import the project's own model registry on purpose: the emulator stands in for AWS and must not
share the code it tests.

Add a family: write ``invoke_xxx(model_id, model_input) -> Invocation`` and add it to ``FAMILIES``, a model-id prefix
to ``MODEL_ID_PREFIXES`` and, if its input has a telltale key, a line to ``SHAPE_KEYS``.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


class RecordError(Exception):
    """The record's ``modelInput`` is invalid for the model."""


@dataclass(frozen=True)
class Invocation:
    output: dict[str, Any]
    input_tokens: int
    output_tokens: int


Invoke = Callable[[str, dict[str, Any]], Invocation]

_GEO_PREFIX = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.")
_ARN_RESOURCE = re.compile(r"^arn:aws[-a-z]*:bedrock:[^:]*:[0-9]*:(foundation-model|inference-profile)/(?P<id>.+)$")
EMBEDDING_DIMENSIONS = (256, 512, 1024)


def base_model_id(model_id: str) -> str:
    """``arn:...:inference-profile/us.anthropic.claude-x`` -> ``anthropic.claude-x``; other ARNs stay as they are."""
    arn = _ARN_RESOURCE.match(model_id)
    return _GEO_PREFIX.sub("", arn.group("id") if arn else model_id)


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


# ---------------------------------------------------------------- input checks, in the service's words


def _malformed(detail: str) -> RecordError:
    return RecordError(f"Malformed input request: {detail}, please reformat your input and try again.")


def _require(model_input: dict[str, Any], key: str, kind: type | tuple[type, ...], kind_name: str) -> Any:
    if key not in model_input:
        raise _malformed(f"#: required key [{key}] not found")
    return _typed(model_input[key], f"#/{key}", kind, kind_name)


def _typed(value: Any, where: str, kind: type | tuple[type, ...], kind_name: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _malformed(f"{where}: expected type: {kind_name}, found: {type(value).__name__}")
    return value


def _no_extra_keys(model_input: dict[str, Any], allowed: Iterable[str]) -> None:
    extra = sorted(set(model_input) - set(allowed))
    if extra:
        raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")


def _messages(model_input: dict[str, Any]) -> list[dict[str, Any]]:
    messages = _require(model_input, "messages", list, "JSONArray")
    if not messages:
        raise _malformed("#/messages: expected minimum item count: 1, found: 0")
    for index, message in enumerate(messages):
        _typed(message, f"#/messages/{index}", dict, "JSONObject")
        if message.get("role") not in ("user", "assistant"):
            raise _malformed(f"#/messages/{index}/role: {message.get('role')} is not a valid enum value")
        _typed(message.get("content"), f"#/messages/{index}/content", (str, list), "JSONArray")
    return messages


def _texts(content: str | list[Any]) -> list[str]:
    """The text parts of a message content: a plain string or blocks (``{"type": "text", "text"}`` or ``{"text"}``)."""
    if isinstance(content, str):
        return [content]
    return [block["text"] for block in content if isinstance(block, dict) and isinstance(block.get("text"), str)]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    """The echo: text of the last user message exactly as sent (several text blocks joined by newlines)."""
    users = [message for message in messages if message["role"] == "user"]
    if not users:
        raise _malformed("#/messages: a user message is required")
    return "\n".join(_texts(users[-1]["content"]))


def _prompt_tokens(messages: list[dict[str, Any]], system: Any) -> int:
    texts = [text for message in messages for text in _texts(message["content"])]
    if isinstance(system, str | list):
        texts += _texts(system)
    return max(1, sum(estimate_tokens(text) for text in texts))


# ---------------------------------------------------------------- families

_ANTHROPIC_KEYS = (
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
)


def invoke_anthropic(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Anthropic Messages API (InvokeModel type)."""
    _require(model_input, "anthropic_version", str, "String")
    if _require(model_input, "max_tokens", int, "Integer") < 1:
        raise _malformed("#/max_tokens: 0 is not greater or equal to 1")
    messages = _messages(model_input)
    _no_extra_keys(model_input, _ANTHROPIC_KEYS)
    echo = _last_user_text(messages)
    usage = {
        "input_tokens": _prompt_tokens(messages, model_input.get("system")),
        "output_tokens": estimate_tokens(echo),
    }
    output = {
        "id": "msg_bdrk_" + hashlib.sha256(echo.encode()).hexdigest()[:24],
        "type": "message",
        "role": "assistant",
        "model": base_model_id(model_id),
        "content": [{"type": "text", "text": echo}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    return Invocation(output, usage["input_tokens"], usage["output_tokens"])


def _converse_like(model_input: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """Shared by Nova (messages-v1) and the Converse type: ``{"text"}`` content blocks in, the same shape out."""
    messages = _messages(model_input)
    echo = _last_user_text(messages)
    input_tokens, output_tokens = _prompt_tokens(messages, model_input.get("system")), estimate_tokens(echo)
    output = {
        "output": {"message": {"role": "assistant", "content": [{"text": echo}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
    }
    return output, input_tokens, output_tokens


def invoke_nova(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Amazon Nova text (``schemaVersion`` ``messages-v1``)."""
    _no_extra_keys(model_input, ("schemaVersion", "system", "messages", "inferenceConfig", "toolConfig"))
    return Invocation(*_converse_like(model_input))


def invoke_converse(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Jobs of ``modelInvocationType`` ``Converse``: the Converse request body in, a Converse response out."""
    output, input_tokens, output_tokens = _converse_like(model_input)
    return Invocation({**output, "metrics": {"latencyMs": 1}}, input_tokens, output_tokens)


def invoke_llama(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Meta Llama: ``prompt`` in, ``generation`` (the prompt echoed) out."""
    prompt = _require(model_input, "prompt", str, "String")
    _no_extra_keys(model_input, ("prompt", "max_gen_len", "temperature", "top_p", "images"))
    input_tokens, output_tokens = max(1, estimate_tokens(prompt)), estimate_tokens(prompt)
    output = {
        "generation": prompt,
        "prompt_token_count": input_tokens,
        "generation_token_count": output_tokens,
        "stop_reason": "stop",
    }
    return Invocation(output, input_tokens, output_tokens)


def embed(text: str, dimensions: int, normalize: bool = True) -> list[float]:
    """A deterministic vector per text (seeded by its SHA-256), of unit L2 norm when ``normalize``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) if normalize else 1.0
    return [x / norm for x in vector]


def invoke_titan_embed_v2(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Amazon Titan Text Embeddings V2: ``inputText`` (+ ``dimensions``, ``normalize``) in, ``embedding`` out."""
    text = _require(model_input, "inputText", str, "String")
    if not text:
        raise _malformed("#/inputText: expected minLength: 1, actual: 0")
    dimensions = _typed(model_input.get("dimensions", 1024), "#/dimensions", int, "Integer")
    if dimensions not in EMBEDDING_DIMENSIONS:
        raise _malformed(f"#/dimensions: {dimensions} is not a valid enum value")
    normalize = _typed(model_input.get("normalize", True), "#/normalize", bool, "Boolean")
    _no_extra_keys(model_input, ("inputText", "dimensions", "normalize", "embeddingTypes"))
    tokens = max(1, estimate_tokens(text))
    return Invocation({"embedding": embed(text, dimensions, normalize), "inputTextTokenCount": tokens}, tokens, 0)


FAMILIES: dict[str, Invoke] = {
    "anthropic-messages": invoke_anthropic,
    "nova-messages": invoke_nova,
    "llama": invoke_llama,
    "titan-embed-text-v2": invoke_titan_embed_v2,
    "converse": invoke_converse,
}

# Base model id prefix -> family (longest prefix wins).
MODEL_ID_PREFIXES: dict[str, str] = {
    "anthropic.claude": "anthropic-messages",
    "amazon.nova": "nova-messages",
    "meta.llama": "llama",
    "amazon.titan-embed-text-v2": "titan-embed-text-v2",
}

# For ids that name no model (custom models, application inference profiles): a telltale modelInput key -> family.
SHAPE_KEYS: dict[str, str] = {
    "anthropic_version": "anthropic-messages",
    "inputText": "titan-embed-text-v2",
    "prompt": "llama",
    "messages": "nova-messages",
}

# Invocation types whose records have one format whatever the model.
INVOCATION_TYPE_FAMILIES: dict[str, str] = {"Converse": "converse"}


def family_for_model(model_id: str, invocation_type: str = "InvokeModel") -> str | None:
    """The family fixed by the job (invocation type or model id), or None to decide per record by its shape."""
    if invocation_type in INVOCATION_TYPE_FAMILIES:
        return INVOCATION_TYPE_FAMILIES[invocation_type]
    base = base_model_id(model_id)
    prefixes = [prefix for prefix in MODEL_ID_PREFIXES if base.startswith(prefix)]
    return MODEL_ID_PREFIXES[max(prefixes, key=len)] if prefixes else None


def family_for_input(model_input: dict[str, Any]) -> str:
    for key, family in SHAPE_KEYS.items():
        if key in model_input:
            return family
    raise RecordError("The emulator cannot tell this model's request format from the modelInput keys")


def invoke(family: str | None, model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Answer one record; ``family`` None means: decide from the input's shape."""
    return FAMILIES[family or family_for_input(model_input)](model_id, model_input)
