"""Checks a gateway answer against OpenAI's published shapes: the pinned ``openai`` package's pydantic types, in strict
mode, plus what they leave out.

- ``model_validate(strict=True)``: every field the type declares has the declared type (no coercion: ``"1"`` is no
  integer), every ``Literal`` holds one of its values, every field without a default is present;
- ``REQUIRED``: keys OpenAI's OpenAPI specification requires but the package types default to None (so a missing one
  would pass the types alone). From ``openapi.json`` of https://github.com/openai/openai-openapi at commit
  f85dbe223d40e1a31cba812ab2d755c7e98a92a3 (spec version 2.3.0): ``CreateChatCompletionResponse``
  ``choices[].{finish_reason, index, message, logprobs}``, ``message.{role, content, refusal}``;
  ``CreateChatCompletionStreamResponse`` ``choices[].{delta, finish_reason, index}``; ``Error`` ``{type, message,
  param, code}``;
- extra keys (the types accept any): only the gateway's documented extensions (``EXTENSIONS``, by type) pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject
from pydantic import BaseModel

REQUIRED: dict[str, tuple[str, ...]] = {
    "ChatCompletion.Choice": ("finish_reason", "index", "message", "logprobs"),
    "ChatCompletion.ChatCompletionMessage": ("role", "content", "refusal"),
    "ChatCompletionChunk.Choice": ("delta", "finish_reason", "index"),
    "ErrorObject": ("type", "message", "param", "code"),
}
# type name -> extra keys the gateway adds on purpose (docs/gateway/openai.md)
EXTENSIONS: dict[str, frozenset[str]] = {
    "ChatCompletion": frozenset({"bedrock"}),
    "ChatCompletionChunk": frozenset({"bedrock"}),
    "ChatCompletionMessage": frozenset({"reasoning_content", "thinking_blocks"}),
    "ChoiceDelta": frozenset({"reasoning_content", "thinking_blocks"}),
    "Model": frozenset({"modality", "model_id"}),
}


def _models(value: Any, path: str) -> Iterator[tuple[str, BaseModel]]:
    if isinstance(value, BaseModel):
        yield path, value
        for name in type(value).model_fields:
            yield from _models(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _models(item, f"{path}[{index}]")


def _raw_at(data: Any, path: str) -> Any:
    """The raw JSON value at a dotted path such as ``$.choices[0].message``."""
    value = data
    for part in path.removeprefix("$").replace("[", ".[").split("."):
        if not part:
            continue
        value = value[int(part[1:-1])] if part.startswith("[") else value[part]
    return value


def check(kind: type[BaseModel], data: Mapping[str, Any]) -> BaseModel:
    """``data`` as ``kind`` (ChatCompletion, ChatCompletionChunk, Model, ErrorObject), or AssertionError naming the
    first problem."""
    parsed = kind.model_validate(data, strict=True)
    for path, model in _models(parsed, "$"):
        name = type(model).__name__
        qualified = f"{kind.__name__}.{name}" if name != kind.__name__ else name
        raw = _raw_at(data, path)
        for key in REQUIRED.get(qualified, REQUIRED.get(name, ())):
            assert key in raw, f"{path}: '{key}' is required by OpenAI's specification"
        extra = set(model.model_extra or {}) - EXTENSIONS.get(name, frozenset())
        assert not extra, f"{path}: keys {sorted(extra)} are not in OpenAI's {name}"
    return parsed


def check_error(body: Mapping[str, Any]) -> ErrorObject:
    """An error body ``{"error": {type, message, param, code}}`` (OpenAI's ``ErrorResponse``)."""
    assert set(body) == {"error"}, f"an error body holds 'error' only, not {sorted(body)}"
    checked = check(ErrorObject, body["error"])
    assert isinstance(checked, ErrorObject)
    return checked


def check_models(body: Mapping[str, Any]) -> None:
    """``/v1/models``: ``{"object": "list", "data": [Model...]}`` (OpenAI's ``ListModelsResponse``)."""
    assert body.get("object") == "list" and set(body) == {"object", "data"}
    for model in body["data"]:
        check(Model, model)


__all__ = ["ChatCompletion", "ChatCompletionChunk", "check", "check_error", "check_models"]
