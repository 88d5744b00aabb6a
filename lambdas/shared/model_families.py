"""One registry of model families: how to build a batch ``modelInput``, read a ``modelOutput``, and which inference
parameters a family takes.

A model id is resolved to a family by the registry below, never with ``if "anthropic" in model_id``. Accepted ids:
foundation-model ids (``anthropic.claude-3-haiku-20240307-v1:0``), system inference-profile ids
(``us.anthropic...``, ``eu.``, ``apac.``, ``global.``...), and ARNs of either, of a model that runs batch inference
(``BATCH_MODEL_PREFIXES``; the others serve the gateway only). Any other ARN (application inference
profile, custom model) names no model in its text: the execution input's ``model_family`` then says which family to
use, and overrides the lookup for any id.

Formats (Bedrock docs, by page title):

=====================  ===================================================  =========================================
family                 ``modelInput``                                       read from ``modelOutput``
=====================  ===================================================  =========================================
anthropic              Anthropic Claude Messages API                        ``content[*].text`` (may be empty)
nova                   Amazon Nova "Complete request schema": messages-v1,  ``output.message.content[*].text``
                       ``inferenceConfig`` {maxTokens, temperature, topP,
                       topK} (the first Nova docs spelled max_new_tokens)
llama3 / llama4        Meta Llama models: ``prompt`` (the model's chat      ``generation``
                       template), ``max_gen_len``, temperature, top_p
mistral-text           Mistral AI text completion (Small/Large 24.02):      ``outputs[0].text``
                       ``<s>[INST] ... [/INST]`` prompt, max_tokens, top_k
mistral-chat           Mistral AI chat completion (Large 2, 24.07):         ``choices[0].message.content``
                       ``messages`` with string content, max_tokens
converse               Converse request (job ``modelInvocationType``        ``output.message.content[*].text``
                       ``Converse``): messages, system, inferenceConfig
                       {maxTokens, temperature, topP}; any text model
titan-embed-text-v2    Titan Text Embeddings V2: inputText, dimensions      ``embedding``
                       (256/512/1024), normalize
titan-embed-image-v1   Titan Multimodal Embeddings G1: inputText,           ``embedding``
                       embeddingConfig.outputEmbeddingLength (256/384/1024)
cohere-embed           Cohere Embed v3: texts, input_type                   ``embeddings[0]`` or ``embeddings.float[0]``
nova-multimodal-embed  Amazon Nova Multimodal Embeddings ("Complete         ``embeddings[0].embedding``
                       embeddings request and response schema"):
                       taskType SINGLE_EMBEDDING, singleEmbeddingParams
                       {embeddingPurpose, embeddingDimension (256/384/
                       1024/3072), text {truncationMode NONE, value}}
=====================  ===================================================  =========================================

This module imports the standard library only: ``stacks/`` imports ``PROFILE_PREFIXES`` from it at synth time.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

OutputKind = Literal["text", "embedding"]
InvocationType = Literal["InvokeModel", "Converse"]

# Geographic prefixes of system-defined cross-region inference profiles (also used by stacks/ for IAM).
PROFILE_PREFIXES = ("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global")
# ARN resource types whose resource id is a model id (foundation model or system inference profile).
READABLE_ARN_KINDS = ("foundation-model", "inference-profile")
# ARN resource types that name a resource of an account (not one of AWS's foundation models): a bot file may leave
# their account empty for "the deploying account" (the gateway fills it in from GATEWAY_ACCOUNT_ID, IAM from the
# stack's account).
ACCOUNT_RESOURCE_ARN_KINDS = (
    "default-prompt-router",
    "prompt-router",
    "application-inference-profile",
    "inference-profile",
)
_ARN = re.compile(r"^arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]*:\d{0,12}:(?P<kind>[a-z-]+)/(?P<id>.+)$")
_PROFILE = re.compile(rf"^(?P<geo>{'|'.join(re.escape(p) for p in PROFILE_PREFIXES)})\.(?P<base>[a-z0-9-]+\..+)$")


class ModelFamilyError(ValueError):
    """A model id, family, invocation type or parameter the registry cannot serve; ``field`` names the input field."""

    def __init__(self, message: str, *, field: str = "model_id") -> None:
        super().__init__(message)
        self.field = field

    def describe(self) -> str:
        """The message prefixed with the execution-input field, as InputValidationError shows it."""
        return f"field '{self.field}': {self}"


class UnknownModelError(ModelFamilyError):
    """The model id belongs to no family this project knows how to format."""


class NoBatchInferenceError(ModelFamilyError):
    """The model id names a model that does not run batch inference jobs."""


class InvalidParameterError(ModelFamilyError):
    """An inference parameter the family does not take, or a value it does not accept."""


@dataclass(frozen=True)
class InferenceSettings:
    """Per-run inference parameters, already validated (see ``lambdas.shared.models.InferenceParams``).

    None means "not set": the adapter leaves the key out and the model uses its default.
    """

    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    system: str | None = None
    dimensions: int | None = None  # embedding length (Titan embeddings)
    normalize: bool | None = None  # Titan Text Embeddings V2
    input_type: str | None = None  # Cohere Embed
    embedding_purpose: str | None = None  # Amazon Nova Multimodal Embeddings (GENERIC_INDEX when None)

    def changed(self) -> dict[str, Any]:
        """The settings that differ from their defaults, i.e. the ones a run asked for."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class ModelRef:
    """A model id taken apart: what the user gave, the underlying foundation-model id, the profile prefix and, for
    an ARN, its resource type."""

    model_id: str
    base_model_id: str
    profile_geo: str | None  # "us", "eu", ... for system inference profiles
    arn_kind: str | None = None  # "foundation-model", "inference-profile", "application-inference-profile", ...

    @property
    def resource_id(self) -> str:
        """The id without its ARN: ``us.anthropic.claude-...`` for a profile, the foundation-model id otherwise."""
        return f"{self.profile_geo}.{self.base_model_id}" if self.profile_geo else self.base_model_id

    @property
    def names_a_model(self) -> bool:
        """Whether the id's text says which model it is (not so for application profiles and custom models)."""
        return self.arn_kind is None or self.arn_kind in READABLE_ARN_KINDS

    @classmethod
    def parse(cls, model_id: str) -> ModelRef:
        ident, kind = model_id.strip(), None
        arn = _ARN.match(ident)
        if arn:
            ident, kind = arn.group("id"), arn.group("kind")
        profile = _PROFILE.match(ident)
        if profile and (kind is None or kind in READABLE_ARN_KINDS):
            return cls(model_id, base_model_id=profile.group("base"), profile_geo=profile.group("geo"), arn_kind=kind)
        return cls(model_id, base_model_id=ident, profile_geo=None, arn_kind=kind)


# ---------------------------------------------------------------- adapters


class ModelAdapter:
    """One request/response format. Subclasses set the class variables and the two methods.

    ``build_model_input`` ignores settings the family does not take; ``check_settings`` (run once per run, before
    any record is built) rejects them with the field, the value and the fix.
    """

    family: ClassVar[str]
    title: ClassVar[str]
    output_kind: ClassVar[OutputKind]
    parameters: ClassVar[frozenset[str]]  # the InferenceSettings fields this family takes
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}  # allowed values, by parameter
    maxima: ClassVar[dict[str, int]] = {}  # upper bounds stricter than InferenceParams', by parameter
    minima: ClassVar[dict[str, int]] = {}  # lower bounds stricter than InferenceParams', by parameter

    def check_settings(self, settings: InferenceSettings) -> None:
        for name, value in settings.changed().items():
            field = f"inference_params.{name}"
            if name not in self.parameters:
                takes = ", ".join(sorted(self.parameters)) or "none"
                raise InvalidParameterError(
                    f"{value!r} makes no sense for family '{self.family}' ({self.title}, {self.output_kind} output), "
                    f"which takes these inference_params: {takes}; remove '{name}'",
                    field=field,
                )
            allowed = self.choices.get(name)
            if allowed is not None and value not in allowed:
                raise InvalidParameterError(
                    f"{value!r} is not accepted by {self.title}; use one of {', '.join(map(repr, allowed))}",
                    field=field,
                )
            maximum = self.maxima.get(name)
            if maximum is not None and value > maximum:
                raise InvalidParameterError(
                    f"{value!r} is over {self.title}'s maximum of {maximum}; use at most {maximum}", field=field
                )
            minimum = self.minima.get(name)
            if minimum is not None and value < minimum:
                raise InvalidParameterError(
                    f"{value!r} is under {self.title}'s minimum of {minimum}; use at least {minimum}", field=field
                )

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        raise NotImplementedError

    def parse_model_output(self, model_output: dict[str, Any]) -> Any:
        raise NotImplementedError


class EmbeddingAdapter(ModelAdapter):
    """An embedding family, as the gateway calls it on demand: up to ``texts_per_call`` texts per InvokeModel body
    (``build_texts_input``), one vector per text in the answer, in order (``parse_vectors``); ``max_chars`` is the
    longest text the model takes (0: no documented limit)."""

    output_kind: ClassVar[OutputKind] = "embedding"
    texts_per_call: ClassVar[int] = 1
    max_chars: ClassVar[int] = 0

    def build_texts_input(self, texts: list[str], settings: InferenceSettings) -> dict[str, Any]:
        if len(texts) != self.texts_per_call:
            raise ValueError(f"{self.title} embeds {self.texts_per_call} text(s) per call, got {len(texts)}")
        return self.build_model_input(texts[0], settings)

    def parse_vectors(self, model_output: dict[str, Any]) -> list[list[float]]:
        return [self.parse_model_output(model_output)]


_CHAT_PARAMETERS = frozenset({"max_tokens", "temperature", "top_p", "system"})


def _optional(**values: Any) -> dict[str, Any]:
    """The keyword arguments whose value is set (not None)."""
    return {key: value for key, value in values.items() if value is not None}


def _block_texts(content: Any, where: str) -> str:
    """The text of a list of content blocks (``{"text": ...}``), other block kinds skipped."""
    if not isinstance(content, list):
        raise ValueError(f"modelOutput has no '{where}' list")
    return "".join(block["text"] for block in content if isinstance(block, dict) and isinstance(block.get("text"), str))


def _converse_text(model_output: dict[str, Any]) -> str:
    """``output.message.content[*].text`` of a Converse or Nova response."""
    output = model_output.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict):
        raise ValueError("modelOutput has no 'output.message' object")
    return _block_texts(message.get("content"), "output.message.content")


def _vector(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"modelOutput has no '{where}' list")
    return [float(x) for x in value]


class AnthropicMessages(ModelAdapter):
    """Anthropic Claude 3, 3.5, 3.7 and 4.x: the Messages API (InvokeModel type)."""

    family = "anthropic"
    title = "Anthropic Claude Messages API"
    output_kind = "text"
    parameters = _CHAT_PARAMETERS | {"top_k"}

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": settings.max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            **_optional(
                system=settings.system or None,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=settings.top_k,
            ),
        }

    def parse_model_output(self, model_output: dict[str, Any]) -> str:
        content = model_output.get("content")
        if not isinstance(content, list):
            raise ValueError("modelOutput has no 'content' list")
        return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def _messages_body(text: str, settings: InferenceSettings, *, top_k: int | None = None) -> dict[str, Any]:
    """The Converse request shape Nova's messages-v1 shares: one user turn, system blocks, inferenceConfig."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": text}]}]}
    if settings.system:
        body["system"] = [{"text": settings.system}]
    body["inferenceConfig"] = {
        "maxTokens": settings.max_tokens,
        **_optional(temperature=settings.temperature, topP=settings.top_p, topK=top_k),
    }
    return body


class NovaMessages(ModelAdapter):
    """Amazon Nova Micro, Lite, Pro, Premier: ``messages-v1`` with Invoke parameter names in ``inferenceConfig``."""

    family = "nova"
    title = "Amazon Nova (messages-v1)"
    output_kind = "text"
    parameters = _CHAT_PARAMETERS | {"top_k"}

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return {"schemaVersion": "messages-v1", **_messages_body(text, settings, top_k=settings.top_k)}

    def parse_model_output(self, model_output: dict[str, Any]) -> str:
        return _converse_text(model_output)


class Llama3Chat(ModelAdapter):
    """Meta Llama 3, 3.1, 3.2, 3.3 Instruct: one ``prompt`` in the Llama 3 chat template, system turn included."""

    family = "llama3"
    title = "Meta Llama 3.x Instruct"
    output_kind = "text"
    parameters = _CHAT_PARAMETERS
    maxima = {"max_tokens": 2048}  # max_gen_len
    BEGIN: ClassVar[str] = "<|begin_of_text|>"
    HEADER: ClassVar[str] = "<|start_header_id|>{role}<|end_header_id|>\n\n"
    END_OF_TURN: ClassVar[str] = "<|eot_id|>"

    def prompt(self, text: str, system: str | None) -> str:
        turns = [("system", system)] if system else []
        turns.append(("user", text))
        body = "".join(self.HEADER.format(role=role) + content + self.END_OF_TURN for role, content in turns)
        return self.BEGIN + body + self.HEADER.format(role="assistant")

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return {
            "prompt": self.prompt(text, settings.system),
            "max_gen_len": settings.max_tokens,
            **_optional(temperature=settings.temperature, top_p=settings.top_p),
        }

    def parse_model_output(self, model_output: dict[str, Any]) -> str:
        generation = model_output.get("generation")
        if not isinstance(generation, str):
            raise ValueError("modelOutput has no 'generation' string")
        return generation


class Llama4Chat(Llama3Chat):
    """Meta Llama 4 Scout and Maverick: the same request body, Llama 4's own chat template."""

    family = "llama4"
    title = "Meta Llama 4 Instruct"
    HEADER = "<|header_start|>{role}<|header_end|>\n\n"
    END_OF_TURN = "<|eot|>"


class MistralInstruct(ModelAdapter):
    """Mistral AI text completion (Mistral Small 24.02, Large 24.02, 7B, Mixtral): ``<s>[INST] ... [/INST]``.

    The format has no system turn: a system prompt opens the instruction, separated by a blank line.
    """

    family = "mistral-text"
    title = "Mistral AI text completion"
    output_kind = "text"
    parameters = _CHAT_PARAMETERS | {"top_k"}
    maxima = {"top_k": 200}  # "Mistral AI text completion": top_k 1-200
    minima = {"top_k": 1}

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        instruction = f"{settings.system}\n\n{text}" if settings.system else text
        return {
            "prompt": f"<s>[INST] {instruction} [/INST]",
            "max_tokens": settings.max_tokens,
            **_optional(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k),
        }

    def parse_model_output(self, model_output: dict[str, Any]) -> str:
        outputs = model_output.get("outputs")
        first = outputs[0] if isinstance(outputs, list) and outputs else None
        if not isinstance(first, dict) or not isinstance(first.get("text"), str):
            raise ValueError("modelOutput has no 'outputs[0].text' string")
        return str(first["text"])


class MistralChat(ModelAdapter):
    """Mistral AI chat completion (Mistral Large 2, 24.07): ``messages`` whose content is a string."""

    family = "mistral-chat"
    title = "Mistral AI chat completion"
    output_kind = "text"
    parameters = _CHAT_PARAMETERS

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        messages = [{"role": "system", "content": settings.system}] if settings.system else []
        messages.append({"role": "user", "content": text})
        return {
            "messages": messages,
            "max_tokens": settings.max_tokens,
            **_optional(temperature=settings.temperature, top_p=settings.top_p),
        }

    def parse_model_output(self, model_output: dict[str, Any]) -> str:
        choices = model_output.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise ValueError("modelOutput has no 'choices[0].message' object")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError("modelOutput 'choices[0].message.content' is not a string")
        return content or ""


class ConverseRequest(ModelAdapter):
    """The Converse invocation type: one record format for every text model (job ``modelInvocationType=Converse``).

    Batch Converse jobs take no ``toolConfig`` (records with one fail with a 400), so none is sent.
    """

    family = "converse"
    title = "the Converse invocation type"
    output_kind = "text"
    parameters = _CHAT_PARAMETERS

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return _messages_body(text, settings)

    def parse_model_output(self, model_output: dict[str, Any]) -> str:
        return _converse_text(model_output)


class TitanTextEmbeddingsV2(EmbeddingAdapter):
    """Amazon Titan Text Embeddings V2: ``{"inputText"}`` in, ``{"embedding"}`` out (1,024 dimensions by default)."""

    family = "titan-embed-text-v2"
    title = "Amazon Titan Text Embeddings V2"
    parameters = frozenset({"dimensions", "normalize"})
    choices = {"dimensions": (256, 512, 1024)}
    max_chars = 50_000

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return {"inputText": text, **_optional(dimensions=settings.dimensions, normalize=settings.normalize)}

    def parse_model_output(self, model_output: dict[str, Any]) -> list[float]:
        return _vector(model_output.get("embedding"), "embedding")


class TitanMultimodalEmbeddings(EmbeddingAdapter):
    """Amazon Titan Multimodal Embeddings G1, text input only: ``inputText`` (+ ``embeddingConfig``)."""

    family = "titan-embed-image-v1"
    title = "Amazon Titan Multimodal Embeddings G1"
    parameters = frozenset({"dimensions"})
    choices = {"dimensions": (256, 384, 1024)}

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        body: dict[str, Any] = {"inputText": text}
        if settings.dimensions is not None:
            body["embeddingConfig"] = {"outputEmbeddingLength": settings.dimensions}
        return body

    def parse_model_output(self, model_output: dict[str, Any]) -> list[float]:
        return _vector(model_output.get("embedding"), "embedding")


COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


class CohereEmbed(EmbeddingAdapter):
    """Cohere Embed English/Multilingual v3: one text per record in ``texts`` (the gateway sends up to 96 per call);
    ``input_type`` search_document by default. The answer is ``embeddings`` (a list of vectors, in the order of
    ``texts``) or, when embedding types were asked for, ``embeddings.float``."""

    family = "cohere-embed"
    title = "Cohere Embed v3"
    parameters = frozenset({"input_type"})
    choices = {"input_type": COHERE_INPUT_TYPES}
    texts_per_call = 96  # "Cohere Embed v3": 0 to 96 texts per call, each at most 2,048 characters
    max_chars = 2048

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return self.build_texts_input([text], settings)

    def build_texts_input(self, texts: list[str], settings: InferenceSettings) -> dict[str, Any]:
        if not 1 <= len(texts) <= self.texts_per_call:
            raise ValueError(f"{self.title} embeds 1 to {self.texts_per_call} texts per call, got {len(texts)}")
        return {"texts": list(texts), "input_type": settings.input_type or "search_document"}

    def parse_model_output(self, model_output: dict[str, Any]) -> list[float]:
        return self.parse_vectors(model_output)[0]

    def parse_vectors(self, model_output: dict[str, Any]) -> list[list[float]]:
        embeddings = model_output.get("embeddings")
        if isinstance(embeddings, dict):
            embeddings = embeddings.get("float")
        if not isinstance(embeddings, list) or not embeddings:
            raise ValueError("modelOutput has no 'embeddings' list (nor 'embeddings.float')")
        return [_vector(vector, f"embeddings[{index}]") for index, vector in enumerate(embeddings)]


# Amazon Nova Multimodal Embeddings ("Complete embeddings request and response schema": embeddingPurpose,
# embeddingDimension; docs/bedrock-facts.md, Embeddings).
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


class NovaMultimodalEmbeddings(EmbeddingAdapter):
    """Amazon Nova Multimodal Embeddings, text input, synchronous: one text per call as ``singleEmbeddingParams.text``
    with ``truncationMode`` ``NONE`` (a text over the model's 8K tokens is Bedrock's 400, never cut silently), the
    ``embeddingPurpose`` (``GENERIC_INDEX`` by default) and the ``embeddingDimension`` (3,072, the model's default,
    unless ``dimensions`` says otherwise: always sent). The answer is ``embeddings`` (one item) with no token count."""

    family = "nova-multimodal-embed"
    title = "Amazon Nova Multimodal Embeddings"
    parameters = frozenset({"dimensions", "embedding_purpose"})
    choices = {"dimensions": NOVA_MME_DIMENSIONS, "embedding_purpose": NOVA_MME_PURPOSES}
    SCHEMA_VERSION: ClassVar[str] = "nova-multimodal-embed-v1"
    DEFAULT_PURPOSE: ClassVar[str] = "GENERIC_INDEX"
    DEFAULT_DIMENSION: ClassVar[int] = 3072

    def build_model_input(self, text: str, settings: InferenceSettings) -> dict[str, Any]:
        return {
            "schemaVersion": self.SCHEMA_VERSION,
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": {
                "embeddingPurpose": settings.embedding_purpose or self.DEFAULT_PURPOSE,
                "embeddingDimension": settings.dimensions or self.DEFAULT_DIMENSION,
                "text": {"truncationMode": "NONE", "value": text},
            },
        }

    def parse_model_output(self, model_output: dict[str, Any]) -> list[float]:
        embeddings = model_output.get("embeddings")
        first = embeddings[0] if isinstance(embeddings, list) and embeddings else None
        if not isinstance(first, dict):
            raise ValueError("modelOutput has no 'embeddings[0]' object")
        return _vector(first.get("embedding"), "embeddings[0].embedding")


ADAPTERS: dict[str, type[ModelAdapter]] = {
    adapter.family: adapter
    for adapter in (
        AnthropicMessages,
        NovaMessages,
        Llama3Chat,
        Llama4Chat,
        MistralInstruct,
        MistralChat,
        ConverseRequest,
        TitanTextEmbeddingsV2,
        TitanMultimodalEmbeddings,
        CohereEmbed,
        NovaMultimodalEmbeddings,
    )
}

# Foundation-model id prefixes -> family. Longest prefix wins; add a line to onboard a model id pattern.
MODEL_ID_PREFIXES: dict[str, str] = {
    "anthropic.claude-3": "anthropic",  # Claude 3, 3.5, 3.7
    "anthropic.claude-sonnet-4": "anthropic",  # 4, 4.5, ...
    "anthropic.claude-opus-4": "anthropic",
    "anthropic.claude-haiku-4": "anthropic",
    "amazon.nova-micro": "nova",
    "amazon.nova-lite": "nova",
    "amazon.nova-pro": "nova",
    "amazon.nova-premier": "nova",
    "meta.llama3": "llama3",  # 3, 3.1, 3.2, 3.3
    "meta.llama4": "llama4",
    "mistral.mistral-small-2402": "mistral-text",
    "mistral.mistral-large-2402": "mistral-text",
    "mistral.mistral-7b-instruct": "mistral-text",
    "mistral.mixtral-8x7b-instruct": "mistral-text",
    "mistral.mistral-large-2407": "mistral-chat",
    "amazon.titan-embed-text-v2": "titan-embed-text-v2",
    "amazon.titan-embed-image-v1": "titan-embed-image-v1",
    "cohere.embed-english-v3": "cohere-embed",
    "cohere.embed-multilingual-v3": "cohere-embed",
    "amazon.nova-2-multimodal-embeddings": "nova-multimodal-embed",
}
# Models of the registry whose on-demand price the project could not read on a public AWS page. Only these may be
# missing from lambdas/shared/prices.json (tests/unit/test_pricing.py), and a gateway bot on one must carry its own
# prices in its bot file, or the bot file does not load (lambdas/gateway/config.py; synth: stacks/config/bots.py).
# When AWS publishes the price: add it to prices.json and remove the prefix here.
UNPRICED_MODEL_PREFIXES: tuple[str, ...] = ("amazon.nova-2-multimodal-embeddings",)
# The most tokens each model generates (max_tokens, max_gen_len, maxTokens), by foundation-model id prefix (longest
# prefix wins); a run asking for more is refused before any record is built, since the model would reject every
# record (docs/bedrock-facts.md, modelInput per model family). A model not listed here has no ceiling checked.
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "anthropic.claude-3-haiku": 4096,
    "anthropic.claude-3-sonnet": 4096,
    "anthropic.claude-3-opus": 4096,
    "anthropic.claude-3-5-haiku": 8192,
    "anthropic.claude-3-5-sonnet": 8192,
    "anthropic.claude-3-7-sonnet": 64000,
    "anthropic.claude-sonnet-4": 64000,
    "anthropic.claude-opus-4": 32000,
    "anthropic.claude-haiku-4": 64000,
    "amazon.nova-micro": 5000,
    "amazon.nova-lite": 5000,
    "amazon.nova-pro": 5000,
    "amazon.nova-premier": 32000,
    "meta.llama3": 2048,
    "meta.llama4": 2048,
    "mistral.mistral-small-2402": 8192,
    "mistral.mistral-large-2402": 8192,
    "mistral.mistral-large-2407": 8192,
    "mistral.mistral-7b-instruct": 8192,
    "mistral.mixtral-8x7b-instruct": 4096,
}
# Foundation-model id prefixes of the models that run batch inference jobs: the Amazon Bedrock docs page "Supported
# Regions and models for batch inference", among the models of MODEL_ID_PREFIXES. The others (Mistral 7B Instruct,
# Mixtral 8x7B, Mistral Large 24.02, Cohere Embed v3, Nova Multimodal Embeddings) serve on-demand calls only: the
# gateway's, not batch runs.
# local/emulator/batch_models.py keeps the emulator's copy of the page (BATCH_MODELS); a test keeps the two equal.
BATCH_MODEL_PREFIXES: tuple[str, ...] = (
    "amazon.nova-micro-v1",
    "amazon.nova-lite-v1",
    "amazon.nova-pro-v1",
    "amazon.nova-premier-v1",
    "amazon.titan-embed-text-v2",
    "amazon.titan-embed-image-v1",
    "anthropic.claude-3-haiku-20240307",
    "anthropic.claude-3-sonnet-20240229",
    "anthropic.claude-3-opus-20240229",
    "anthropic.claude-3-5-haiku-20241022",
    "anthropic.claude-3-5-sonnet-20240620",
    "anthropic.claude-3-5-sonnet-20241022",
    "anthropic.claude-3-7-sonnet-20250219",
    "anthropic.claude-sonnet-4-20250514",
    "anthropic.claude-opus-4-20250514",
    "anthropic.claude-opus-4-1-20250805",
    "anthropic.claude-sonnet-4-5-20250929",
    "anthropic.claude-haiku-4-5-20251001",
    "meta.llama3-1-8b-instruct",
    "meta.llama3-1-70b-instruct",
    "meta.llama3-1-405b-instruct",
    "meta.llama3-2-1b-instruct",
    "meta.llama3-2-3b-instruct",
    "meta.llama3-2-11b-instruct",
    "meta.llama3-2-90b-instruct",
    "meta.llama3-3-70b-instruct",
    "meta.llama4-scout-17b-instruct",
    "meta.llama4-maverick-17b-instruct",
    "mistral.mistral-small-2402",
    "mistral.mistral-large-2407",
)
# Foundation models that batch serves only through a system inference profile.
PROFILE_ONLY_PREFIXES = ("amazon.nova-premier",)
# The families a model can belong to (valid values of the execution input's model_family).
MODEL_FAMILIES: tuple[str, ...] = tuple(sorted(set(MODEL_ID_PREFIXES.values())))
# Invocation types and the adapter that formats their records; None: the model's own family.
INVOCATION_TYPE_FAMILIES: dict[str, str | None] = {"InvokeModel": None, "Converse": ConverseRequest.family}


@dataclass(frozen=True)
class ResolvedModel:
    """A model id resolved for a run: ``family`` keys the adapter that formats the records (``converse`` for
    Converse jobs), ``model_family`` is the model's own family."""

    ref: ModelRef
    family: str
    model_family: str
    invocation_type: InvocationType
    adapter: ModelAdapter

    @property
    def output_kind(self) -> OutputKind:
        return self.adapter.output_kind

    @property
    def max_output_tokens(self) -> int | None:
        """The model's ceiling on generated tokens (``MAX_OUTPUT_TOKENS``), or None if unknown or not a text model."""
        if self.output_kind != "text" or not self.ref.names_a_model:
            return None
        matches = [prefix for prefix in MAX_OUTPUT_TOKENS if self.ref.base_model_id.startswith(prefix)]
        return MAX_OUTPUT_TOKENS[max(matches, key=len)] if matches else None

    def check_settings(self, settings: InferenceSettings) -> None:
        """The model's ceiling on ``max_tokens``, then the adapter's checks; InvalidParameterError with the fix."""
        ceiling = self.max_output_tokens
        if ceiling is not None and settings.max_tokens > ceiling:
            raise InvalidParameterError(
                f"{settings.max_tokens} is over the {ceiling} tokens '{self.ref.model_id}' generates at most; use "
                f"max_tokens <= {ceiling}",
                field="inference_params.max_tokens",
            )
        self.adapter.check_settings(settings)


def family_of(model_id: str) -> str:
    """The family of a model id by the registry (longest matching prefix), or UnknownModelError with the fix."""
    ref = ModelRef.parse(model_id)
    if not ref.names_a_model:
        raise UnknownModelError(
            f"model_id '{model_id}' is an ARN of type {ref.arn_kind}, whose model family cannot be read from it; set "
            f"model_family to the family of the model behind it (one of {list(MODEL_FAMILIES)}), or pass the "
            "foundation-model id or the system inference-profile id instead"
        )
    matches = [prefix for prefix in MODEL_ID_PREFIXES if ref.base_model_id.startswith(prefix)]
    if not matches:
        close = difflib.get_close_matches(ref.base_model_id, list(MODEL_ID_PREFIXES), n=1, cutoff=0.4)
        hint = f" (closest known: '{close[0]}...')" if close else ""
        raise UnknownModelError(
            f"model_id '{model_id}' belongs to no supported model family{hint}; supported id prefixes: "
            f"{sorted(MODEL_ID_PREFIXES)}; use one of those, set model_family to one of {list(MODEL_FAMILIES)} if "
            "the model uses one of their formats, or add the family to lambdas/shared/model_families.py"
        )
    return MODEL_ID_PREFIXES[max(matches, key=len)]


def price_published(model_id: str) -> bool:
    """False for a model of ``UNPRICED_MODEL_PREFIXES`` (foundation model, profile or ARN of one): whoever serves it
    supplies its price; True otherwise (an ARN that names no model included: its price is the operator's anyway)."""
    ref = ModelRef.parse(model_id)
    return not (ref.names_a_model and ref.base_model_id.startswith(UNPRICED_MODEL_PREFIXES))


def batch_model_problem(model_id: str) -> str | None:
    """Why ``model_id`` cannot run batch inference jobs (it names a model missing from ``BATCH_MODEL_PREFIXES``), with
    the fix; None when it can, or when its text names no model (application inference profile, custom model ARN)."""
    ref = ModelRef.parse(model_id)
    if not ref.names_a_model or ref.base_model_id.startswith(BATCH_MODEL_PREFIXES):
        return None
    return (
        f"'{model_id}' does not support batch inference (it is not on the Bedrock docs page 'Supported Regions and "
        f"models for batch inference'); use the gateway for on-demand inference, or a batch model such as "
        f"'{_batch_alternative(ref.base_model_id)}...' (any id starting with one of BATCH_MODEL_PREFIXES in "
        "lambdas/shared/model_families.py; add a prefix there when that page lists a new model)"
    )


def _batch_alternative(base_model_id: str) -> str:
    """A batch model prefix like the model: of its family if any, else with the same output kind, else the first."""
    matches = [prefix for prefix in MODEL_ID_PREFIXES if base_model_id.startswith(prefix)]
    family = MODEL_ID_PREFIXES[max(matches, key=len)] if matches else None

    def family_of_prefix(prefix: str) -> str | None:
        known = [known for known in MODEL_ID_PREFIXES if prefix.startswith(known)]
        return MODEL_ID_PREFIXES[max(known, key=len)] if known else None

    kind = ADAPTERS[family].output_kind if family else "text"
    same_family = [prefix for prefix in BATCH_MODEL_PREFIXES if family_of_prefix(prefix) == family]
    same_kind = [
        prefix
        for prefix in BATCH_MODEL_PREFIXES
        if (found := family_of_prefix(prefix)) is not None and ADAPTERS[found].output_kind == kind
    ]
    return (same_family or same_kind or list(BATCH_MODEL_PREFIXES))[0]


def _check_profile_only(ref: ModelRef) -> None:
    if ref.profile_geo is None and ref.names_a_model and ref.base_model_id.startswith(PROFILE_ONLY_PREFIXES):
        raise UnknownModelError(
            f"model_id '{ref.model_id}' is served only through a system inference profile; use the profile id, "
            f"e.g. 'us.{ref.base_model_id}'"
        )


def resolve(model_id: str, *, model_family: str | None = None, invocation_type: str = "InvokeModel") -> ResolvedModel:
    """Resolve a model id (and the execution input's ``model_family`` and ``invocation_type``) to the adapter that
    formats its records for a batch run, or raise a ModelFamilyError naming the field and the fix (a
    NoBatchInferenceError for a model without batch inference, whatever ``model_family`` says)."""
    if invocation_type not in INVOCATION_TYPE_FAMILIES:
        raise ModelFamilyError(
            f"'{invocation_type}' is not a batch invocation type; use one of {list(INVOCATION_TYPE_FAMILIES)}",
            field="invocation_type",
        )
    ref = ModelRef.parse(model_id)
    if model_family is None:
        family = family_of(model_id)
    elif model_family in MODEL_FAMILIES:
        family = model_family
    else:
        close = difflib.get_close_matches(model_family, MODEL_FAMILIES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownModelError(
            f"'{model_family}' is not a model family{hint}; use one of {list(MODEL_FAMILIES)}", field="model_family"
        )
    problem = batch_model_problem(model_id)
    if problem is not None:
        raise NoBatchInferenceError(f"model_id {problem}")
    _check_profile_only(ref)
    records_family = INVOCATION_TYPE_FAMILIES[invocation_type] or family
    if ADAPTERS[records_family].output_kind != ADAPTERS[family].output_kind:
        raise ModelFamilyError(
            f"'{invocation_type}' jobs serve text models, but '{model_id}' is an embedding model "
            f"({ADAPTERS[family].title}); remove invocation_type (embedding records use the model's own format)",
            field="invocation_type",
        )
    return ResolvedModel(
        ref=ref,
        family=records_family,
        model_family=family,
        invocation_type="Converse" if invocation_type == "Converse" else "InvokeModel",
        adapter=ADAPTERS[records_family](),
    )


def adapter_for_family(family: str) -> ModelAdapter:
    try:
        return ADAPTERS[family]()
    except KeyError:
        raise UnknownModelError(f"model family '{family}' is unknown; known: {sorted(ADAPTERS)}") from None


# ---------------------------------------------------------------- batch quota names

# Foundation-model id prefixes -> the model's name in its Service Quotas batch quota names ("Records per batch
# inference job for Claude 3 Haiku"); longest prefix wins. lambdas/preprocess/quotas.py reads the quotas by these names.
# A model missing here runs with the documented default quotas, and the run's summary says so.
QUOTA_MODEL_NAMES: dict[str, str] = {
    "anthropic.claude-3-haiku": "Claude 3 Haiku",
    "anthropic.claude-3-sonnet": "Claude 3 Sonnet",
    "anthropic.claude-3-opus": "Claude 3 Opus",
    "anthropic.claude-3-5-sonnet-20240620": "Claude 3.5 Sonnet",
    "anthropic.claude-3-5-sonnet-20241022": "Claude 3.5 Sonnet v2",
    "anthropic.claude-3-5-haiku": "Claude 3.5 Haiku",
    "anthropic.claude-3-7-sonnet": "Claude 3.7 Sonnet",
    "anthropic.claude-sonnet-4-2": "Claude Sonnet 4",  # claude-sonnet-4-20250514 (not 4-5)
    "amazon.nova-micro-v1": "Nova Micro V1",
    "amazon.nova-lite-v1": "Nova Lite V1",
    "amazon.nova-pro-v1": "Nova Pro V1",
    "amazon.titan-embed-text-v2": "Titan Text Embeddings V2",
    "amazon.titan-embed-image-v1": "Titan Multimodal Embeddings G1",
    "meta.llama3-1-8b-instruct": "Llama 3.1 8B Instruct",
    "meta.llama3-1-70b-instruct": "Llama 3.1 70B Instruct",
    "meta.llama3-1-405b-instruct": "Llama 3.1 405B Instruct",
    "meta.llama3-2-1b-instruct": "Llama 3.2 1B Instruct",
    "meta.llama3-2-3b-instruct": "Llama 3.2 3B Instruct",
    "meta.llama3-2-11b-instruct": "Llama 3.2 11B Instruct",
    "meta.llama3-2-90b-instruct": "Llama 3.2 90B Instruct",
    "meta.llama3-3-70b-instruct": "Llama 3.3 70B Instruct",
    "mistral.mistral-small-2402": "Mistral Small",
    "mistral.mistral-large-2407": "Mistral Large 2 (24.07)",
}


def quota_model_name(model_id: str) -> str | None:
    """The model's name in Service Quotas' batch quota names, or None if the id names no model of the table (an
    application profile or custom model ARN, or a model not listed)."""
    ref = ModelRef.parse(model_id)
    if not ref.names_a_model:
        return None
    matches = [prefix for prefix in QUOTA_MODEL_NAMES if ref.base_model_id.startswith(prefix)]
    return QUOTA_MODEL_NAMES[max(matches, key=len)] if matches else None


# ---------------------------------------------------------------- image models (the gateway's image bots)


@dataclass(frozen=True)
class ImageSizes:
    """The output sizes an image model takes (docs/bedrock-facts.md, Images and video): a fixed table
    (``table``, "WIDTHxHEIGHT"), or the Nova Canvas rules (sides, multiple, ratio, pixels); Stability models take
    an ``aspect_ratio`` from ``aspect_ratios`` instead of a size."""

    title: str
    table: tuple[str, ...] = ()
    min_side: int = 0
    max_side: int = 0
    multiple: int = 1
    max_ratio: float = 0.0
    pixel_limit: int = 0  # sizes of this many pixels or more are refused
    aspect_ratios: tuple[str, ...] = ()

    def size_problem(self, size: str) -> str | None:
        """Why ``size`` ("WIDTHxHEIGHT") is not one this model generates, or None."""
        if self.aspect_ratios:
            return f"{self.title} takes an aspect ratio ({', '.join(self.aspect_ratios)}), not a size"
        if self.table:
            return None if size in self.table else f"{self.title} generates only {', '.join(self.table)}"
        width, height = (int(side) for side in size.split("x"))
        rules = (
            f"{self.title} takes sides of {self.min_side}-{self.max_side} pixels in multiples of {self.multiple}, "
            f"an aspect ratio from 1:{self.max_ratio:g} to {self.max_ratio:g}:1 and under {self.pixel_limit} pixels"
        )
        sides_ok = all(self.min_side <= side <= self.max_side and side % self.multiple == 0 for side in (width, height))
        shape_ok = max(width, height) / min(width, height) <= self.max_ratio and width * height < self.pixel_limit
        return None if sides_ok and shape_ok else rules

    def aspect_ratio_problem(self, ratio: str) -> str | None:
        """Why ``ratio`` ("W:H") is not one this model takes, or None."""
        if not self.aspect_ratios:
            return f"{self.title} takes a size (WIDTHxHEIGHT), not an aspect ratio"
        return None if ratio in self.aspect_ratios else f"{self.title} takes only {', '.join(self.aspect_ratios)}"


TITAN_IMAGE_SIZES = (
    "1024x1024", "768x768", "512x512", "768x1152", "384x576", "1152x768", "576x384", "768x1280", "384x640",
    "1280x768", "640x384", "896x1152", "448x576", "1152x896", "576x448", "768x1408", "384x704", "1408x768",
    "704x384", "640x1408", "320x704", "1408x640", "704x320", "1152x640", "1173x640",
)  # fmt: skip
STABILITY_ASPECT_RATIOS = ("1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
NOVA_CANVAS_SIZES = ImageSizes(
    "Amazon Nova Canvas", min_side=320, max_side=4096, multiple=16, max_ratio=4.0, pixel_limit=4_194_304
)
# Foundation-model id prefixes of image models -> their sizes (longest prefix wins).
IMAGE_MODEL_SIZES: dict[str, ImageSizes] = {
    "amazon.nova-canvas": NOVA_CANVAS_SIZES,
    "amazon.titan-image-generator": ImageSizes("Amazon Titan Image Generator", table=TITAN_IMAGE_SIZES),
    "stability.sd3": ImageSizes("Stability AI SD3", aspect_ratios=STABILITY_ASPECT_RATIOS),
    "stability.stable-image": ImageSizes("Stability AI Stable Image", aspect_ratios=STABILITY_ASPECT_RATIOS),
}


def image_sizes_of(model_id: str) -> ImageSizes | None:
    """The sizes of an image model id (foundation model or inference profile), or None for a model not listed."""
    base = ModelRef.parse(model_id).base_model_id
    matches = [prefix for prefix in IMAGE_MODEL_SIZES if base.startswith(prefix)]
    return IMAGE_MODEL_SIZES[max(matches, key=len)] if matches else None


# ---------------------------------------------------------------- embedding models (the gateway's embedding bots)


def embedding_adapter_of(model_id: str) -> EmbeddingAdapter | None:
    """The embedding family of a model id (foundation model or inference profile), or None when the id names no
    embedding model of the registry."""
    try:
        family = family_of(model_id)
    except ModelFamilyError:
        return None
    adapter = ADAPTERS[family]()
    return adapter if isinstance(adapter, EmbeddingAdapter) else None


# ---------------------------------------------------------------- Claude betas (the gateway's Anthropic Messages API)

# The anthropic_beta values Bedrock takes per Claude model (Bedrock's "Anthropic Claude Messages API" page, Request
# and Response: anthropic_beta), by foundation-model id prefix (longest prefix wins). The gateway forwards a beta of
# the request in Converse additionalModelRequestFields.anthropic_beta only where it is listed for the bot's model
# (lambdas/gateway/anthropic_betas.py); local/emulator/claude_betas.py keeps the emulator's copy of the page.
_CLAUDE_4_BETAS = frozenset({"token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14"})
CLAUDE_BETAS: dict[str, frozenset[str]] = {
    "anthropic.claude-3-7-sonnet": frozenset({"token-efficient-tools-2025-02-19", "output-128k-2025-02-19"}),
    "anthropic.claude-sonnet-4-": _CLAUDE_4_BETAS | {"context-1m-2025-08-07"},
    "anthropic.claude-sonnet-4-5": _CLAUDE_4_BETAS | {"context-1m-2025-08-07", "context-management-2025-06-27"},
    "anthropic.claude-haiku-4-5": _CLAUDE_4_BETAS | {"context-management-2025-06-27"},
    "anthropic.claude-opus-4-": _CLAUDE_4_BETAS,
    "anthropic.claude-opus-4-5": _CLAUDE_4_BETAS | {"effort-2025-11-24"},
}


def claude_betas_of(model_id: str) -> frozenset[str]:
    """The anthropic_beta values Bedrock takes for a model id (foundation model or inference profile); none for a
    model that is not listed (other families included)."""
    base = ModelRef.parse(model_id).base_model_id
    matches = [prefix for prefix in CLAUDE_BETAS if base.startswith(prefix)]
    return CLAUDE_BETAS[max(matches, key=len)] if matches else frozenset()
