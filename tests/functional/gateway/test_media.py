"""Media bots against the emulator and a moto S3 server: images (InvokeModel, the PNG stored in the media bucket) and
Nova Reel videos (StartAsyncInvoke into the media bucket, polled), each answered with a presigned URL: a Poe ``file``
event, or markdown on the OpenAI API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings, load_bots
from lambdas.gateway.images import REQUEST_BODIES
from lambdas.gateway.parameters import image_settings
from local.emulator.jobs import EmulatorState, ManualClock
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, moto_server, parse_sse, poe_messages, poe_query

pytestmark = pytest.mark.anyio
BUCKET = "gateway-media"
PNG = b"\x89PNG\r\n\x1a\n"
NO_RETRIES = Config(retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    yield from moto_server(BUCKET)


@asynccontextmanager
async def running_media_app(
    settings: GatewaySettings, s3_server: str, monkeypatch: pytest.MonkeyPatch, video_poll_seconds: float
) -> AsyncIterator[FastAPI]:
    """The app (lifespan run) with its media bucket on the moto S3 server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    application = create_app(replace(settings, media_bucket=BUCKET, video_poll_seconds=video_poll_seconds))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def media_app(
    emulator: BedrockEmulator, settings: GatewaySettings, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    async with running_media_app(settings, s3_server, monkeypatch, video_poll_seconds=0.01) as application:
        yield application


def http(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_poe_image_bot_answers_with_a_presigned_png(media_app: FastAPI) -> None:
    # GIVEN the Nova Canvas bot and a media bucket
    # WHEN the Poe client asks for an image
    messages = await poe_messages(media_app, "nova-canvas", "a lighthouse at dusk")
    # THEN one attachment arrives, inlined in the text, and its presigned URL serves a PNG
    files = [m.attachment for m in messages if m.attachment is not None]
    assert len(files) == 1 and files[0].content_type == "image/png"
    assert f"[{files[0].inline_ref}]" in "".join(m.text for m in messages)
    assert httpx.get(files[0].url).content.startswith(PNG)


async def test_a_filtered_stability_prompt_is_a_user_caused_poe_error(media_app: FastAPI) -> None:
    # GIVEN a prompt the emulator's content filter blocks ("nsfw") WHEN the SD3.5 bot is asked
    async with http(media_app) as client:
        response = await client.post(
            "/poe/sd3.5-large", json=poe_query("an nsfw cat"), headers={"Authorization": f"Bearer {KEY}"}
        )
    # THEN an error event without retry, typed user_caused_error, then done
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["meta", "error", "done"]
    assert events[1][1]["allow_retry"] is False and events[1][1]["error_type"] == "user_caused_error"


def test_every_size_an_image_bot_offers_is_one_its_model_generates(emulator: BedrockEmulator) -> None:
    # GIVEN the shipped image bots and a Bedrock client of the emulator (which refuses sizes as Bedrock documents)
    runtime = boto3.client(
        "bedrock-runtime", endpoint_url=emulator.endpoint_url, region_name="us-east-1", config=NO_RETRIES
    )
    offered: list[tuple[str, dict[str, Any]]] = []
    for config in load_bots().values():
        if config.modality == "image":
            choices = [{"size": size} for size in config.images.sizes]
            choices += [{"aspect_ratio": ratio} for ratio in config.images.aspect_ratios]
            offered += [(config.name, choice) for choice in choices]
    # WHEN each size or aspect ratio a bot offers (its Poe drop-down, the OpenAI field) is sent as the bot sends it
    refused = []
    for name, choice in offered:
        config = load_bots()[name]
        body = REQUEST_BODIES[config.image_format or "amazon"]("a lighthouse", image_settings(config, choice))
        try:
            runtime.invoke_model(modelId=config.model_id, body=json.dumps(body))
        except ClientError as error:
            refused.append((name, choice, error.response["Error"]["Message"]))
    # THEN the model generates every one of them
    assert len(offered) > 20 and refused == []


async def test_openai_image_answer_is_markdown_with_the_url(media_app: FastAPI) -> None:
    # WHEN the OpenAI API asks the Titan Image bot
    async with http(media_app) as client:
        body = {"model": "titan-image-v2", "messages": [{"role": "user", "content": "a red kite"}]}
        response = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    # THEN the answer is a markdown image whose URL serves a PNG, priced per image
    answer = response.json()
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith("![") and answer["bedrock"]["cost_usd"] == 0.01
    assert httpx.get(content[content.index("(") + 1 : content.rindex(")")]).content.startswith(PNG)


async def test_without_a_media_bucket_image_bots_answer_503(client: httpx.AsyncClient) -> None:
    body = {"model": "nova-canvas", "messages": [{"role": "user", "content": "a cat"}]}
    response = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 503 and "GATEWAY_MEDIA_BUCKET" in response.json()["error"]["message"]


@pytest.fixture
def reel_emulator(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockEmulator]:
    """An emulator that writes Nova Reel outputs into the moto S3 server, with videos ready after a few polls.

    Its clock moves 0.02 s each time it is read, not with the wall clock: a video (2 steps of 0.05 s) is in progress
    for the first reads after it starts however slowly a loaded machine runs the gateway's polls."""
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    clock = ManualClock()

    def ticking() -> datetime:
        clock.advance(0.02)
        return clock()

    with BedrockEmulator(EmulatorState(s3=s3, step_seconds=0.05, clock=ticking)) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        yield server


@pytest.fixture
async def reel_app(
    reel_emulator: BedrockEmulator, settings: GatewaySettings, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    async with running_media_app(settings, s3_server, monkeypatch, video_poll_seconds=0.02) as application:
        yield application


async def ask_for_a_video(app: FastAPI) -> list[tuple[str, Any]]:
    """The SSE events of the answer to a Poe query for a video."""
    async with http(app) as client:
        body = poe_query("waves on a beach")
        response = await client.post("/poe/nova-reel", json=body, headers={"Authorization": f"Bearer {KEY}"})
    return parse_sse(response.text)


async def test_poe_video_bot_shows_progress_then_the_mp4(reel_emulator: BedrockEmulator, reel_app: FastAPI) -> None:
    # GIVEN the Nova Reel bot, a media bucket, and an emulator that takes a moment per video
    # WHEN a Poe query asks for a video
    events = await ask_for_a_video(reel_app)
    # THEN progress lines replace each other, then the MP4 arrives as a file whose URL serves it, then done
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and "error" not in names
    assert names[1] == "replace_response" and "Generating" in events[1][1]["text"]
    video = next(data for name, data in events if name == "file")
    assert video["content_type"] == "video/mp4"
    assert httpx.get(video["url"]).content[4:8] == b"ftyp"
    assert reel_emulator.async_invokes()[0]["status"] == "Completed"


async def test_a_failed_video_is_a_retryable_error(reel_emulator: BedrockEmulator, reel_app: FastAPI) -> None:
    # GIVEN the emulator fails the next video
    reel_emulator.state.faults["video_failed"] = 1
    # WHEN a Poe query asks for a video
    events = await ask_for_a_video(reel_app)
    # THEN the answer ends with a retryable error, then done
    assert events[-2][0] == "error" and events[-2][1]["allow_retry"] is True and events[-1][0] == "done"
