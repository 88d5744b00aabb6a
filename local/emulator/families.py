"""Emulated model answers, one function per request family, chosen through small registries.

Text families answer in the family's real response shape and echo the user text exactly as sent (so a wrong join
shows downstream): the last user message, or the user turn of a Llama / Mistral chat-template prompt. Embeddings are
deterministic unit-norm vectors per input text, of the requested length. A ``modelInput`` that does not fit its family
raises ``RecordError``, which the batch job turns into a record-level ``error`` (errorCode 400), with the real
service's wording.

This module does not import the project's own model registry on purpose: the emulator stands in for AWS and must not
share the code it tests.

Add a family: write ``invoke_xxx(model_id, model_input) -> Invocation`` and add it to ``FAMILIES``, a model-id prefix
to ``MODEL_ID_PREFIXES`` and, if its input has a telltale key, a line to ``SHAPE_KEYS``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import itertools
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from local.emulator.batch_models import batch_model
from local.emulator.protocol import service_model


class RecordError(Exception):
    """The record gets an ``error`` line with this message: its ``modelInput`` is invalid for the model (``code``
    400), or an injected fault struck it (``code`` of the fault)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Invocation:
    output: dict[str, Any]
    input_tokens: int
    output_tokens: int


Invoke = Callable[[str, dict[str, Any]], Invocation]

_GEO_PREFIX = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.")
_ARN_RESOURCE = re.compile(r"^arn:aws[-a-z]*:bedrock:[^:]*:[0-9]*:(foundation-model|inference-profile)/(?P<id>.+)$")
EMBEDDING_DIMENSIONS = (256, 512, 1024)  # Titan Text Embeddings V2
TITAN_V2_MAX_CHARS = 50_000  # Titan Text Embeddings V2: 8,192 tokens or 50,000 characters
MULTIMODAL_EMBEDDING_LENGTHS = (256, 384, 1024)  # Titan Multimodal Embeddings G1
COHERE_DIMENSIONS = 1024  # Cohere Embed v3
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
COHERE_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
COHERE_MAX_TEXTS, COHERE_MAX_CHARS = 96, 2048
# Amazon Nova Multimodal Embeddings ("Complete embeddings request and response schema"; docs/bedrock-facts.md)
NOVA_MME_SCHEMA_VERSION = "nova-multimodal-embed-v1"
NOVA_MME_PURPOSES = (
    "GENERIC_INDEX",
    "GENERIC_RETRIEVAL",
    "TEXT_RETRIEVAL",
    "IMAGE_RETRIEVAL",
    "VIDEO_RETRIEVAL",
    "DOCUMENT_RETRIEVAL",
    "AUDIO_RETRIEVAL",
    "CLASSIFICATION",
    "CLUSTERING",
)
NOVA_MME_DIMENSIONS = (256, 384, 1024, 3072)
NOVA_MME_TRUNCATION = ("START", "END", "NONE")
NOVA_MME_MAX_TOKENS = 8192  # "the maximum context length is 8K tokens"


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


def _optional_typed(model_input: dict[str, Any], key: str, kind: type | tuple[type, ...], kind_name: str) -> Any:
    return _typed(model_input[key], f"#/{key}", kind, kind_name) if key in model_input else None


def _no_extra_keys(model_input: dict[str, Any], allowed: Iterable[str], where: str = "#") -> None:
    extra = sorted(set(model_input) - set(allowed))
    if extra:
        raise _malformed(f"{where}: extraneous key [{extra[0]}] is not permitted")


def _enum(value: Any, where: str, allowed: Iterable[Any]) -> Any:
    if value not in tuple(allowed):
        raise _malformed(f"{where}: {value} is not a valid enum value")
    return value


def _max_tokens(model_input: dict[str, Any], key: str, required: bool) -> None:
    if key not in model_input and not required:
        return
    if _require(model_input, key, int, "Integer") < 1:
        raise _malformed(f"#/{key}: {model_input[key]} is not greater or equal to 1")


def _in_range(container: dict[str, Any], key: str, where: str, low: float, high: float | None) -> None:
    """A number ``container[key]`` (if present) within ``[low, high]`` (no upper bound: None)."""
    if key not in container:
        return
    value = _typed(container[key], f"{where}/{key}", (int, float), "Number")
    if value < low:
        raise _malformed(f"{where}/{key}: {value} is not greater or equal to {low}")
    if high is not None and value > high:
        raise _malformed(f"{where}/{key}: {value} is not less or equal to {high}")


def _output_ceiling(model_id: str, container: dict[str, Any], key: str, where: str) -> None:
    """``container[key]`` (the number of tokens to generate) at most the model's ceiling, when the model is known."""
    model = batch_model(model_id)
    if key in container and model is not None and model.max_output_tokens is not None:
        _in_range(container, key, where, 1, model.max_output_tokens)


def _alternating(messages: list[dict[str, Any]], first: str = "user") -> None:
    """Converse-style turn order: the first message from the user, then user and assistant in turn (the Converse
    API's own ValidationException texts)."""
    if messages[0]["role"] != first:
        raise RecordError(
            "A conversation must start with a user message. Try again with a conversation that starts with a user "
            "message."
        )
    for previous, message in itertools.pairwise(messages):
        if previous["role"] == message["role"]:
            raise RecordError(
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                "alternates between user and assistant roles and try again."
            )


def _media_allowed(model_id: str, kind: str, where: str) -> None:
    """Image and document blocks only for a model known to accept them (an unknown model: not at all)."""
    model = batch_model(model_id)
    accepts = model is not None and (model.images if kind in ("image", "images") else model.documents)
    if not accepts:
        name = model.name if model is not None else model_id
        raise _malformed(f"{where}: {name} does not accept {kind.rstrip('s')} input")


def _messages(model_input: dict[str, Any], roles: tuple[str, ...] = ("user", "assistant")) -> list[dict[str, Any]]:
    messages = _require(model_input, "messages", list, "JSONArray")
    if not messages:
        raise _malformed("#/messages: expected minimum item count: 1, found: 0")
    for index, message in enumerate(messages):
        _typed(message, f"#/messages/{index}", dict, "JSONObject")
        _enum(message.get("role"), f"#/messages/{index}/role", roles)
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


# ---------------------------------------------------------------- text families

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


# Content block types of the Messages API; image and document only for models that accept them.
_ANTHROPIC_BLOCK_TYPES = ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")
ANTHROPIC_VERSION = "bedrock-2023-05-31"


def invoke_anthropic(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Anthropic Messages API (InvokeModel type), checked as the "Anthropic Claude Messages API" page documents it:
    the Bedrock ``anthropic_version``, ``max_tokens`` up to the model's ceiling, temperature and top_p in 0-1,
    top_k in 0-500, turns from the user first and then alternating, typed content blocks."""
    _enum(_require(model_input, "anthropic_version", str, "String"), "#/anthropic_version", (ANTHROPIC_VERSION,))
    _max_tokens(model_input, "max_tokens", required=True)
    _anthropic_ceiling(model_id, model_input["max_tokens"])
    _no_extra_keys(model_input, _ANTHROPIC_KEYS)
    for key, high in (("temperature", 1), ("top_p", 1), ("top_k", 500)):
        _in_range(model_input, key, "#", 0, high)
    system = _optional_typed(model_input, "system", (str, list), "String or JSONArray")
    for number, block in enumerate(system if isinstance(system, list) else []):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise RecordError(f"system.{number}: a system block is {{'type': 'text', 'text': <string>}}")
    messages = _messages(model_input)
    _anthropic_turns(model_id, messages)
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


def _anthropic_ceiling(model_id: str, max_tokens: int) -> None:
    model = batch_model(model_id)
    if model is not None and model.max_output_tokens is not None and max_tokens > model.max_output_tokens:
        raise RecordError(
            f"max_tokens: {max_tokens} > {model.max_output_tokens}, which is the maximum allowed number of output "
            f"tokens for {model.prefix.removeprefix('anthropic.')}"
        )


def _anthropic_turns(model_id: str, messages: list[dict[str, Any]]) -> None:
    """The Messages API's turn order and content blocks, in Anthropic's error wording."""
    if messages[0]["role"] != "user":
        raise RecordError('messages: first message must use the "user" role')
    for previous, message in itertools.pairwise(messages):
        if previous["role"] == message["role"]:
            raise RecordError(
                f'messages: roles must alternate between "user" and "assistant", but found multiple '
                f'"{message["role"]}" roles in a row'
            )
    expected = ", ".join(f"'{kind}'" for kind in _ANTHROPIC_BLOCK_TYPES)
    for index, message in enumerate(messages):
        if isinstance(message["content"], str):
            continue
        for number, block in enumerate(message["content"]):
            where = f"messages.{index}.content.{number}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _ANTHROPIC_BLOCK_TYPES:
                raise RecordError(
                    f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                    f"{expected}"
                )
            if kind == "text" and not isinstance(block.get("text"), str):
                raise RecordError(f"{where}.text: Field required")
            if kind in ("image", "document"):
                _media_allowed(model_id, kind, f"#/messages/{index}/content/{number}")


# Content block kinds of Converse / Nova messages (one key per block).
_BLOCK_KINDS = ("text", "image", "video", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint")
_NOVA_INFERENCE_KEYS = ("maxTokens", "max_new_tokens", "temperature", "topP", "top_p", "topK", "top_k", "stopSequences")
_CONVERSE_INFERENCE_KEYS = ("maxTokens", "temperature", "topP", "stopSequences")
_CONVERSE_KEYS = (
    "messages",
    "system",
    "inferenceConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "outputConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
)


def _check_blocks(model_id: str, model_input: dict[str, Any], block_kinds: tuple[str, ...]) -> None:
    """Converse-style content: every message's content and the system prompt are lists of one-key blocks; image and
    document blocks only for a model that accepts them; turns from the user first, then alternating."""
    _alternating(model_input["messages"])
    for index, message in enumerate(model_input["messages"]):
        content = _typed(message["content"], f"#/messages/{index}/content", list, "JSONArray")
        _no_extra_keys(message, ("role", "content"), f"#/messages/{index}")
        for number, block in enumerate(content):
            where = f"#/messages/{index}/content/{number}"
            _no_extra_keys(_typed(block, where, dict, "JSONObject"), block_kinds, where)
            if "text" in block:
                _typed(block["text"], f"{where}/text", str, "String")
            for kind in ("image", "document"):
                if kind in block:
                    _media_allowed(model_id, kind, where)
    if "system" in model_input:
        for number, block in enumerate(_require(model_input, "system", list, "JSONArray")):
            where = f"#/system/{number}"
            _no_extra_keys(_typed(block, where, dict, "JSONObject"), ("text", "guardContent", "cachePoint"), where)


def _check_inference_config(model_id: str, model_input: dict[str, Any], keys: tuple[str, ...]) -> None:
    """``inferenceConfig``: the number of tokens from 1 up to the model's ceiling, temperature and topP in 0-1 (the
    ranges of botocore's ``InferenceConfiguration``, which Nova's schema shares), topK >= 0."""
    config = _optional_typed(model_input, "inferenceConfig", dict, "JSONObject")
    if config is None:
        return
    _no_extra_keys(config, keys, "#/inferenceConfig")
    for key in ("maxTokens", "max_new_tokens", "topK", "top_k"):
        if key in config:
            _typed(config[key], f"#/inferenceConfig/{key}", int, "Integer")
    for key in ("maxTokens", "max_new_tokens"):
        _in_range(config, key, "#/inferenceConfig", 1, None)
        _output_ceiling(model_id, config, key, "#/inferenceConfig")
    for key in ("temperature", "topP", "top_p"):
        _in_range(config, key, "#/inferenceConfig", 0, 1)
    for key in ("topK", "top_k"):
        _in_range(config, key, "#/inferenceConfig", 0, None)


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
    """Amazon Nova text (``schemaVersion`` ``messages-v1``); inferenceConfig in camelCase or the first docs' names."""
    _no_extra_keys(model_input, ("schemaVersion", "system", "messages", "inferenceConfig", "toolConfig"))
    if "schemaVersion" in model_input:
        _enum(model_input["schemaVersion"], "#/schemaVersion", ("messages-v1",))
    _messages(model_input)
    _check_blocks(model_id, model_input, tuple(kind for kind in _BLOCK_KINDS if kind != "document"))
    _check_inference_config(model_id, model_input, _NOVA_INFERENCE_KEYS)
    return Invocation(*_converse_like(model_input))


@functools.cache
def _converse_enum(shape: str) -> tuple[str, ...]:
    return tuple(service_model("bedrock-runtime").shape_for(shape).enum)


# Bedrock API reference, "Message" (content): up to 20 images of at most 3.75 MB each and up to five documents of at
# most 4.5 MB each; "MB" read as the smaller, decimal value (the stricter reading).
MEDIA_LIMITS = {"image": (20, 3_750_000), "document": (5, 4_500_000)}


def _converse_media(model_input: dict[str, Any]) -> None:
    """The image and document blocks of a Converse record as the Converse request body has them (botocore
    ``ImageBlock``: ``format`` and ``source`` required; ``DocumentBlock``: ``name`` and ``source``; a ``source`` is a
    union of one member), their ``bytes`` as JSON carries a blob: base64 text of at least one byte (the stricter
    reading: anything that is not valid base64 is refused, not decoded leniently), within ``MEDIA_LIMITS`` per
    message."""
    for index, message in enumerate(model_input["messages"]):
        counts = dict.fromkeys(MEDIA_LIMITS, 0)
        for number, block in enumerate(message["content"]):
            for kind, required, enum in (("image", "format", "ImageFormat"), ("document", "name", "DocumentFormat")):
                if kind not in block:
                    continue
                most, largest = MEDIA_LIMITS[kind]
                counts[kind] += 1
                if counts[kind] > most:
                    raise _malformed(f"#/messages/{index}/content: more than {most} {kind} blocks in one message")
                where = f"#/messages/{index}/content/{number}/{kind}"
                media = _typed(block[kind], where, dict, "JSONObject")
                _required_at(media, where, required, str, "String")
                if "format" in media:
                    _enum(media["format"], f"{where}/format", _converse_enum(enum))
                source = _required_at(media, where, "source", dict, "JSONObject")
                if len(source) != 1:
                    raise _malformed(f"{where}/source: expected exactly one member, found: {len(source)}")
                if "bytes" in source:
                    data = _typed(source["bytes"], f"{where}/source/bytes", str, "String")
                    try:
                        decoded = base64.b64decode(data, validate=True)
                    except (binascii.Error, ValueError):
                        raise _malformed(f"{where}/source/bytes: expected base64 text") from None
                    if not decoded:
                        raise _malformed(f"{where}/source/bytes: expected minimum length: 1, actual: 0")
                    if len(decoded) > largest:
                        raise _malformed(
                            f"{where}/source/bytes: {len(decoded):,} bytes, over the {largest:,} a {kind} takes"
                        )


def invoke_converse(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Jobs of ``modelInvocationType`` ``Converse``: the Converse request body in, a Converse response out.

    Batch Converse jobs do not support tool use: a record with ``toolConfig`` fails with a 400.
    """
    if "toolConfig" in model_input:
        raise RecordError("Batch inference doesn't support tool calling for jobs that use the Converse invocation type")
    _no_extra_keys(model_input, _CONVERSE_KEYS)
    _messages(model_input)
    _check_blocks(model_id, model_input, _BLOCK_KINDS)
    _converse_media(model_input)
    _check_inference_config(model_id, model_input, _CONVERSE_INFERENCE_KEYS)
    output, input_tokens, output_tokens = _converse_like(model_input)
    return Invocation({**output, "metrics": {"latencyMs": 1}}, input_tokens, output_tokens)


# The user turn of a chat-template prompt, by template (Llama 3, Llama 4, Mistral [INST]); the last one is echoed.
_USER_TURNS = (
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.DOTALL),
    re.compile(r"<\|header_start\|>user<\|header_end\|>\n\n(.*?)<\|eot\|>", re.DOTALL),
    re.compile(r"\[INST\] ?(.*?) ?\[/INST\]", re.DOTALL),
)


def _prompt_echo(prompt: str) -> str:
    """The last user turn of a chat-template prompt, or the whole prompt when it follows no known template."""
    for pattern in _USER_TURNS:
        turns = pattern.findall(prompt)
        if turns:
            return str(turns[-1])
    return prompt


def invoke_llama(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Meta Llama: ``prompt`` in, ``generation`` (the prompt's user turn echoed) out. "Meta Llama models":
    max_gen_len 1-2048, temperature and top_p 0-1; ``images`` only for the vision models."""
    prompt = _require(model_input, "prompt", str, "String")
    _no_extra_keys(model_input, ("prompt", "max_gen_len", "temperature", "top_p", "images"))
    _max_tokens(model_input, "max_gen_len", required=False)
    _output_ceiling(model_id, model_input, "max_gen_len", "#")
    for key in ("temperature", "top_p"):
        _in_range(model_input, key, "#", 0, 1)
    if "images" in model_input:
        _media_allowed(model_id, "images", "#/images")
    echo = _prompt_echo(prompt)
    input_tokens, output_tokens = max(1, estimate_tokens(prompt)), estimate_tokens(echo)
    output = {
        "generation": echo,
        "prompt_token_count": input_tokens,
        "generation_token_count": output_tokens,
        "stop_reason": "stop",
    }
    return Invocation(output, input_tokens, output_tokens)


def invoke_mistral_text(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Mistral AI text completion: ``prompt`` (``<s>[INST] ... [/INST]``) in, ``outputs[0].text`` out. "Mistral AI
    text completion": max_tokens up to the model's ceiling, temperature and top_p 0-1, top_k 1-200."""
    prompt = _require(model_input, "prompt", str, "String")
    _no_extra_keys(model_input, ("prompt", "max_tokens", "stop", "temperature", "top_p", "top_k"))
    _max_tokens(model_input, "max_tokens", required=False)
    _output_ceiling(model_id, model_input, "max_tokens", "#")
    for key, low, high in (("temperature", 0, 1), ("top_p", 0, 1), ("top_k", 1, 200)):
        _in_range(model_input, key, "#", low, high)
    echo = _prompt_echo(prompt)
    input_tokens, output_tokens = max(1, estimate_tokens(prompt)), estimate_tokens(echo)
    return Invocation({"outputs": [{"text": echo, "stop_reason": "stop"}]}, input_tokens, output_tokens)


def invoke_mistral_chat(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Mistral AI chat completion (Large 2): ``messages`` with string content in, ``choices[0].message`` out."""
    _no_extra_keys(model_input, ("messages", "max_tokens", "temperature", "top_p", "tools", "tool_choice"))
    messages = _messages(model_input, roles=("system", "user", "assistant", "tool"))
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            _typed(message["content"], f"#/messages/{index}/content", str, "String")
    _max_tokens(model_input, "max_tokens", required=False)
    _output_ceiling(model_id, model_input, "max_tokens", "#")
    for key in ("temperature", "top_p"):
        _in_range(model_input, key, "#", 0, 1)
    echo = _last_user_text(messages)
    input_tokens, output_tokens = _prompt_tokens(messages, None), estimate_tokens(echo)
    output = {
        "id": hashlib.sha256(echo.encode()).hexdigest()[:32],
        "object": "chat.completion",
        "model": base_model_id(model_id),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": echo}, "stop_reason": "stop"}],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }
    return Invocation(output, input_tokens, output_tokens)


# ---------------------------------------------------------------- embedding families


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
    if len(text) > TITAN_V2_MAX_CHARS:
        raise _malformed(f"#/inputText: expected maxLength: {TITAN_V2_MAX_CHARS}, actual: {len(text)}")
    dimensions = _typed(model_input.get("dimensions", 1024), "#/dimensions", int, "Integer")
    _enum(dimensions, "#/dimensions", EMBEDDING_DIMENSIONS)
    normalize = _typed(model_input.get("normalize", True), "#/normalize", bool, "Boolean")
    _no_extra_keys(model_input, ("inputText", "dimensions", "normalize", "embeddingTypes"))
    tokens = max(1, estimate_tokens(text))
    vector = embed(text, dimensions, normalize)
    output = {"embedding": vector, "inputTextTokenCount": tokens, "embeddingsByType": {"float": vector}}
    return Invocation(output, tokens, 0)


def invoke_titan_embed_image(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Amazon Titan Multimodal Embeddings G1: ``inputText`` and/or ``inputImage`` (+ ``embeddingConfig``) in,
    ``embedding`` out. An image is embedded from its base64 text (the emulator sees no pixels)."""
    _no_extra_keys(model_input, ("inputText", "inputImage", "embeddingConfig"))
    text = _optional_typed(model_input, "inputText", str, "String")
    image = _optional_typed(model_input, "inputImage", str, "String")
    if not text and not image:
        raise _malformed("#: at least one of [inputText, inputImage] is required")
    length = 1024
    config = _optional_typed(model_input, "embeddingConfig", dict, "JSONObject")
    if config is not None:
        _no_extra_keys(config, ("outputEmbeddingLength",), "#/embeddingConfig")
        where = "#/embeddingConfig/outputEmbeddingLength"
        length = _typed(config.get("outputEmbeddingLength", 1024), where, int, "Integer")
        _enum(length, where, MULTIMODAL_EMBEDDING_LENGTHS)
    tokens = estimate_tokens(text or "")
    vector = embed(text if image is None else f"{text or ''}\0{image}", length)
    return Invocation({"embedding": vector, "inputTextTokenCount": tokens}, tokens, 0)


def _quantized(vector: list[float], kind: str) -> list[float] | list[int]:
    """Cohere's non-float embedding types, derived deterministically from the float vector."""
    if kind == "float":
        return vector
    if kind in ("int8", "uint8"):
        signed = [max(-128, min(127, round(x * 127 * math.sqrt(len(vector))))) for x in vector]
        return signed if kind == "int8" else [x + 128 for x in signed]
    packed = [sum(1 << (7 - bit) for bit in range(8) if vector[start + bit] > 0) for start in range(0, len(vector), 8)]
    return [x - 128 for x in packed] if kind == "binary" else packed


def invoke_cohere_embed(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Cohere Embed v3: ``texts`` + ``input_type`` in; ``embeddings`` (a list of vectors) out, or, when
    ``embedding_types`` is given, ``embeddings`` by type."""
    _no_extra_keys(model_input, ("texts", "images", "input_type", "truncate", "embedding_types"))
    _enum(_require(model_input, "input_type", str, "String"), "#/input_type", COHERE_INPUT_TYPES)
    if "truncate" in model_input:
        _enum(model_input["truncate"], "#/truncate", ("NONE", "START", "END"))
    if "images" in model_input:
        raise _malformed("#: only text input is emulated; give 'texts'")
    texts = _require(model_input, "texts", list, "JSONArray")
    if len(texts) > COHERE_MAX_TEXTS:
        raise _malformed(f"#/texts: expected maximum item count: {COHERE_MAX_TEXTS}, found: {len(texts)}")
    for index, text in enumerate(texts):
        if len(_typed(text, f"#/texts/{index}", str, "String")) > COHERE_MAX_CHARS:
            raise _malformed(f"#/texts/{index}: expected maxLength: {COHERE_MAX_CHARS}, actual: {len(text)}")
    vectors = [embed(text, COHERE_DIMENSIONS) for text in texts]
    output: dict[str, Any] = {"id": hashlib.sha256("\0".join(texts).encode()).hexdigest()[:36], "texts": texts}
    kinds = _optional_typed(model_input, "embedding_types", list, "JSONArray")
    if kinds is None:
        output |= {"embeddings": vectors, "response_type": "embeddings_floats"}
    else:
        for index, kind in enumerate(kinds):
            _enum(kind, f"#/embedding_types/{index}", COHERE_EMBEDDING_TYPES)
        by_type = {kind: [_quantized(vector, kind) for vector in vectors] for kind in kinds}
        output |= {"embeddings": by_type, "response_type": "embeddings_by_type"}
    tokens = max(1, sum(estimate_tokens(text) for text in texts))
    return Invocation(output, tokens, 0)


def invoke_nova_mme(model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Amazon Nova Multimodal Embeddings, synchronous: ``taskType`` ``SINGLE_EMBEDDING`` and
    ``singleEmbeddingParams`` (``embeddingPurpose``, ``embeddingDimension``, one of ``text`` / ``image`` / ``audio`` /
    ``video``) in; ``embeddings`` (one ``{"embeddingType": "TEXT", "embedding"}``) out. Only text with an inline
    ``value`` is emulated. Stricter than the page where it is silent: ``embeddingDimension`` and
    ``text.truncationMode`` are required, and a text over the model's 8K tokens with ``truncationMode`` NONE is
    refused (START / END cut it, as their names say)."""
    _no_extra_keys(model_input, ("schemaVersion", "taskType", "singleEmbeddingParams"))
    if "schemaVersion" in model_input:
        _enum(model_input["schemaVersion"], "#/schemaVersion", (NOVA_MME_SCHEMA_VERSION,))
    _enum(_require(model_input, "taskType", str, "String"), "#/taskType", ("SINGLE_EMBEDDING",))
    params = _require(model_input, "singleEmbeddingParams", dict, "JSONObject")
    where = "#/singleEmbeddingParams"
    _no_extra_keys(params, ("embeddingPurpose", "embeddingDimension", "text", "image", "audio", "video"), where)
    purpose = _required_at(params, where, "embeddingPurpose", str, "String")
    _enum(purpose, f"{where}/embeddingPurpose", NOVA_MME_PURPOSES)
    dimension = _required_at(params, where, "embeddingDimension", int, "Integer")
    _enum(dimension, f"{where}/embeddingDimension", NOVA_MME_DIMENSIONS)
    given = [kind for kind in ("text", "image", "audio", "video") if kind in params]
    if len(given) != 1:
        raise _malformed(f"{where}: exactly one of [text, image, audio, video] is required, found {given}")
    if given != ["text"]:
        raise _malformed(f"{where}: only text input is emulated; give 'text'")
    text = _typed(params["text"], f"{where}/text", dict, "JSONObject")
    _no_extra_keys(text, ("truncationMode", "value", "source"), f"{where}/text")
    mode = _required_at(text, f"{where}/text", "truncationMode", str, "String")
    _enum(mode, f"{where}/text/truncationMode", NOVA_MME_TRUNCATION)
    if "source" in text:
        raise _malformed(f"{where}/text: only an inline 'value' is emulated; give 'value'")
    value = _required_at(text, f"{where}/text", "value", str, "String")
    if not value.strip():
        raise _malformed(f"{where}/text/value: expected minLength: 1, actual: 0")
    words = value.split()
    if len(words) > NOVA_MME_MAX_TOKENS:
        if mode == "NONE":
            raise _malformed(
                f"{where}/text/value: {len(words)} tokens is over the model's {NOVA_MME_MAX_TOKENS}; shorten it or "
                "set truncationMode START or END"
            )
        words = words[-NOVA_MME_MAX_TOKENS:] if mode == "START" else words[:NOVA_MME_MAX_TOKENS]
    vector = embed(" ".join(words), dimension)
    return Invocation({"embeddings": [{"embeddingType": "TEXT", "embedding": vector}]}, len(words), 0)


def _required_at(container: dict[str, Any], where: str, key: str, kind: type, kind_name: str) -> Any:
    """``container[key]`` of a nested object at ``where``, required and of ``kind``."""
    if key not in container:
        raise _malformed(f"{where}: required key [{key}] not found")
    return _typed(container[key], f"{where}/{key}", kind, kind_name)


# ---------------------------------------------------------------- registries

FAMILIES: dict[str, Invoke] = {
    "anthropic-messages": invoke_anthropic,
    "nova-messages": invoke_nova,
    "llama": invoke_llama,
    "mistral-text": invoke_mistral_text,
    "mistral-chat": invoke_mistral_chat,
    "titan-embed-text-v2": invoke_titan_embed_v2,
    "titan-embed-image-v1": invoke_titan_embed_image,
    "cohere-embed": invoke_cohere_embed,
    "nova-multimodal-embed": invoke_nova_mme,
    "converse": invoke_converse,
}

# Base model id prefix -> family (longest prefix wins).
MODEL_ID_PREFIXES: dict[str, str] = {
    "anthropic.claude": "anthropic-messages",
    "amazon.nova": "nova-messages",
    "meta.llama": "llama",
    "mistral.mistral-7b-instruct": "mistral-text",
    "mistral.mixtral-8x7b-instruct": "mistral-text",
    "mistral.mistral-small-2402": "mistral-text",
    "mistral.mistral-large-2402": "mistral-text",
    "mistral.mistral-large-2407": "mistral-chat",
    "amazon.titan-embed-text-v2": "titan-embed-text-v2",
    "amazon.titan-embed-image-v1": "titan-embed-image-v1",
    "cohere.embed-english-v3": "cohere-embed",
    "cohere.embed-multilingual-v3": "cohere-embed",
    "amazon.nova-2-multimodal-embeddings": "nova-multimodal-embed",
}

# For ids that name no model (custom models, application inference profiles): telltale modelInput keys -> family.
# The first line whose keys are all present wins, so the more specific lines come first.
SHAPE_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("anthropic_version",), "anthropic-messages"),
    (("texts",), "cohere-embed"),
    (("singleEmbeddingParams",), "nova-multimodal-embed"),
    (("embeddingConfig",), "titan-embed-image-v1"),
    (("inputImage",), "titan-embed-image-v1"),
    (("inputText",), "titan-embed-text-v2"),
    (("prompt", "max_tokens"), "mistral-text"),
    (("prompt",), "llama"),
    (("messages", "max_tokens"), "mistral-chat"),
    (("messages",), "nova-messages"),
)

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
    for keys, family in SHAPE_KEYS:
        if all(key in model_input for key in keys):
            return family
    raise RecordError("The emulator cannot tell this model's request format from the modelInput keys")


def invoke(family: str | None, model_id: str, model_input: dict[str, Any]) -> Invocation:
    """Answer one record; ``family`` None means: decide from the input's shape."""
    return FAMILIES[family or family_for_input(model_input)](model_id, model_input)
