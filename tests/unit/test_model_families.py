"""The model-family registry: ids to families, each adapter's modelInput and modelOutput, and parameter checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lambdas.preprocess.logic import make_plan
from lambdas.shared.errors import InputValidationError
from lambdas.shared.model_families import (
    ADAPTERS,
    BATCH_MODEL_PREFIXES,
    MODEL_FAMILIES,
    MODEL_ID_PREFIXES,
    PROFILE_ONLY_PREFIXES,
    PROFILE_PREFIXES,
    InferenceSettings,
    InvalidParameterError,
    ModelFamilyError,
    ModelRef,
    NoBatchInferenceError,
    UnknownModelError,
    adapter_for_family,
    batch_model_problem,
    family_of,
    resolve,
)
from lambdas.shared.models import ExecutionInput, JobSpec, JobState, RunContext
from lambdas.shared.settings import Settings
from lambdas.submit_job.logic import build_request
from local.emulator.batch_models import BATCH_MODELS
from stacks import config

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ARN = "arn:aws:bedrock:us-east-1:123456789012"

# One model id per family (the families the registry reaches from model ids).
MODEL_OF_FAMILY = {
    "anthropic": "anthropic.claude-3-haiku-20240307-v1:0",
    "nova": "amazon.nova-lite-v1:0",
    "llama3": "meta.llama3-1-8b-instruct-v1:0",
    "llama4": "meta.llama4-scout-17b-instruct-v1:0",
    "mistral-text": "mistral.mistral-small-2402-v1:0",
    "mistral-chat": "mistral.mistral-large-2407-v1:0",
    "titan-embed-text-v2": "amazon.titan-embed-text-v2:0",
    "titan-embed-image-v1": "amazon.titan-embed-image-v1",
    "cohere-embed": "cohere.embed-english-v3",
    "nova-multimodal-embed": "amazon.nova-2-multimodal-embeddings-v1:0",
}
TEXT_FAMILIES = sorted(name for name, adapter in ADAPTERS.items() if adapter.output_kind == "text")
EMBEDDING_FAMILIES = sorted(name for name, adapter in ADAPTERS.items() if adapter.output_kind == "embedding")


# ---------------------------------------------------------------- ids to families


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic"),
        ("anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic"),
        ("anthropic.claude-opus-4-1-20250805-v1:0", "anthropic"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic"),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic"),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic"),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", "anthropic"),
        (f"{ACCOUNT_ARN}:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0", "anthropic"),
        ("amazon.nova-micro-v1:0", "nova"),
        ("amazon.nova-lite-v1:0", "nova"),
        ("amazon.nova-pro-v1:0", "nova"),
        ("us.amazon.nova-premier-v1:0", "nova"),
        ("apac.amazon.nova-pro-v1:0", "nova"),
        (f"{ACCOUNT_ARN}:inference-profile/us.amazon.nova-premier-v1:0", "nova"),
        ("meta.llama3-1-8b-instruct-v1:0", "llama3"),
        ("meta.llama3-2-90b-instruct-v1:0", "llama3"),
        ("us.meta.llama3-3-70b-instruct-v1:0", "llama3"),
        ("meta.llama4-scout-17b-instruct-v1:0", "llama4"),
        ("us.meta.llama4-maverick-17b-instruct-v1:0", "llama4"),
        ("mistral.mistral-small-2402-v1:0", "mistral-text"),
        ("mistral.mistral-large-2407-v1:0", "mistral-chat"),
        ("amazon.titan-embed-text-v2:0", "titan-embed-text-v2"),
        ("amazon.titan-embed-image-v1", "titan-embed-image-v1"),
    ],
)
def test_model_ids_resolve_to_their_family(model_id: str, family: str) -> None:
    assert family_of(model_id) == family
    assert resolve(model_id).family == resolve(model_id).model_family == family


@pytest.mark.parametrize(
    ("model_id", "family", "alternative"),
    [
        ("mistral.mistral-7b-instruct-v0:2", "mistral-text", "mistral.mistral-small-2402"),
        ("mistral.mixtral-8x7b-instruct-v0:1", "mistral-text", "mistral.mistral-small-2402"),
        ("mistral.mistral-large-2402-v1:0", "mistral-text", "mistral.mistral-small-2402"),
        ("cohere.embed-english-v3", "cohere-embed", "amazon.titan-embed-text-v2"),
        ("arn:aws:bedrock:eu-west-1::foundation-model/cohere.embed-multilingual-v3", "cohere-embed", "amazon.titan"),
        ("amazon.nova-2-multimodal-embeddings-v1:0", "nova-multimodal-embed", "amazon.titan-embed-text-v2"),
        ("us.amazon.nova-2-multimodal-embeddings-v1:0", "nova-multimodal-embed", "amazon.titan-embed-text-v2"),
    ],
)
def test_models_without_batch_inference_have_a_family_but_do_not_resolve_for_a_batch_run(
    model_id: str, family: str, alternative: str
) -> None:
    # GIVEN a model the registry formats (the gateway may call it on demand) that is not a batch model
    assert family_of(model_id) == family
    assert batch_model_problem(model_id) is not None
    # WHEN resolved for a batch run, with or without its family
    for model_family in (None, family):
        with pytest.raises(NoBatchInferenceError) as error:
            resolve(model_id, model_family=model_family)
        # THEN the error names the field, the model and the fix: the gateway, or a batch model like it
        assert error.value.field == "model_id"
        assert f"'{model_id}' does not support batch inference" in str(error.value)
        assert f"use the gateway for on-demand inference, or a batch model such as '{alternative}" in str(error.value)


def test_arns_that_name_no_model_stay_accepted_for_batch_with_a_family() -> None:
    # GIVEN application inference profile and custom model ARNs (their text names no model)
    for arn in (
        f"{ACCOUNT_ARN}:application-inference-profile/abc123",
        f"{ACCOUNT_ARN}:custom-model/my-model/abc123",
    ):
        # WHEN checked and resolved with a family THEN only Bedrock can say which model it is: accepted, as before
        assert batch_model_problem(arn) is None
        assert resolve(arn, model_family="cohere-embed").family == "cohere-embed"


def test_every_batch_model_belongs_to_a_family_and_each_prefix_is_one_model() -> None:
    # GIVEN the registry's batch models WHEN each is looked up THEN it has a family, and no prefix hides another
    assert [prefix for prefix in BATCH_MODEL_PREFIXES if not any(prefix.startswith(k) for k in MODEL_ID_PREFIXES)] == []
    assert len(set(BATCH_MODEL_PREFIXES)) == len(BATCH_MODEL_PREFIXES)
    assert [(a, b) for a in BATCH_MODEL_PREFIXES for b in BATCH_MODEL_PREFIXES if a != b and b.startswith(a)] == []


def test_the_registry_and_the_emulator_list_the_same_batch_models() -> None:
    # GIVEN the registry's batch models and the emulator's copy of "Supported Regions and models for batch inference"
    # WHEN compared THEN they are the same models (a model added to one must be added to the other)
    assert sorted(BATCH_MODEL_PREFIXES) == sorted(model.prefix for model in BATCH_MODELS)
    # AND profile-only models agree too
    assert {m.prefix for m in BATCH_MODELS if m.profile_only} == {
        prefix for prefix in BATCH_MODEL_PREFIXES if prefix.startswith(PROFILE_ONLY_PREFIXES)
    }


def test_every_id_prefix_names_a_registered_family_and_every_family_has_an_example() -> None:
    assert set(MODEL_ID_PREFIXES.values()) <= set(ADAPTERS)
    assert set(MODEL_OF_FAMILY) == set(MODEL_FAMILIES) == set(ADAPTERS) - {"converse"}


def test_profile_prefix_and_arn_kind_are_separated_from_the_foundation_model() -> None:
    ref = ModelRef.parse("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    assert (ref.profile_geo, ref.base_model_id, ref.arn_kind) == (
        "us",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        None,
    )
    arn = ModelRef.parse(f"{ACCOUNT_ARN}:inference-profile/us-gov.anthropic.claude-x-v1:0")
    assert (arn.profile_geo, arn.arn_kind, arn.resource_id) == (
        "us-gov",
        "inference-profile",
        "us-gov.anthropic.claude-x-v1:0",
    )
    app = ModelRef.parse(f"{ACCOUNT_ARN}:application-inference-profile/abc123")
    assert (app.names_a_model, app.arn_kind, app.profile_geo) == (False, "application-inference-profile", None)


def test_unknown_model_is_a_clear_error_that_mentions_model_family() -> None:
    with pytest.raises(UnknownModelError, match="no supported model family") as error:
        resolve("acme.super-model-v1")
    assert "model_family" in str(error.value) and error.value.field == "model_id"


def test_application_profile_arn_needs_model_family_which_overrides_the_lookup() -> None:
    arn = f"{ACCOUNT_ARN}:application-inference-profile/abc123"
    # GIVEN an ARN whose text names no model WHEN resolved alone THEN the error says to set model_family
    with pytest.raises(UnknownModelError, match="ARN of type application-inference-profile") as error:
        resolve(arn)
    assert "model_family" in str(error.value)
    # WHEN the family is given THEN that family's adapter formats the records
    resolved = resolve(arn, model_family="nova")
    assert (resolved.family, resolved.adapter.family, resolved.ref.model_id) == ("nova", "nova", arn)
    # AND the override also wins over the registry for an ordinary id
    assert resolve("meta.llama3-1-8b-instruct-v1:0", model_family="llama4").family == "llama4"


def test_unknown_model_family_names_the_field_and_the_choices() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'llama3'") as error:
        resolve("meta.llama3-1-8b-instruct-v1:0", model_family="llama-3")
    assert error.value.field == "model_family" and "cohere-embed" in str(error.value)
    with pytest.raises(UnknownModelError):
        resolve("meta.llama3-1-8b-instruct-v1:0", model_family="converse")  # an invocation type, not a family


def test_nova_premier_is_only_served_through_a_profile() -> None:
    with pytest.raises(UnknownModelError, match="'us.amazon.nova-premier-v1:0'"):
        resolve("amazon.nova-premier-v1:0")
    assert resolve("us.amazon.nova-premier-v1:0").ref.profile_geo == "us"


@pytest.mark.parametrize("family", sorted(MODEL_OF_FAMILY))
def test_converse_type_formats_any_text_model_and_refuses_embedding_models(family: str) -> None:
    model_id, model_family = MODEL_OF_FAMILY[family], None
    if batch_model_problem(model_id) is not None:  # Cohere Embed: an application inference profile stands for it
        model_id, model_family = f"{ACCOUNT_ARN}:application-inference-profile/abc123", family
    if ADAPTERS[family].output_kind == "embedding":
        with pytest.raises(ModelFamilyError, match="remove invocation_type") as error:
            resolve(model_id, model_family=model_family, invocation_type="Converse")
        assert error.value.field == "invocation_type"
        return
    resolved = resolve(model_id, invocation_type="Converse")
    assert (resolved.family, resolved.model_family, resolved.invocation_type) == ("converse", family, "Converse")
    assert resolved.adapter.family == "converse" and resolved.output_kind == "text"


def test_unknown_invocation_type_names_the_field() -> None:
    with pytest.raises(ModelFamilyError, match="InvokeModel") as error:
        resolve(MODEL_OF_FAMILY["nova"], invocation_type="Stream")
    assert error.value.field == "invocation_type"


# ---------------------------------------------------------------- modelInput by family

FULL = InferenceSettings(max_tokens=50, temperature=0.2, top_p=0.9, system="be brief")
LLAMA3_PROMPT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)
LLAMA4_PROMPT = (
    "<|begin_of_text|><|header_start|>system<|header_end|>\n\nbe brief<|eot|>"
    "<|header_start|>user<|header_end|>\n\nhi<|eot|><|header_start|>assistant<|header_end|>\n\n"
)
BUILT: dict[str, tuple[InferenceSettings, dict[str, Any]]] = {
    "anthropic": (
        InferenceSettings(max_tokens=50, temperature=0.2, top_p=0.9, top_k=40, system="be brief"),
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "system": "be brief",
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
        },
    ),
    "nova": (
        InferenceSettings(max_tokens=50, temperature=0.2, top_p=0.9, top_k=40, system="be brief"),
        {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "system": [{"text": "be brief"}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "topK": 40},
        },
    ),
    "llama3": (FULL, {"prompt": LLAMA3_PROMPT, "max_gen_len": 50, "temperature": 0.2, "top_p": 0.9}),
    "llama4": (FULL, {"prompt": LLAMA4_PROMPT, "max_gen_len": 50, "temperature": 0.2, "top_p": 0.9}),
    "mistral-text": (
        InferenceSettings(max_tokens=50, temperature=0.2, top_p=0.9, top_k=40, system="be brief"),
        {"prompt": "<s>[INST] be brief\n\nhi [/INST]", "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "top_k": 40},
    ),
    "mistral-chat": (
        FULL,
        {
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "max_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
        },
    ),
    "converse": (
        FULL,
        {
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "system": [{"text": "be brief"}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9},
        },
    ),
    "titan-embed-text-v2": (
        InferenceSettings(dimensions=512, normalize=False),
        {"inputText": "hi", "dimensions": 512, "normalize": False},
    ),
    "titan-embed-image-v1": (
        InferenceSettings(dimensions=384),
        {"inputText": "hi", "embeddingConfig": {"outputEmbeddingLength": 384}},
    ),
    "cohere-embed": (InferenceSettings(input_type="search_query"), {"texts": ["hi"], "input_type": "search_query"}),
    "nova-multimodal-embed": (
        InferenceSettings(dimensions=384, embedding_purpose="CLUSTERING"),
        {
            "schemaVersion": "nova-multimodal-embed-v1",
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": {
                "embeddingPurpose": "CLUSTERING",
                "embeddingDimension": 384,
                "text": {"truncationMode": "NONE", "value": "hi"},
            },
        },
    ),
}
MINIMAL: dict[str, dict[str, Any]] = {
    "anthropic": {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    },
    "nova": {
        "schemaVersion": "messages-v1",
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 1024},
    },
    "llama3": {
        "prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "max_gen_len": 1024,
    },
    "llama4": {
        "prompt": "<|begin_of_text|><|header_start|>user<|header_end|>\n\nhi<|eot|>"
        "<|header_start|>assistant<|header_end|>\n\n",
        "max_gen_len": 1024,
    },
    "mistral-text": {"prompt": "<s>[INST] hi [/INST]", "max_tokens": 1024},
    "mistral-chat": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1024},
    "converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 1024}},
    "titan-embed-text-v2": {"inputText": "hi"},
    "titan-embed-image-v1": {"inputText": "hi"},
    "cohere-embed": {"texts": ["hi"], "input_type": "search_document"},
    "nova-multimodal-embed": {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 3072,
            "text": {"truncationMode": "NONE", "value": "hi"},
        },
    },
}


def test_every_family_has_a_build_case() -> None:
    assert set(BUILT) == set(MINIMAL) == set(ADAPTERS)


@pytest.mark.parametrize("family", sorted(BUILT))
def test_model_input_carries_the_run_parameters_in_the_family_format(family: str) -> None:
    # GIVEN every parameter the family takes WHEN a record is built THEN the body is the family's documented shape
    settings, expected = BUILT[family]
    adapter = adapter_for_family(family)
    adapter.check_settings(settings)
    assert adapter.build_model_input("hi", settings) == expected


@pytest.mark.parametrize("family", sorted(MINIMAL))
def test_default_parameters_send_only_what_the_family_needs(family: str) -> None:
    assert adapter_for_family(family).build_model_input("hi", InferenceSettings()) == MINIMAL[family]


# ---------------------------------------------------------------- modelOutput by family

VECTOR = [0.5, -1, 0.25]
PARSED: dict[str, list[tuple[dict[str, Any], Any]]] = {
    "anthropic": [
        ({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "stop_reason": "end_turn"}, "ab"),
        ({"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "c"}]}, "c"),
        ({"content": []}, ""),
    ],
    "nova": [
        ({"output": {"message": {"role": "assistant", "content": [{"text": "a"}, {"text": "b"}]}}}, "ab"),
        ({"output": {"message": {"content": [{"reasoningContent": {}}, {"text": "c"}]}}, "stopReason": "x"}, "c"),
        ({"output": {"message": {"role": "assistant", "content": []}}}, ""),
    ],
    "llama3": [({"generation": " hello", "stop_reason": "stop"}, " hello"), ({"generation": ""}, "")],
    "llama4": [({"generation": "hello", "prompt_token_count": 3}, "hello")],
    "mistral-text": [({"outputs": [{"text": "hi", "stop_reason": "stop"}]}, "hi"), ({"outputs": [{"text": ""}]}, "")],
    "mistral-chat": [
        ({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "stop_reason": "stop"}]}, "hi"),
        ({"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": []}}]}, ""),
    ],
    "converse": [
        ({"output": {"message": {"content": [{"text": "a"}]}}, "usage": {}, "metrics": {"latencyMs": 1}}, "a"),
        ({"output": {"message": {"content": []}}}, ""),
    ],
    "titan-embed-text-v2": [({"embedding": VECTOR, "inputTextTokenCount": 1}, [0.5, -1.0, 0.25])],
    "titan-embed-image-v1": [({"embedding": VECTOR, "inputTextTokenCount": 1, "message": None}, [0.5, -1.0, 0.25])],
    "cohere-embed": [
        ({"embeddings": [VECTOR], "response_type": "embeddings_floats", "texts": ["x"]}, [0.5, -1.0, 0.25]),
        (
            {"embeddings": {"float": [VECTOR], "int8": [[1, 2, 3]]}, "response_type": "embeddings_by_type"},
            [0.5, -1.0, 0.25],
        ),
    ],
    "nova-multimodal-embed": [
        ({"embeddings": [{"embeddingType": "TEXT", "embedding": VECTOR}]}, [0.5, -1.0, 0.25]),
        ({"embeddings": [{"embeddingType": "TEXT", "embedding": VECTOR, "truncatedCharLength": 9}]}, [0.5, -1.0, 0.25]),
    ],
}
# Shapes that are not this family's answer: each must be a ValueError (postprocess records UNPARSABLE_OUTPUT).
UNPARSABLE: dict[str, list[dict[str, Any]]] = {
    "anthropic": [{"error": "x"}, {"generation": "x"}],
    "nova": [{"content": [{"type": "text", "text": "x"}]}, {"output": {}}, {"output": {"message": {"content": "x"}}}],
    "llama3": [{"outputs": [{"text": "x"}]}, {"generation": None}],
    "llama4": [{"content": []}],
    "mistral-text": [{"outputs": []}, {"outputs": ["x"]}, {"generation": "x"}],
    "mistral-chat": [{"choices": []}, {"choices": [{"message": {"content": [1]}}]}, {"outputs": [{"text": "x"}]}],
    "converse": [{"content": []}, {"output": {"message": None}}],
    "titan-embed-text-v2": [{"embedding": []}, {"embeddings": [VECTOR]}],
    "titan-embed-image-v1": [{"message": "the input was refused"}],
    "cohere-embed": [{"embeddings": []}, {"embeddings": {"int8": [[1]]}}, {"embedding": VECTOR}],
    "nova-multimodal-embed": [{"embeddings": []}, {"embeddings": [VECTOR]}, {"embeddings": [{"embedding": []}]}],
}


def test_every_family_has_parse_cases() -> None:
    assert set(PARSED) == set(UNPARSABLE) == set(ADAPTERS)


@pytest.mark.parametrize(("family", "output", "expected"), [(f, o, e) for f, cases in PARSED.items() for o, e in cases])
def test_model_output_is_read_from_the_family_shape(family: str, output: dict[str, Any], expected: Any) -> None:
    assert adapter_for_family(family).parse_model_output(output) == expected


@pytest.mark.parametrize(("family", "output"), [(f, o) for f, cases in UNPARSABLE.items() for o in cases])
def test_another_shape_is_a_value_error(family: str, output: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="modelOutput"):
        adapter_for_family(family).parse_model_output(output)


# ---------------------------------------------------------------- parameters by family


@pytest.mark.parametrize(
    ("family", "settings", "field", "message"),
    [
        ("anthropic", InferenceSettings(dimensions=512), "inference_params.dimensions", "remove 'dimensions'"),
        ("nova", InferenceSettings(input_type="search_query"), "inference_params.input_type", "remove"),
        ("llama3", InferenceSettings(top_k=5), "inference_params.top_k", "takes these inference_params"),
        ("llama3", InferenceSettings(max_tokens=4096), "inference_params.max_tokens", "maximum of 2048"),
        ("mistral-chat", InferenceSettings(top_k=5), "inference_params.top_k", "remove 'top_k'"),
        ("converse", InferenceSettings(top_k=5), "inference_params.top_k", "remove 'top_k'"),
        ("titan-embed-text-v2", InferenceSettings(max_tokens=10), "inference_params.max_tokens", "dimensions"),
        ("titan-embed-text-v2", InferenceSettings(dimensions=384), "inference_params.dimensions", "256, 512, 1024"),
        ("titan-embed-text-v2", InferenceSettings(system="x"), "inference_params.system", "remove 'system'"),
        ("titan-embed-image-v1", InferenceSettings(dimensions=512), "inference_params.dimensions", "256, 384, 1024"),
        ("titan-embed-image-v1", InferenceSettings(normalize=True), "inference_params.normalize", "remove"),
        ("cohere-embed", InferenceSettings(dimensions=1024), "inference_params.dimensions", "input_type"),
        ("cohere-embed", InferenceSettings(input_type="query"), "inference_params.input_type", "'search_query'"),
        (
            "nova-multimodal-embed",
            InferenceSettings(dimensions=512),
            "inference_params.dimensions",
            "256, 384, 1024, 3072",
        ),
        (
            "nova-multimodal-embed",
            InferenceSettings(embedding_purpose="SEARCH"),
            "inference_params.embedding_purpose",
            "'GENERIC_INDEX'",
        ),
        (
            "nova-multimodal-embed",
            InferenceSettings(input_type="search_query"),
            "inference_params.input_type",
            "remove",
        ),
    ],
)
def test_parameters_that_make_no_sense_for_the_family_are_clear_errors(
    family: str, settings: InferenceSettings, field: str, message: str
) -> None:
    with pytest.raises(InvalidParameterError) as error:
        adapter_for_family(family).check_settings(settings)
    assert error.value.field == field and message in str(error.value)


@pytest.mark.parametrize("family", sorted(ADAPTERS))
def test_defaults_are_valid_for_every_family(family: str) -> None:
    adapter_for_family(family).check_settings(InferenceSettings())


# ---------------------------------------------------------------- execution input -> plan -> submit


def settings_allowing(*model_ids: str) -> Settings:
    return Settings(
        data_bucket="b",
        bedrock_role_arn="",
        job_timeout_hours=72,
        max_records_per_job=50_000,
        allowed_model_ids=model_ids,
    )


def plan_for(**fields: Any) -> Any:
    allowed = fields.pop("allowed", ())
    payload = {"s3_uri": "s3://bucket/in.csv", **fields}
    return make_plan(ExecutionInput.parse(payload), settings_allowing(*allowed))


def test_inference_params_are_checked_against_the_family_before_any_job() -> None:
    # GIVEN an embedding length Titan v2 does not offer WHEN planned THEN the error names field, value and choices
    with pytest.raises(InputValidationError) as error:
        plan_for(model_id="amazon.titan-embed-text-v2:0", inference_params={"dimensions": 384})
    assert str(error.value) == (
        "field 'inference_params.dimensions': 384 is not accepted by Amazon Titan Text Embeddings V2; "
        "use one of 256, 512, 1024"
    )
    # AND a text parameter on an embedding model is refused, an accepted one passes (Cohere Embed: not a batch model,
    # but an application inference profile's model may be one of its family)
    cohere = {"model_id": f"{ACCOUNT_ARN}:application-inference-profile/abc123", "model_family": "cohere-embed"}
    with pytest.raises(InputValidationError, match="'inference_params.temperature'"):
        plan_for(**cohere, inference_params={"temperature": 0.5})
    assert plan_for(**cohere, inference_params={"input_type": "clustering"}).template is None


def test_converse_plan_and_job_request_use_the_converse_invocation_type() -> None:
    # GIVEN a Converse run of a Llama model
    plan = plan_for(model_id="meta.llama3-1-8b-instruct-v1:0", prompt_id="joke_about_topic", invocation_type="Converse")
    assert (plan.model.family, plan.model.model_family, plan.model.invocation_type) == (
        "converse",
        "llama3",
        "Converse",
    )
    # WHEN its jobs are submitted THEN CreateModelInvocationJob asks for the Converse type
    run = RunContext(
        run_id="r1",
        bucket="b",
        model_id="meta.llama3-1-8b-instruct-v1:0",
        family=plan.model.family,
        output_kind="text",
        invocation_type=plan.model.invocation_type,
        job_name_prefix="p",
        total_records=100,
        num_jobs=1,
        records_key="k",
        manifest_key="m",
    )
    job = JobSpec(index=0, input_key="runs/r1/jobs/0000.jsonl", first_row=0, record_count=100, size_bytes=1)
    request = build_request(JobState(run=run, job=job), role_arn="arn:aws:iam::123456789012:role/r", timeout_hours=24)
    assert request["modelInvocationType"] == "Converse"
    # AND a payload from before the field existed still parses, as InvokeModel
    legacy = run.model_dump(exclude={"invocation_type"})
    assert RunContext.model_validate(legacy).invocation_type == "InvokeModel"


def test_execution_input_rejects_unknown_invocation_types_and_families_with_the_choices() -> None:
    base = {"model_id": "amazon.nova-lite-v1:0", "s3_uri": "s3://bucket/in.csv"}
    with pytest.raises(InputValidationError, match="'invocation_type'.*Converse"):
        ExecutionInput.parse({**base, "invocation_type": "Batch"})
    with pytest.raises(InputValidationError, match="'model_family' = 'gpt'.*use one of"):
        ExecutionInput.parse({**base, "model_family": "gpt"})


def test_allow_list_accepts_arns_of_allowed_ids_and_explains_unreadable_arns() -> None:
    profile = "us.amazon.nova-premier-v1:0"
    # GIVEN a deployment that enables a profile id WHEN the run names it by ARN THEN it is the same model
    arn = f"{ACCOUNT_ARN}:inference-profile/{profile}"
    assert plan_for(model_id=arn, prompt_id="joke_about_topic", allowed=[profile]).model.family == "nova"
    # AND an application profile ARN cannot be enabled through allowedModelIds: the error says why
    app = f"{ACCOUNT_ARN}:application-inference-profile/abc123"
    with pytest.raises(InputValidationError, match="not application-inference-profile ARNs"):
        plan_for(model_id=app, model_family="nova", prompt_id="joke_about_topic", allowed=[profile])
    # AND without an allow-list (local runs) model_family makes it usable
    assert plan_for(model_id=app, model_family="nova", prompt_id="joke_about_topic").model.family == "nova"


# ---------------------------------------------------------------- one list of prefixes, stdlib only


def test_stacks_use_the_registry_profile_prefixes_and_agree_on_every_configured_model() -> None:
    assert tuple(f"{geo}." for geo in PROFILE_PREFIXES) == config.INFERENCE_PROFILE_PREFIXES
    allowed = json.loads((ROOT / "cdk.json").read_text())["context"]["allowedModelIds"]
    for model_id in allowed:
        ref = resolve(model_id).ref  # every configured model belongs to a family
        assert config.is_inference_profile(model_id) == (ref.profile_geo is not None)
        assert config.base_model_id(model_id) == ref.base_model_id
    # one model per family at least, but Cohere Embed and Nova Multimodal Embeddings: not batch models
    # (docs/bedrock-facts.md, Batch job requests)
    on_demand_only = {"cohere-embed", "nova-multimodal-embed"}
    assert {resolve(model_id).family for model_id in allowed} == set(MODEL_FAMILIES) - on_demand_only


def test_the_registry_imports_the_standard_library_only() -> None:
    # stacks/config/ imports it at synth: it must not pull pydantic, boto3 or pyarrow into the CDK app
    code = (
        "import sys; import lambdas.shared.model_families; "
        "print(sorted(m for m in ('pydantic', 'boto3', 'botocore', 'pyarrow', 'aws_lambda_powertools') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
