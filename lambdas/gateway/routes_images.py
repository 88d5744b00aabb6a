"""``POST /v1/images/generations``: OpenAI's image API over the gateway's image bots (``lambdas.gateway.images``, the
same generation as the Poe route's).

Request: ``prompt``, ``model`` (an image bot), ``n`` (at most the bot's ``image_options.max_images``), ``size``
(``WIDTHxHEIGHT``: one of the bot's sizes; for Stability bots, a size whose aspect ratio is one of the bot's),
``quality`` (``auto``, or the bot's: ``standard``, ``premium`` - ``hd`` stands for ``premium``), ``response_format``
(``url``: a presigned link to the media bucket, as on the Poe route; ``b64_json``: the PNG itself), ``output_format``
(``png`` only), ``user`` (accepted, not used); ``seed`` and ``negative_prompt`` as extra body fields. Answer:
``{"created", "data": [{"url" | "b64_json", "revised_prompt"}], "output_format", "size"}``; the prompt is never
revised, so ``revised_prompt`` is the prompt as sent. Every refused value is a 400 naming the field and what is
accepted. Keys, body limits, correlation ids, guardrails, errors and per-bot metrics are the chat route's.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.error_shapes import error_response, invalid_body
from lambdas.gateway.errors import USER_CAUSED, GatewayError, from_bedrock
from lambdas.gateway.factory import BotHandler
from lambdas.gateway.images import ImageBot
from lambdas.gateway.parameters import image_settings
from lambdas.gateway.routes_common import model_request

SIZE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
QUALITY_ALIASES = {"hd": "premium"}  # OpenAI's DALL-E 3 name for the better quality
OUTPUT_FORMATS = ("png",)  # the gateway asks every model for PNG
EXTRA_PARAMETERS = ("seed", "negative_prompt")  # extra body fields passed on as image parameters
# OpenAI fields the gateway cannot honour: refused when set to anything but their neutral value
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "style": (None,),
    "background": (None, "auto"),
    "moderation": (None, "auto"),
    "output_compression": (None,),
    "partial_images": (None, 0),
    "stream": (None, False),
}


def invalid(message: str) -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code="invalid_parameter")


class OpenAIImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # EXTRA_PARAMETERS and UNSUPPORTED are read from the extra fields

    prompt: str
    model: str
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: str | None = None
    user: str | None = None


def image_parameters(config: BotConfig, body: OpenAIImageRequest) -> dict[str, Any]:
    """The request's fields as the bot's image parameters (``lambdas.gateway.parameters``), or a 400 naming the
    field and the accepted values."""
    extra = body.model_extra or {}
    for name, neutral in UNSUPPORTED.items():
        if extra.get(name) not in neutral:
            raise invalid(f"'{name}' = {extra[name]!r} is not supported by the gateway's image models; remove it.")
    if body.output_format not in (None, *OUTPUT_FORMATS):
        raise invalid(f"'output_format' = {body.output_format!r}: the gateway answers {', '.join(OUTPUT_FORMATS)}.")
    options = config.images
    parameters: dict[str, Any] = {name: extra[name] for name in EXTRA_PARAMETERS if extra.get(name) is not None}
    if body.n is not None:
        if body.n > options.max_images:
            raise invalid(f"'n' = {body.n} is over the limit of bot '{config.name}': at most {options.max_images}.")
        parameters["number_of_images"] = body.n
    parameters |= size_parameter(config, body.size)
    if body.quality not in (None, "auto"):
        quality = QUALITY_ALIASES.get(body.quality, body.quality)
        if quality not in options.qualities:
            accepted = ["auto", *options.qualities, *(a for a, q in QUALITY_ALIASES.items() if q in options.qualities)]
            raise invalid(
                f"'quality' = {body.quality!r} is not offered by bot '{config.name}'; use {', '.join(accepted)}."
            )
        parameters["quality"] = quality
    return parameters


def size_parameter(config: BotConfig, size: str | None) -> dict[str, str]:
    """``size`` as the bot's ``size`` (Nova Canvas, Titan) or ``aspect_ratio`` (Stability) parameter."""
    if size in (None, "auto"):
        return {}
    options = config.images
    match = SIZE.match(size or "")
    if options.sizes:
        if size not in options.sizes:
            raise invalid(
                f"'size' = {size!r} is not offered by bot '{config.name}'; use one of {', '.join(options.sizes)}."
            )
        return {"size": str(size)}
    examples = ", ".join(ratio_size(ratio) for ratio in options.aspect_ratios)
    if match is not None:
        width, height = int(match.group(1)), int(match.group(2))
        divisor = math.gcd(width, height)
        ratio = f"{width // divisor}:{height // divisor}"
        if ratio in options.aspect_ratios:
            return {"aspect_ratio": ratio}
    raise invalid(
        f"'size' = {size!r}: bot '{config.name}' takes a WIDTHxHEIGHT of aspect ratio "
        f"{', '.join(options.aspect_ratios)} (such as {examples}); the model picks the pixels."
    )


def ratio_size(ratio: str) -> str:
    """A size of ``ratio`` ("W:H") whose longer side is 1024 or more, for the error message's examples."""
    width, height = (int(part) for part in ratio.split(":"))
    scale = math.ceil(1024 / max(width, height))
    return f"{width * scale}x{height * scale}"


async def stored_url(bot: ImageBot, image: bytes) -> str:
    """The image in the media bucket, as a presigned URL; an S3 failure is mapped as the Poe route maps it."""
    try:
        return (await bot.store(image)).url
    except Exception as error:
        raise from_bedrock(error) from error


def images_router(
    bots: Mapping[str, BotHandler],
    settings: GatewaySettings,
    authenticated: Callable[[Request], bool],
    authorized: Callable[[Request, BotHandler], bool],
) -> APIRouter:
    """The route, with the app's bots, settings, and its key checks (any key of the gateway; the bot's)."""
    router = APIRouter()

    @router.post("/v1/images/generations", response_model=None)
    async def generations(request: Request) -> JSONResponse:
        try:
            body, bot = await model_request(request, OpenAIImageRequest, bots, settings, authenticated, authorized)
            if not isinstance(bot, ImageBot):
                painters = sorted(name for name, other in bots.items() if isinstance(other, ImageBot))
                raise invalid(
                    f"'model' = '{body.model}' is a {bot.config.modality} model; /v1/images/generations serves the "
                    f"image models: {', '.join(painters) or 'none configured'}."
                )
            options = image_settings(bot.config, image_parameters(bot.config, body))
            prompt = body.prompt.strip()
            if not prompt:
                raise invalid("'prompt' is empty: describe the image you want.")
            if len(prompt) > bot.max_prompt:
                raise invalid(
                    f"'prompt' has {len(prompt)} characters; bot '{body.model}' takes at most {bot.max_prompt}."
                )
            as_url = body.response_format in (None, "url")
            if as_url:
                bot.media.require()  # before any Bedrock call
            generated = await bot.generate(prompt, options)
            if as_url:
                data = [{"url": await stored_url(bot, image), "revised_prompt": prompt} for image in generated.images]
            else:
                data = [
                    {"b64_json": base64.b64encode(image).decode("ascii"), "revised_prompt": prompt}
                    for image in generated.images
                ]
        except GatewayError as error:
            return error_response(error, openai=True)
        except ValidationError as error:
            return error_response(invalid_body(error.errors()), openai=True)
        size = f"{options.width}x{options.height}" if bot.config.images.sizes else None
        answer: dict[str, Any] = {"created": int(time.time()), "data": data, "output_format": "png"}
        if size:
            answer["size"] = size
        return JSONResponse(answer)

    return router
