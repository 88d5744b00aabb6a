"""Image models behind InvokeModel: Amazon Nova Canvas, Titan Image Generator and Stability AI, in their JSON shapes.

Each family checks its request body (sizes: Titan Image Generator takes only the sizes of its table, Nova Canvas any
size within its rules, Stability its aspect ratios; docs/bedrock-facts.md, Images and video) and answers with real
(tiny) PNGs, base64-encoded, whose colour depends on the
prompt, seed and image index (``local.emulator.media``). Only text-to-image is emulated. A prompt containing a
blocked word (``blocked``: a predicate the runtime passes in) is filtered the way the family really reports it:

- Nova Canvas and Titan: ``ValidationException`` "This request has been blocked by our content filters. ..." (the
  Nova user guide's RAI input deflection message);
- Stability: HTTP 200 with ``finish_reasons: ["Filter reason: prompt"]`` and no image.

Add a family: write ``generate_xxx(model_id, body, blocked) -> dict`` and register it in ``IMAGE_FAMILIES`` and
``IMAGE_MODEL_PREFIXES``.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.emulator.errors import ApiError, validation_error
from local.emulator.families import base_model_id
from local.emulator.media import colour_for, png, scaled_size

Blocked = Callable[[str], bool]
ImageGenerator = Callable[[str, dict[str, Any], Blocked], dict[str, Any]]

TEXT_FILTERED = (
    "This request has been blocked by our content filters. Please adjust your text prompt to submit a new request."
)
STABILITY_ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
STABILITY_PIXELS = 1024 * 1024  # about one megapixel, sides rounded to multiples of 64
STABILITY_MAX_SEED = 4_294_967_295
STABILITY_MAX_PROMPT = 10_000


@dataclass(frozen=True)
class AmazonImageLimits:
    max_text: int
    max_seed: int
    sizes: tuple[tuple[int, int], ...] = ()  # only these (width, height); empty: the Nova Canvas rules below


# Titan Image Generator G1 (v1 and v2): the table of supported resolutions of the Bedrock user guide, nothing else.
TITAN_SIZES = (
    (1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384), (768, 1280),
    (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896), (576, 448), (768, 1408),
    (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704), (1408, 640), (704, 320), (1152, 640),
    (1173, 640),
)  # fmt: skip
AMAZON_LIMITS = {
    "nova-canvas": AmazonImageLimits(max_text=1024, max_seed=858_993_459),
    "titan-image": AmazonImageLimits(max_text=512, max_seed=2_147_483_646, sizes=TITAN_SIZES),
}
# Nova Canvas: each side 320-4096 and a multiple of 16, aspect ratio from 1:4 to 4:1, and a pixel limit of 4,194,304;
# whether a size of exactly that many pixels (2048x2048) passes is not clear, so it is refused (the stricter reading).
MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE, MAX_ASPECT, MAX_PIXELS = 320, 4096, 16, 4.0, 4_194_304
MAX_IMAGES = 5


def check_amazon_size(family: str, width: int, height: int) -> None:
    """A ValidationException naming the field and the rule when ``width`` x ``height`` is not a size the model
    (``nova-canvas`` or ``titan-image``) generates."""
    where = "#/imageGenerationConfig"
    sizes = AMAZON_LIMITS[family].sizes
    if sizes:
        if (width, height) not in sizes:
            listed = ", ".join(f"{w}x{h}" for w, h in sizes)
            raise _malformed(f"{where}/width,height: {width}x{height} is not a supported image size ({listed})")
        return
    for name, side in (("width", width), ("height", height)):
        _in_range(side, MIN_SIDE, MAX_SIDE, f"{where}/{name}")
        if side % SIDE_MULTIPLE:
            raise _malformed(f"{where}/{name}: {side} is not a multiple of {SIDE_MULTIPLE}")
    if max(width, height) / min(width, height) > MAX_ASPECT or width * height >= MAX_PIXELS:
        raise validation_error(
            f"The image size {width}x{height} is not supported: the aspect ratio must be between 1:4 and 4:1 and "
            f"the image must have fewer than {MAX_PIXELS} pixels"
        )


def _malformed(detail: str) -> ApiError:
    return validation_error(f"Malformed input request: {detail}, please reformat your input and try again.")


def _get(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    if key not in body:
        return default
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _malformed(f"{where}/{key}: expected type: {getattr(kind, '__name__', 'value')}")
    return value


def _required(body: dict[str, Any], key: str, kind: type, where: str = "#") -> Any:
    if key not in body:
        raise _malformed(f"{where}: required key [{key}] not found")
    return _get(body, key, kind, where)


def _in_range(value: float, low: float, high: float, where: str) -> None:
    if not low <= value <= high:
        raise _malformed(f"{where}: {value} is not in the range {low} to {high}")


def _b64_png(width: int, height: int, *seed_parts: object) -> str:
    return base64.b64encode(png(*scaled_size(width, height), colour_for(*seed_parts))).decode()


# ---------------------------------------------------------------- Amazon (Nova Canvas, Titan Image Generator)


def generate_amazon(model_id: str, body: dict[str, Any], blocked: Blocked) -> dict[str, Any]:
    """``{"taskType": "TEXT_IMAGE", "textToImageParams": {...}, "imageGenerationConfig": {...}}`` ->
    ``{"images": [base64 PNG, ...]}``."""
    limits = AMAZON_LIMITS[image_family(model_id) or "nova-canvas"]
    task = _required(body, "taskType", str)
    if task != "TEXT_IMAGE":
        raise validation_error(f"The emulator only serves taskType TEXT_IMAGE, not {task}")
    params = _required(body, "textToImageParams", dict)
    text = _required(params, "text", str, "#/textToImageParams")
    _in_range(len(text), 1, limits.max_text, "#/textToImageParams/text length")
    negative = _get(params, "negativeText", str, "#/textToImageParams")
    config = _get(body, "imageGenerationConfig", dict, "#", {})
    where = "#/imageGenerationConfig"
    width = _get(config, "width", int, where, 1024)
    height = _get(config, "height", int, where, 1024)
    check_amazon_size(image_family(model_id) or "nova-canvas", width, height)
    count = _get(config, "numberOfImages", int, where, 1)
    _in_range(count, 1, MAX_IMAGES, f"{where}/numberOfImages")
    quality = _get(config, "quality", str, where, "standard")
    if quality not in ("standard", "premium"):
        raise _malformed(f"{where}/quality: {quality} is not a valid enum value")
    seed = _get(config, "seed", int, where, 0)
    _in_range(seed, 0, limits.max_seed, f"{where}/seed")
    cfg_scale = _get(config, "cfgScale", (int, float), where, 8.0)
    _in_range(cfg_scale, 1.1, 10, f"{where}/cfgScale")
    if blocked(text) or (negative is not None and blocked(negative)):
        raise validation_error(TEXT_FILTERED)
    images = [_b64_png(width, height, base_model_id(model_id), text, seed, index) for index in range(count)]
    return {"images": images}


# ---------------------------------------------------------------- Stability AI (SD3.5 Large, Stable Image Core/Ultra)


def stability_size(aspect_ratio: str) -> tuple[int, int]:
    """About one megapixel at ``aspect_ratio`` (``W:H``), sides rounded to multiples of 64: 16:9 -> 1344x768."""
    ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
    ratio = ratio_w / ratio_h
    return round(math.sqrt(STABILITY_PIXELS * ratio) / 64) * 64, round(math.sqrt(STABILITY_PIXELS / ratio) / 64) * 64


def generate_stability(model_id: str, body: dict[str, Any], blocked: Blocked) -> dict[str, Any]:
    """``{"prompt", "aspect_ratio"?, "negative_prompt"?, "seed"?, "output_format"?, "mode"?}`` ->
    ``{"seeds": [...], "finish_reasons": [null | "Filter reason: prompt"], "images": [...]}``."""
    prompt = _required(body, "prompt", str)
    _in_range(len(prompt), 1, STABILITY_MAX_PROMPT, "#/prompt length")
    mode = _get(body, "mode", str, "#", "text-to-image")
    if mode != "text-to-image":
        raise validation_error(f"The emulator only serves mode text-to-image, not {mode}")
    aspect_ratio = _get(body, "aspect_ratio", str, "#", "1:1")
    if aspect_ratio not in STABILITY_ASPECT_RATIOS:
        raise _malformed(f"#/aspect_ratio: {aspect_ratio} is not a valid enum value")
    output_format = _get(body, "output_format", str, "#", "png")
    if output_format != "png":
        raise validation_error(f"The emulator only writes output_format png, not {output_format}")
    negative = _get(body, "negative_prompt", str, "#")
    if negative is not None:
        _in_range(len(negative), 0, STABILITY_MAX_PROMPT, "#/negative_prompt length")
    seed = _get(body, "seed", int, "#", 0)
    _in_range(seed, 0, STABILITY_MAX_SEED, "#/seed")
    if seed == 0:  # 0 means "random": a seed derived from the prompt, so runs repeat
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big") or 1
    if blocked(prompt) or (negative is not None and blocked(negative)):
        return {"seeds": [seed], "finish_reasons": ["Filter reason: prompt"], "images": []}
    width, height = stability_size(aspect_ratio)
    return {
        "seeds": [seed],
        "finish_reasons": [None],
        "images": [_b64_png(width, height, base_model_id(model_id), prompt, seed, 0)],
    }


# ---------------------------------------------------------------- registries

IMAGE_FAMILIES: dict[str, ImageGenerator] = {
    "nova-canvas": generate_amazon,
    "titan-image": generate_amazon,
    "stability": generate_stability,
}
IMAGE_MODEL_PREFIXES: dict[str, str] = {
    "amazon.nova-canvas": "nova-canvas",
    "amazon.titan-image-generator": "titan-image",
    "stability.sd3": "stability",
    "stability.stable-image": "stability",
}


def image_family(model_id: str) -> str | None:
    base = base_model_id(model_id)
    found = [prefix for prefix in IMAGE_MODEL_PREFIXES if base.startswith(prefix)]
    return IMAGE_MODEL_PREFIXES[max(found, key=len)] if found else None
