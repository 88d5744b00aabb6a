"""``POST /v1/images/generations`` in-process, driven by the openai SDK against the emulator and a moto S3 media bucket:
url (presigned, as on the Poe route) and b64_json answers, sizes mapped to each model's, ``n`` and quality limits,
and errors naming the field."""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.config import GatewaySettings
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, openai_client
from tests.functional.gateway.test_guardrails import emf_records
from tests.functional.gateway.test_media import PNG, running_media_app, s3_server  # noqa: F401 (fixture)
from tests.functional.gateway.test_metrics import value

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def media_sdk(
    emulator: BedrockEmulator,
    settings: GatewaySettings,
    s3_server: str,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with (
        running_media_app(settings, s3_server, monkeypatch, video_poll_seconds=0.01) as application,
        openai_client(application, KEY) as client,
    ):
        yield client


async def test_url_answers_are_presigned_pngs(media_sdk: openai.AsyncOpenAI) -> None:
    # GIVEN Nova Canvas and a media bucket WHEN the SDK asks for two images as URLs
    answer = await media_sdk.images.generate(
        model="nova-canvas", prompt="a lighthouse at dusk", n=2, size="1280x720", response_format="url"
    )
    # THEN two presigned URLs serve PNGs, with the prompt as sent and the size generated
    assert answer.data is not None and len(answer.data) == 2
    for image in answer.data:
        assert image.url is not None and httpx.get(image.url).content.startswith(PNG)
        assert image.revised_prompt == "a lighthouse at dusk" and image.b64_json is None
    assert answer.size == "1280x720" and answer.output_format == "png" and answer.created > 0


async def test_b64_json_answers_are_the_png_itself(media_sdk: openai.AsyncOpenAI) -> None:
    # GIVEN Titan Image Generator v2 WHEN the SDK asks for base64 JSON
    answer = await media_sdk.images.generate(model="titan-image-v2", prompt="a red kite", response_format="b64_json")
    # THEN the image is in the answer, a PNG, and no URL
    assert answer.data is not None and len(answer.data) == 1
    assert answer.data[0].b64_json is not None and answer.data[0].url is None
    assert base64.b64decode(answer.data[0].b64_json).startswith(PNG)


async def test_b64_json_needs_no_media_bucket(app: FastAPI) -> None:
    # GIVEN the app without a media bucket
    async with openai_client(app, KEY) as sdk:
        # WHEN b64_json is asked for THEN the image comes back
        answer = await sdk.images.generate(model="nova-canvas", prompt="a cat", response_format="b64_json")
        assert answer.data is not None and answer.data[0].b64_json
        # AND a URL answer is the 503 naming the missing bucket
        with pytest.raises(openai.InternalServerError, match="media bucket"):
            await sdk.images.generate(model="nova-canvas", prompt="a cat", response_format="url")


async def test_a_stability_size_becomes_its_aspect_ratio(media_sdk: openai.AsyncOpenAI) -> None:
    # GIVEN SD3.5 Large (aspect ratios, not sizes) WHEN a 3:2 size is asked for
    answer = await media_sdk.images.generate(
        model="sd3.5-large", prompt="a harbour", size="1536x1024", response_format="b64_json"
    )
    # THEN it is generated (the emulator refuses ratios Stability does not take)
    assert answer.data is not None and len(answer.data) == 1


@pytest.mark.parametrize(
    ("model", "fields", "message"),
    [
        (
            "titan-image-v2",
            {"size": "1280x720"},
            "'size' = '1280x720' is not offered by bot 'titan-image-v2'; use one of",
        ),
        ("sd3.5-large", {"size": "1792x1024"}, "takes a WIDTHxHEIGHT of aspect ratio 1:1, 16:9"),
        ("nova-canvas", {"n": 5}, "'n' = 5 is over the limit of bot 'nova-canvas': at most 4"),
        ("sd3.5-large", {"n": 2}, "at most 1"),
        ("nova-canvas", {"quality": "low"}, "use auto, standard, premium, hd"),
        ("sd3.5-large", {"quality": "hd"}, "'quality' = 'hd' is not offered"),
        ("nova-canvas", {"output_format": "webp"}, "the gateway answers png"),
        ("nova-canvas", {"style": "vivid"}, "'style' = 'vivid' is not supported"),
        ("nova-canvas", {"prompt": "x" * 1025}, "'prompt' has 1025 characters"),
        ("nova-lite", {}, "is a text model; /v1/images/generations serves the image models"),
    ],
)
async def test_refused_requests_name_the_field_and_the_accepted_values(
    app: FastAPI, emulator: BedrockEmulator, model: str, fields: dict[str, object], message: str
) -> None:
    # GIVEN a request an image bot cannot honour WHEN it is sent
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        body = {"model": model, "prompt": "a lighthouse", "response_format": "b64_json", **fields}
        response = await client.post("/v1/images/generations", json=body, headers=AUTH)
    # THEN it is a 400 in OpenAI's shape naming the field, and no image was generated
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    assert not emulator.calls().get("InvokeModel")


async def test_each_image_leaves_the_bots_cost_metric(
    media_sdk: openai.AsyncOpenAI, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Nova Canvas at 0.04 USD per image WHEN three images are generated
    await media_sdk.images.generate(model="nova-canvas", prompt="three boats", n=3, response_format="b64_json")
    # THEN one EMF record under the bot carries their cost
    (record,) = emf_records(capfd.readouterr().out)
    assert record["bot"] == "nova-canvas" and math.isclose(value(record, "CostUSD"), 0.12)
