"""Attachments end to end: Poe ``attachments`` and OpenAI ``image_url`` / ``file`` parts become Converse image and
document blocks (the emulator counts each as 100 tokens and echoes only the text), driven by fastapi_poe and openai
against the emulator; http URLs come from a tiny local HTTP server."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import fastapi_poe as fp
import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings
from local.emulator.media import png
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, POE_URL, parse_sse, poe_query
from tests.functional.gateway.test_openai import openai_client
from tests.poe_client import poe_responses

pytestmark = pytest.mark.anyio
PNG = png(8, 8, (200, 30, 30))
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MEDIA_TOKENS = 100  # the emulator's tokens per image or document block
QUESTION = "What is in this picture"


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/cat.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        else:
            self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(settings: GatewaySettings) -> GatewaySettings:
    """The shared settings, with attachment URLs on loopback allowed (the local file server) and Claude 3 Haiku's
    context cut to 5,000 tokens, so that a prompt with an image might not fit and is counted with CountTokens."""
    bots = dict(settings.bots)
    bots["claude-3-haiku"] = bots["claude-3-haiku"].model_copy(update={"context_tokens": 5_000})
    return replace(settings, attachment_private_hosts=True, bots=bots)


@pytest.fixture
async def sdk(app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(app, KEY) as client:
        yield client


async def ask_poe(app: FastAPI, bot: str, message: fp.ProtocolMessage) -> str:
    parts = await poe_responses(POE_URL, bot, [message], api_key=KEY, app=app)
    return "".join(m.text for m in parts if not isinstance(m, fp.MetaResponse))


def user_parts(parts: list[dict[str, Any]]) -> Any:
    """One user message of content parts (typed loosely: the SDK's TypedDicts do not narrow list literals)."""
    return [{"role": "user", "content": parts}]


def data_url(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def words(text: str) -> int:
    return len(text.split())


async def test_a_poe_image_attachment_reaches_the_model_as_an_image_block(
    app: FastAPI, files_url: str, emulator: BedrockEmulator
) -> None:
    # GIVEN a Poe message with a PNG served over http, for the Claude 3 Haiku bot (images_in)
    attachment = fp.Attachment(url=f"{files_url}/cat.png", content_type="image/png", name="cat.png")
    message = fp.ProtocolMessage(role="user", content=QUESTION, attachments=[attachment])
    # WHEN the Poe client asks
    text = await ask_poe(app, "claude-3-haiku", message)
    # THEN the model answered (the emulator echoes the text only) and counted the image before the call
    assert text == QUESTION
    assert emulator.calls().get("CountTokens") == 1


async def test_openai_data_url_image_is_counted_as_an_image(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN an OpenAI message with a text part and an image_url part holding a data: URL
    content: list[dict[str, Any]] = [
        {"type": "text", "text": QUESTION},
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
    ]
    # WHEN the Claude 3 Haiku bot is asked
    answer = await sdk.chat.completions.create(model="claude-3-haiku", messages=user_parts(content))
    # THEN the prompt holds the text and one media block, and CountTokens saw the same prompt
    assert answer.choices[0].message.content == QUESTION
    assert answer.usage is not None and answer.usage.prompt_tokens == words(QUESTION) + MEDIA_TOKENS
    bedrock: dict[str, Any] = answer.model_extra["bedrock"]  # type: ignore[index]
    assert bedrock["counted_input_tokens"] == answer.usage.prompt_tokens
    assert bedrock["token_count_source"] == "count_tokens"


async def test_openai_http_image_url_is_downloaded(sdk: openai.AsyncOpenAI, files_url: str) -> None:
    # GIVEN an image_url with an http URL and no declared type (the bytes tell it is a PNG)
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"{files_url}/cat.png"}},
    ]
    answer = await sdk.chat.completions.create(model="nova-lite", messages=user_parts(content))
    assert answer.usage is not None and answer.usage.prompt_tokens == 1 + MEDIA_TOKENS


async def test_openai_pdf_file_part_becomes_a_document_block(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a PDF as an OpenAI file part, for a bot that reads documents
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "Summarise this"},
        {"type": "file", "file": {"file_data": data_url("application/pdf", PDF), "filename": "report.v2.pdf"}},
    ]
    answer = await sdk.chat.completions.create(model="claude-3.5-sonnet", messages=user_parts(content))
    # THEN Converse accepted it as one document block beside the text
    assert answer.usage is not None and answer.usage.prompt_tokens == 2 + MEDIA_TOKENS


async def test_poe_text_attachment_is_inlined_from_its_parsed_content(app: FastAPI) -> None:
    # GIVEN a text file Poe already parsed (its URL is never fetched)
    attachment = fp.Attachment(
        url="http://127.0.0.1:9/never-fetched.txt",
        content_type="text/plain",
        name="notes.txt",
        parsed_content="buy milk",
    )
    message = fp.ProtocolMessage(role="user", content="Summarise my notes", attachments=[attachment])
    # WHEN the bot is asked THEN the echo holds the inlined file, then the question
    text = await ask_poe(app, "claude-3.5-sonnet", message)
    assert text == '<attachment name="notes.txt">\nbuy milk\n</attachment>\nSummarise my notes'


async def test_an_image_for_a_bot_without_images_in_is_a_user_caused_error(
    app: FastAPI, client: httpx.AsyncClient, emulator: BedrockEmulator
) -> None:
    # GIVEN the Llama 3.1 8B bot (no images_in) and an image attachment
    attachment = {"url": data_url("image/png", PNG), "content_type": "image/png", "name": "cat.png"}
    query = poe_query(QUESTION)
    query["query"][0]["attachments"] = [attachment]
    # WHEN asked THEN an error without retry, typed user_caused_error, says what the bot takes; no model call
    response = await client.post("/poe/llama-3.1-8b", json=query, headers={"Authorization": f"Bearer {KEY}"})
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["meta", "error", "done"]
    error = events[1][1]
    assert error["allow_retry"] is False and error["error_type"] == "user_caused_error"
    assert "cannot read images" in error["text"] and "cat.png" in error["text"]
    assert "ConverseStream" not in emulator.calls()
    # AND the Poe client raises BotErrorNoRetry
    message = fp.ProtocolMessage(role="user", content=QUESTION, attachments=[fp.Attachment(**attachment)])
    with pytest.raises(fp.BotErrorNoRetry):
        await ask_poe(app, "llama-3.1-8b", message)


@pytest.mark.parametrize(
    ("model", "part", "expected"),
    [
        ("llama-3.1-8b", {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}}, "cannot read images"),
        ("claude-3-haiku", {"type": "image_url", "image_url": {"url": data_url("image/bmp", b"BM")}}, "image/bmp"),
        (
            "claude-3.5-sonnet",
            {"type": "file", "file": {"file_data": data_url("application/zip", b"PK"), "filename": "a.zip"}},
            "application/zip",
        ),
        ("claude-3-haiku", {"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/gone.png"}}, "downloaded"),
    ],
)
async def test_unsupported_attachments_are_openai_400s(
    sdk: openai.AsyncOpenAI, model: str, part: dict[str, Any], expected: str
) -> None:
    content = [{"type": "text", "text": "Look"}, part]
    with pytest.raises(openai.APIStatusError) as error:
        await sdk.chat.completions.create(model=model, messages=user_parts(content))
    assert expected in error.value.message


async def test_a_missing_http_file_is_a_400_and_an_oversized_one_is_refused(
    emulator: BedrockEmulator, settings: GatewaySettings, files_url: str
) -> None:
    # GIVEN a gateway whose attachments may be at most 16 bytes
    application = create_app(replace(settings, attachment_max_bytes=16))
    async with application.router.lifespan_context(application), openai_client(application, KEY) as sdk:
        for url, expected in ((f"{files_url}/cat.png", "over 16 bytes"), (f"{files_url}/none.png", "HTTP 404")):
            content: list[dict[str, Any]] = [{"type": "text", "text": "Look"}]
            content.append({"type": "image_url", "image_url": {"url": url}})
            with pytest.raises(openai.BadRequestError) as error:
                await sdk.chat.completions.create(model="nova-lite", messages=user_parts(content))
            assert expected in error.value.message


@pytest.mark.parametrize(
    ("bot", "attachments", "images"),
    [("claude-3.5-sonnet", True, True), ("llama-3.1-8b", False, False), ("nova-canvas", False, False)],
)
async def test_settings_allow_attachments_from_the_bot_flags(
    client: httpx.AsyncClient, bot: str, attachments: bool, images: bool
) -> None:
    response = await client.post(
        f"/poe/{bot}", json={"version": "1.2", "type": "settings"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    settings = fp.SettingsResponse.model_validate(response.json())
    assert settings.allow_attachments is attachments and settings.enable_image_comprehension is images


async def test_attachment_urls_on_private_addresses_are_refused_by_default(
    emulator: BedrockEmulator, settings: GatewaySettings, files_url: str
) -> None:
    # GIVEN the gateway as deployed (no private hosts) and an image URL on loopback (as the metadata service would be)
    application = create_app(replace(settings, attachment_private_hosts=False))
    async with application.router.lifespan_context(application), openai_client(application, KEY) as sdk:
        content: list[dict[str, Any]] = [{"type": "text", "text": "Look"}]
        content.append({"type": "image_url", "image_url": {"url": f"{files_url}/cat.png"}})
        # WHEN asked THEN a 400 says attachment URLs must be public, and nothing is fetched from the host
        with pytest.raises(openai.BadRequestError) as error:
            await sdk.chat.completions.create(model="nova-lite", messages=user_parts(content))
    assert "must be public" in error.value.message
