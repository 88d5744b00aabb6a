"""OpenAI image requests mapped to the image bots' parameters and InvokeModel bodies, without AWS."""

from __future__ import annotations

import re
from typing import Any

import pytest

from lambdas.gateway.config import load_bots
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.images import amazon_body, stability_body
from lambdas.gateway.parameters import image_settings
from lambdas.gateway.routes_images import OpenAIImageRequest, image_parameters, ratio_size, size_parameter

BOTS = load_bots()


def request(**fields: Any) -> OpenAIImageRequest:
    return OpenAIImageRequest.model_validate({"model": "x", "prompt": "a fox", **fields})


def test_sizes_map_to_the_bots_sizes_or_aspect_ratios() -> None:
    # GIVEN Nova Canvas (sizes) and SD3.5 Large (aspect ratios)
    canvas, stability = BOTS["nova-canvas"], BOTS["sd3.5-large"]
    # WHEN OpenAI sizes are mapped THEN Canvas keeps the size, Stability gets its reduced ratio
    assert size_parameter(canvas, "1280x720") == {"size": "1280x720"}
    assert size_parameter(stability, "1536x1024") == {"aspect_ratio": "3:2"}
    assert size_parameter(stability, "1024x1024") == {"aspect_ratio": "1:1"}
    assert size_parameter(canvas, "auto") == size_parameter(stability, None) == {}
    # AND a size of no accepted ratio is refused, naming the ratios with an example size of each
    with pytest.raises(GatewayError, match=re.escape("(such as 1024x1024, 1024x576")):
        size_parameter(stability, "1792x1024")
    with pytest.raises(GatewayError, match="use one of 1024x1024, 1280x720"):
        size_parameter(canvas, "512x512")


def test_example_sizes_have_the_ratio_and_a_long_side_of_at_least_1024() -> None:
    for ratio in ("1:1", "16:9", "21:9", "9:21", "2:3"):
        width, height = (int(side) for side in ratio_size(ratio).split("x"))
        w, h = (int(part) for part in ratio.split(":"))
        assert width * h == height * w and max(width, height) >= 1024


def test_a_request_becomes_the_amazon_body_it_asks_for() -> None:
    # GIVEN Nova Canvas and a request with n, size, OpenAI's "hd" and an extra seed
    canvas = BOTS["nova-canvas"]
    body = request(n=3, size="768x1280", quality="hd", seed=7, negative_prompt="rain")
    # WHEN it is mapped to the InvokeModel body
    sent = amazon_body("a fox", image_settings(canvas, image_parameters(canvas, body)))
    # THEN every choice reaches imageGenerationConfig / textToImageParams
    assert sent["imageGenerationConfig"] == {
        "numberOfImages": 3,
        "width": 768,
        "height": 1280,
        "quality": "premium",
        "seed": 7,
    }
    assert sent["textToImageParams"] == {"text": "a fox", "negativeText": "rain"}


def test_a_request_becomes_the_stability_body_it_asks_for() -> None:
    stability = BOTS["stable-image-core"]
    sent = stability_body("a fox", image_settings(stability, image_parameters(stability, request(size="1080x1920"))))
    assert sent["aspect_ratio"] == "9:16" and sent["output_format"] == "png"


@pytest.mark.parametrize(
    ("bot", "fields", "message"),
    [
        ("nova-canvas", {"n": 5}, "'n' = 5 is over the limit of bot 'nova-canvas': at most 4"),
        ("titan-image-v2", {"quality": "medium"}, "'quality' = 'medium' is not offered"),
        ("nova-canvas", {"output_format": "jpeg"}, "'output_format' = 'jpeg'"),
        ("nova-canvas", {"background": "transparent"}, "'background' = 'transparent' is not supported"),
        ("nova-canvas", {"stream": True}, "'stream' = True is not supported"),
    ],
)
def test_refused_fields_are_named(bot: str, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(GatewayError, match=re.escape(message)) as raised:
        image_parameters(BOTS[bot], request(**fields))
    assert raised.value.status == 400


def test_neutral_values_of_unsupported_fields_pass() -> None:
    # GIVEN what SDKs send by default for fields the gateway has no use for WHEN mapped THEN nothing is refused
    assert image_parameters(BOTS["nova-canvas"], request(background="auto", moderation="auto", stream=False)) == {}
