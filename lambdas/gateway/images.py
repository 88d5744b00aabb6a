"""Image bots: the prompt -> InvokeModel (body by the bot's ``image_format``) -> PNG in S3 -> presigned URL.

Formats (docs/bedrock-facts.md, Images and video): ``amazon`` (Nova Canvas, Titan Image Generator v2:
``TEXT_IMAGE``) answers ``{"images": [b64]}``; ``stability`` (SD3.5 Large, Stable Image Core/Ultra) answers
``{"images", "finish_reasons"}``, where a content filter is a ``"Filter reason: ..."`` finish reason with HTTP 200
(Nova/Titan filters are a ValidationException instead). Either way a filtered prompt is a non-retryable
``user_caused_error``. The sizes a bot offers are checked against its model at start (``BotConfig``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lambdas.gateway.attachments import reject_attachments
from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.errors import USER_CAUSED, GatewayError, from_bedrock
from lambdas.gateway.events import Event, Finished, MediaFile, record_usage
from lambdas.gateway.guardrails import check_prompt
from lambdas.gateway.media import MediaStore
from lambdas.gateway.parameters import ImageSettings, check_capabilities, image_settings
from lambdas.gateway.translate import ChatRequest, PriceBook, Usage

MAX_PROMPT = {"amazon": 512, "stability": 10_000}  # Titan's limit is the lower one of Nova Canvas and Titan


def amazon_body(prompt: str, settings: ImageSettings | None = None) -> dict[str, Any]:
    settings = settings or ImageSettings(quality="standard")
    text: dict[str, Any] = {"text": prompt}
    if settings.negative_prompt:
        text["negativeText"] = settings.negative_prompt[: MAX_PROMPT["amazon"]]
    config: dict[str, Any] = {
        "numberOfImages": settings.number_of_images,
        "width": settings.width,
        "height": settings.height,
        "quality": settings.quality or "standard",
    }
    if settings.seed is not None:
        config["seed"] = settings.seed
    return {"taskType": "TEXT_IMAGE", "textToImageParams": text, "imageGenerationConfig": config}


def stability_body(prompt: str, settings: ImageSettings | None = None) -> dict[str, Any]:
    settings = settings or ImageSettings()
    body: dict[str, Any] = {
        "prompt": prompt,
        "mode": "text-to-image",
        "aspect_ratio": settings.aspect_ratio or "1:1",
        "output_format": "png",
    }
    if settings.negative_prompt:
        body["negative_prompt"] = settings.negative_prompt[: MAX_PROMPT["stability"]]
    if settings.seed is not None:
        body["seed"] = settings.seed
    return body


def image_payloads(answer: Mapping[str, Any]) -> list[bytes]:
    """The PNGs of an answer (either format), or a GatewayError for a filter or a malformed answer."""
    reasons = [reason for reason in answer.get("finish_reasons") or [] if reason]
    if answer.get("error") or reasons:
        detail = answer.get("error") or reasons[0]
        raise GatewayError(400, f"The image was not generated: {detail}", error_type=USER_CAUSED, code="filtered")
    try:
        images = [base64.b64decode(image, validate=True) for image in answer.get("images") or []]
    except (binascii.Error, ValueError, TypeError):
        images = []
    if not images:
        raise GatewayError(502, "The model answered without an image.", allow_retry=True, code="no_image")
    return images


class BodyBuilder(Protocol):
    def __call__(self, prompt: str, settings: ImageSettings | None = None) -> dict[str, Any]: ...


REQUEST_BODIES: dict[str, BodyBuilder] = {
    "amazon": amazon_body,
    "stability": stability_body,
}


async def _replay(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


@dataclass(frozen=True)
class GeneratedImages:
    """The PNGs of one generation, the prompt as sent, and the answer's usage record (already recorded)."""

    images: list[bytes]
    prompt: str
    finished: Finished


class ImageBot:
    """Generates the images of one query (``parameters``: size, quality, seed, ...); answers with presigned URLs.
    ``generate`` and ``store`` also serve ``/v1/images/generations`` (``lambdas.gateway.routes_images``)."""

    def __init__(self, config: BotConfig, clients: AwsClients, prices: PriceBook, settings: GatewaySettings) -> None:
        self.config = config
        self._clients = clients
        self._media = MediaStore(clients, settings)

    @property
    def media(self) -> MediaStore:
        return self._media

    @property
    def max_prompt(self) -> int:
        return MAX_PROMPT[self.config.image_format or "amazon"]

    async def start(self, chat: ChatRequest) -> AsyncIterator[Event]:
        reject_attachments(self.config, chat)
        check_capabilities(self.config, chat)
        options = image_settings(self.config, chat.parameters)
        users = [message.text for message in chat.messages if message.role == "user" and message.text.strip()]
        if not users:
            raise GatewayError(400, "Describe the image you want in a message.", error_type=USER_CAUSED)
        prompt = users[-1].strip()[: self.max_prompt]
        self._media.require()
        generated = await self.generate(prompt, options)
        try:
            files = [await self.store(image) for image in generated.images]
        except GatewayError:
            raise
        except Exception as error:
            raise from_bedrock(error) from error
        return _replay([*files, generated.finished])

    async def generate(self, prompt: str, options: ImageSettings) -> GeneratedImages:
        """The bot's guardrail on ``prompt`` (if any), then one InvokeModel; the usage is recorded (per-image cost)."""
        image_format = self.config.image_format or "amazon"
        started = time.monotonic()
        try:
            runtime = await self._clients.bedrock_runtime(self.config.region)
            await check_prompt(self.config, runtime, prompt)  # the bot's guardrail, if any (ApplyGuardrail)
            response = await runtime.invoke_model(
                modelId=self.config.model_id,
                body=json.dumps(REQUEST_BODIES[image_format](prompt, options)),
                contentType="application/json",
                accept="application/json",
            )
            answer = json.loads(await response["body"].read())
            images = image_payloads(answer)
        except GatewayError:
            raise
        except Exception as error:
            raise from_bedrock(error) from error
        cost = self.config.prices.per_image * len(images)
        finished = Finished("end_turn", Usage(), round((time.monotonic() - started) * 1000), None, cost)
        record_usage(self.config, finished)
        return GeneratedImages(images, prompt, finished)

    async def store(self, image: bytes) -> MediaFile:
        """One PNG in the media bucket, as a presigned URL."""
        key = f"{self._media.prefix(self.config.name)}.png"
        url = await self._media.put(key, image, "image/png")
        return MediaFile(url=url, content_type="image/png", name=key.rsplit("/", 1)[-1])
