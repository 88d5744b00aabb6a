"""The models the emulator serves in batch jobs, in one place, and the ``CreateModelInvocationJob`` checks on them.

The list follows the Amazon Bedrock docs page "Supported Regions and models for batch inference" (models that
support batch inference, and whether only through a cross-Region inference profile); a model that is not on it is
refused at ``CreateModelInvocationJob`` with a ``ValidationException``, as the service refuses it. Each entry also
carries what the per-record checks of ``local.emulator.families`` need to know about the model:

- ``max_output_tokens``: the ceiling of ``max_tokens`` / ``max_gen_len`` / ``inferenceConfig.maxTokens`` (the
  model's parameter page: "Anthropic Claude Messages API" and Anthropic's model comparison for Claude, "Meta Llama
  models" for ``max_gen_len``, "Mistral AI text completion" / "Mistral AI chat completion", Amazon Nova "Complete
  request schema"); None for embedding models, which generate no tokens.
- ``converse``: the model can run in a job of ``modelInvocationType`` ``Converse`` (text models; embedding models
  cannot: the Converse API serves text generation only).
- ``images`` / ``documents``: the model accepts image / document content blocks ("Supported models and model
  features" of the Converse API; the model's parameter page). A model not known to accept them is treated as
  refusing them (the stricter reading).

docs/bedrock-facts.md ("Batch job requests" and "modelInput per model family") lists these facts with their sources.
Which ids name a batch model: a foundation-model id, a system inference-profile id (``us.``, ``eu.``, ...), or an ARN
of either. Custom-model and application-inference-profile ARNs name no model in their text: the emulator accepts them
and checks their records by shape only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from local.emulator.errors import ApiError, validation_error

_ARN = re.compile(r"^arn:aws[-a-z]*:bedrock:[^:]*:[0-9]*:(?P<kind>[a-z-]+)/(?P<id>.+)$")
_GEO = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.")
_NAMES_A_MODEL = ("foundation-model", "inference-profile")


@dataclass(frozen=True)
class BatchModel:
    prefix: str  # base model id prefix (no geo prefix, no version suffix)
    name: str
    max_output_tokens: int | None  # None: an embedding model
    images: bool = False
    documents: bool = False
    profile_only: bool = False  # served in batch only through a cross-Region inference profile

    @property
    def converse(self) -> bool:
        return self.max_output_tokens is not None


def _claude(prefix: str, name: str, tokens: int, *, images: bool = True, documents: bool = False) -> BatchModel:
    return BatchModel(f"anthropic.{prefix}", f"Anthropic {name}", tokens, images=images, documents=documents)


def _llama(prefix: str, name: str, *, images: bool = False) -> BatchModel:
    return BatchModel(f"meta.{prefix}", f"Meta {name}", 2048, images=images)


# "Supported Regions and models for batch inference" (Amazon Bedrock docs), the models of the providers this
# project formats records for. Ceilings: see the module docstring.
BATCH_MODELS: tuple[BatchModel, ...] = (
    BatchModel("amazon.nova-micro-v1", "Amazon Nova Micro", 5000),
    BatchModel("amazon.nova-lite-v1", "Amazon Nova Lite", 5000, images=True, documents=True),
    BatchModel("amazon.nova-pro-v1", "Amazon Nova Pro", 5000, images=True, documents=True),
    BatchModel("amazon.nova-premier-v1", "Amazon Nova Premier", 32000, images=True, documents=True, profile_only=True),
    BatchModel("amazon.titan-embed-text-v2", "Amazon Titan Text Embeddings V2", None),
    BatchModel("amazon.titan-embed-image-v1", "Amazon Titan Multimodal Embeddings G1", None),
    _claude("claude-3-haiku-20240307", "Claude 3 Haiku", 4096),
    _claude("claude-3-sonnet-20240229", "Claude 3 Sonnet", 4096),
    _claude("claude-3-opus-20240229", "Claude 3 Opus", 4096),
    _claude("claude-3-5-haiku-20241022", "Claude 3.5 Haiku", 8192, images=False),
    _claude("claude-3-5-sonnet-20240620", "Claude 3.5 Sonnet", 8192),
    _claude("claude-3-5-sonnet-20241022", "Claude 3.5 Sonnet v2", 8192, documents=True),
    _claude("claude-3-7-sonnet-20250219", "Claude 3.7 Sonnet", 64000, documents=True),
    _claude("claude-sonnet-4-20250514", "Claude Sonnet 4", 64000, documents=True),
    _claude("claude-opus-4-20250514", "Claude Opus 4", 32000, documents=True),
    _claude("claude-opus-4-1-20250805", "Claude Opus 4.1", 32000, documents=True),
    _claude("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", 64000, documents=True),
    _claude("claude-haiku-4-5-20251001", "Claude Haiku 4.5", 64000, documents=True),
    _llama("llama3-1-8b-instruct", "Llama 3.1 8B Instruct"),
    _llama("llama3-1-70b-instruct", "Llama 3.1 70B Instruct"),
    _llama("llama3-1-405b-instruct", "Llama 3.1 405B Instruct"),
    _llama("llama3-2-1b-instruct", "Llama 3.2 1B Instruct"),
    _llama("llama3-2-3b-instruct", "Llama 3.2 3B Instruct"),
    _llama("llama3-2-11b-instruct", "Llama 3.2 11B Instruct", images=True),
    _llama("llama3-2-90b-instruct", "Llama 3.2 90B Instruct", images=True),
    _llama("llama3-3-70b-instruct", "Llama 3.3 70B Instruct"),
    _llama("llama4-scout-17b-instruct", "Llama 4 Scout 17B Instruct", images=True),
    _llama("llama4-maverick-17b-instruct", "Llama 4 Maverick 17B Instruct", images=True),
    BatchModel("mistral.mistral-small-2402", "Mistral Small (24.02)", 8192),
    BatchModel("mistral.mistral-large-2407", "Mistral Large 2 (24.07)", 8192),
)


def _resource_id(model_id: str) -> str | None:
    """The id a model id or ARN names (profile prefix kept), or None for an ARN that names no model."""
    arn = _ARN.match(model_id)
    if arn is None:
        return model_id
    return arn.group("id") if arn.group("kind") in _NAMES_A_MODEL else None


def batch_model(model_id: str) -> BatchModel | None:
    """The batch model a model id (foundation model, system profile, or an ARN of either) names; None otherwise."""
    resource = _resource_id(model_id)
    if resource is None:
        return None
    base = _GEO.sub("", resource)
    return next((model for model in BATCH_MODELS if base.startswith(model.prefix)), None)


def check_batch_model(model_id: str, invocation_type: str) -> None:
    """Raise the ``ValidationException`` ``CreateModelInvocationJob`` answers for a model it cannot run in batch."""
    resource = _resource_id(model_id)
    if resource is None:
        return  # custom model or application inference profile: the ARN does not say which model it is
    model = batch_model(model_id)
    base = _GEO.sub("", resource)
    if model is None:
        raise _invalid(
            model_id,
            "is unknown or does not support batch inference; use a model listed in 'Supported Regions and models "
            "for batch inference'",
        )
    if model.profile_only and resource == base:
        raise _invalid(
            model_id,
            f"{model.name} supports batch inference only through a cross-Region inference profile, e.g. 'us.{base}'",
        )
    if invocation_type == "Converse" and not model.converse:
        raise _invalid(
            model_id, f"{model.name} does not support the Converse invocation type; use modelInvocationType InvokeModel"
        )


def _invalid(model_id: str, why: str) -> ApiError:
    return validation_error(f"The provided model identifier is invalid for batch inference: '{model_id}' {why}.")
