"""One registry of model families: how to build a batch ``modelInput`` and read a ``modelOutput``.

A model id is resolved to a family by the registry below, never with ``if "anthropic" in model_id``. Accepted ids:
foundation-model ids (``anthropic.claude-3-haiku-20240307-v1:0``), system inference-profile ids
(``us.anthropic...``, ``eu.``, ``apac.``, ``global.``...), and ARNs of either.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

OutputKind = Literal["text", "embedding"]

# Geographic prefixes of system-defined cross-region inference profiles.
PROFILE_PREFIXES = ("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global")
_ARN = re.compile(r"^arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]*:\d{0,12}:(?P<kind>[a-z-]+)/(?P<id>.+)$")
_PROFILE = re.compile(rf"^(?P<geo>{'|'.join(re.escape(p) for p in PROFILE_PREFIXES)})\.(?P<base>[a-z0-9-]+\..+)$")


class UnknownModelError(ValueError):
    """The model id belongs to no family this project knows how to format."""


@dataclass(frozen=True)
class InferenceSettings:
    """Per-run inference parameters, already validated (see ``lambdas.shared.models.InferenceParams``)."""

    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    system: str | None = None


@dataclass(frozen=True)
class ModelRef:
    """A model id taken apart: what the user gave, the underlying foundation-model id, and the profile prefix."""

    model_id: str
    base_model_id: str
    profile_geo: str | None  # "us", "eu", ... for system inference profiles

    @classmethod
    def parse(cls, model_id: str) -> ModelRef:
        ident = model_id.strip()
        arn = _ARN.match(ident)
        if arn:
            if arn.group("kind") not in ("foundation-model", "inference-profile"):
                raise UnknownModelError(
                    f"model_id '{model_id}' is a {arn.group('kind')} ARN whose model family cannot be read from it; "
                    "pass the foundation-model id or the system inference-profile id instead"
                )
            ident = arn.group("id")
        profile = _PROFILE.match(ident)
        if profile:
            return cls(model_id=model_id, base_model_id=profile.group("base"), profile_geo=profile.group("geo"))
        return cls(model_id=model_id, base_model_id=ident, profile_geo=None)


class ModelAdapter(Protocol):
    family: ClassVar[str]
    output_kind: ClassVar[OutputKind]

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]: ...

    def parse_model_output(self, model_output: dict[str, Any]) -> Any: ...


class AnthropicMessages:
    """Anthropic Claude 3+ Messages API (InvokeModel type)."""

    family: ClassVar[str] = "anthropic"
    output_kind: ClassVar[OutputKind] = "text"

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        body: dict[str, Any] = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": settings.max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        }
        if settings.system:
            body["system"] = settings.system
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        return body

    def parse_model_output(self, model_output: dict[str, Any]) -> str:
        content = model_output.get("content")
        if not isinstance(content, list):
            raise ValueError("modelOutput has no 'content' list")
        return "".join(block.get("text", "") for block in content if block.get("type") == "text")


class TitanTextEmbeddingsV2:
    """Amazon Titan Text Embeddings V2: ``{"inputText"}`` in, ``{"embedding"}`` out (1,024 dimensions by default)."""

    family: ClassVar[str] = "titan-embed-text-v2"
    output_kind: ClassVar[OutputKind] = "embedding"

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return {"inputText": text}

    def parse_model_output(self, model_output: dict[str, Any]) -> list[float]:
        embedding = model_output.get("embedding")
        if not isinstance(embedding, list) or not embedding:
            raise ValueError("modelOutput has no 'embedding' list")
        return [float(x) for x in embedding]


ADAPTERS: dict[str, type[ModelAdapter]] = {
    AnthropicMessages.family: AnthropicMessages,
    TitanTextEmbeddingsV2.family: TitanTextEmbeddingsV2,
}

# Foundation-model id prefixes -> family. Longest prefix wins; add a line to onboard a model id pattern.
MODEL_ID_PREFIXES: dict[str, str] = {
    "anthropic.claude-3": "anthropic",
    "anthropic.claude-sonnet-4": "anthropic",
    "anthropic.claude-opus-4": "anthropic",
    "anthropic.claude-haiku-4": "anthropic",
    "amazon.titan-embed-text-v2": "titan-embed-text-v2",
}


@dataclass(frozen=True)
class ResolvedModel:
    ref: ModelRef
    family: str
    adapter: ModelAdapter

    @property
    def output_kind(self) -> OutputKind:
        return self.adapter.output_kind


def family_of(model_id: str) -> str:
    ref = ModelRef.parse(model_id)
    matches = [prefix for prefix in MODEL_ID_PREFIXES if ref.base_model_id.startswith(prefix)]
    if not matches:
        close = difflib.get_close_matches(ref.base_model_id, list(MODEL_ID_PREFIXES), n=1, cutoff=0.4)
        hint = f" (closest known: '{close[0]}...')" if close else ""
        raise UnknownModelError(
            f"model_id '{model_id}' belongs to no supported model family{hint}; supported id prefixes: "
            f"{sorted(MODEL_ID_PREFIXES)}; use one of those or add the family to lambdas/shared/model_families.py"
        )
    return MODEL_ID_PREFIXES[max(matches, key=len)]


def resolve(model_id: str) -> ResolvedModel:
    """Resolve a model id to its adapter, or raise UnknownModelError with the fix."""
    family = family_of(model_id)
    return ResolvedModel(ref=ModelRef.parse(model_id), family=family, adapter=ADAPTERS[family]())


def adapter_for_family(family: str) -> ModelAdapter:
    try:
        return ADAPTERS[family]()
    except KeyError:
        raise UnknownModelError(f"model family '{family}' is unknown; known: {sorted(ADAPTERS)}") from None
