import pytest

from lambdas.shared.model_families import (
    InferenceSettings,
    ModelRef,
    UnknownModelError,
    adapter_for_family,
    family_of,
    resolve,
)


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic"),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic"),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic"),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", "anthropic"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0",
            "anthropic",
        ),
        ("amazon.titan-embed-text-v2:0", "titan-embed-text-v2"),
    ],
)
def test_model_ids_resolve_to_their_family(model_id, family):
    assert family_of(model_id) == family


def test_profile_prefix_is_separated_from_the_foundation_model():
    ref = ModelRef.parse("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    assert (ref.profile_geo, ref.base_model_id) == ("us", "anthropic.claude-3-5-haiku-20241022-v1:0")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(UnknownModelError, match="no supported model family"):
        resolve("acme.super-model-v1")


def test_application_profile_arn_explains_what_to_pass_instead():
    with pytest.raises(UnknownModelError, match="application-inference-profile"):
        resolve("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123")


def test_anthropic_model_input_has_the_messages_shape_and_params():
    # GIVEN run parameters WHEN a prompt is built THEN the Messages API body carries them
    body = adapter_for_family("anthropic").build_model_input(
        "hi", InferenceSettings(max_tokens=50, temperature=0.2, top_p=0.9, system="be brief")
    )
    assert body == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "system": "be brief",
        "temperature": 0.2,
        "top_p": 0.9,
    }


def test_anthropic_output_joins_text_blocks_and_allows_empty_content():
    adapter = adapter_for_family("anthropic")
    assert (
        adapter.parse_model_output({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}) == "ab"
    )
    assert adapter.parse_model_output({"content": []}) == ""
    with pytest.raises(ValueError, match="content"):
        adapter.parse_model_output({"error": "x"})


def test_titan_v2_embedding_round_trip():
    adapter = adapter_for_family("titan-embed-text-v2")
    assert adapter.build_model_input("text", InferenceSettings()) == {"inputText": "text"}
    assert adapter.parse_model_output({"embedding": [0.5, 1], "inputTextTokenCount": 1}) == [0.5, 1.0]
    with pytest.raises(ValueError, match="embedding"):
        adapter.parse_model_output({"embedding": []})
