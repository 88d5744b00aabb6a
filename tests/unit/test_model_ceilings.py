"""Per-model limits of the model registry: a run whose inference_params a model would refuse in every record is
refused before any record is built, with the field and the fix."""

from __future__ import annotations

import pytest

from lambdas.shared.model_families import InferenceSettings, InvalidParameterError, resolve


@pytest.mark.parametrize(
    ("model_id", "invocation_type", "ceiling"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel", 4096),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "InvokeModel", 8192),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "InvokeModel", 64000),
        ("amazon.nova-lite-v1:0", "InvokeModel", 5000),
        ("us.meta.llama4-scout-17b-instruct-v1:0", "InvokeModel", 2048),
        ("meta.llama3-1-8b-instruct-v1:0", "Converse", 2048),
        ("mistral.mistral-small-2402-v1:0", "InvokeModel", 8192),
    ],
)
def test_max_tokens_above_the_model_ceiling_is_refused(model_id: str, invocation_type: str, ceiling: int) -> None:
    # GIVEN a resolved model WHEN max_tokens is its ceiling THEN it passes
    model = resolve(model_id, invocation_type=invocation_type)
    model.check_settings(InferenceSettings(max_tokens=ceiling))
    # WHEN it is one more THEN the run is refused, naming the field, the model and the ceiling
    with pytest.raises(InvalidParameterError) as error:
        model.check_settings(InferenceSettings(max_tokens=ceiling + 1))
    assert error.value.field == "inference_params.max_tokens"
    assert f"'{model_id}'" in str(error.value) and f"max_tokens <= {ceiling}" in str(error.value)


def test_the_default_max_tokens_fits_every_ceiling_and_embeddings_have_none() -> None:
    # GIVEN the default settings WHEN checked for the smallest ceiling THEN they pass; an embedding model has no ceiling
    resolve("anthropic.claude-3-haiku-20240307-v1:0").check_settings(InferenceSettings())
    assert resolve("amazon.titan-embed-text-v2:0").max_output_tokens is None


@pytest.mark.parametrize("top_k", [0, 201])
def test_mistral_text_top_k_outside_1_to_200_is_refused(top_k: int) -> None:
    # GIVEN Mistral Small (text completion) WHEN top_k is outside 1-200 THEN the run is refused with the bound
    with pytest.raises(InvalidParameterError, match="top_k|minimum|maximum") as error:
        resolve("mistral.mistral-small-2402-v1:0").check_settings(InferenceSettings(top_k=top_k))
    assert error.value.field == "inference_params.top_k"
