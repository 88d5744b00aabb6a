"""User-chosen parameters (Poe ``parameters`` from the bot's ``parameter_controls``; OpenAI extra body fields),
checked against the bot's allowed values. A bad value is a 400 ``user_caused_error`` naming the allowed ones;
names a bot does not know are ignored.

Image bots (``BotConfig.images``): ``size`` ("1024x1024") or ``width`` + ``height``, ``quality``, ``seed``,
``number_of_images`` (OpenAI ``n``) and ``negative_prompt`` for Nova Canvas / Titan; ``aspect_ratio``,
``negative_prompt`` and ``seed`` for Stability. Text bots: ``temperature``, ``max_tokens`` (within the bot's
limits, as the request fields must be: ``check_limits``) and ``thinking_budget`` (bots with Claude ``thinking``:
1,024 up to below the answer's ``max_tokens``); Poe gets them as ``parameter_controls``
(``text_parameter_controls``).

OpenAI ``reasoning_effort`` (bots with ``capabilities.reasoning`` and a Claude ``thinking`` budget) becomes a thinking
budget relative to the answer's ``max_tokens`` (M): ``none`` -> thinking off; ``minimal`` and ``low`` -> 1,024 (the
minimum); ``medium`` -> max(1,024, M / 2); ``high`` -> max(medium, M - 1,024), so the answer keeps 1,024 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lambdas.gateway.config import BotConfig
from lambdas.gateway.errors import USER_CAUSED, GatewayError
from lambdas.gateway.tools import check_tools
from lambdas.gateway.translate import ChatRequest

MIN_THINKING_BUDGET = 1_024
IMAGE_PARAMETERS = ("size", "width", "height", "quality", "seed", "number_of_images", "aspect_ratio", "negative_prompt")
TEXT_PARAMETERS = ("temperature", "max_tokens", "thinking_budget")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


def invalid(message: str) -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code="invalid_parameter")


def _integer(parameters: Mapping[str, Any], name: str) -> int | None:
    value = parameters.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise invalid(f"Parameter '{name}' must be a whole number, not {value!r}.")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if not isinstance(value, int):
        raise invalid(f"Parameter '{name}' must be a whole number, not {value!r}.")
    return value


def _number(parameters: Mapping[str, Any], name: str) -> float | None:
    value = parameters.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise invalid(f"Parameter '{name}' must be a number, not {value!r}.")
    return number


def _choice(parameters: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = parameters.get(name)
    if value is None or value == "":
        return None
    if not allowed:
        raise invalid(f"This bot has no '{name}' choice.")
    if str(value) not in allowed:
        raise invalid(f"Parameter '{name}' must be one of {', '.join(allowed)}; got {value!r}.")
    return str(value)


# ---------------------------------------------------------------- image bots


@dataclass(frozen=True)
class ImageSettings:
    width: int = 1024
    height: int = 1024
    quality: str | None = None
    seed: int | None = None
    number_of_images: int = 1
    aspect_ratio: str | None = None
    negative_prompt: str | None = None


def image_settings(bot: BotConfig, parameters: Mapping[str, Any]) -> ImageSettings:
    options = bot.images
    size = _choice(parameters, "size", options.sizes)
    width, height = _integer(parameters, "width"), _integer(parameters, "height")
    if size is None and (width is not None or height is not None):
        if width is None or height is None:
            raise invalid("Give both 'width' and 'height' (or 'size').")
        size = _choice({"size": f"{width}x{height}"}, "size", options.sizes)
    size = size or (options.sizes[0] if options.sizes else "1024x1024")
    width, height = (int(side) for side in size.split("x"))
    seed = _integer(parameters, "seed")
    if seed is not None and not 0 <= seed <= options.max_seed:
        if not options.max_seed:
            raise invalid("This bot has no 'seed' choice.")
        raise invalid(f"Parameter 'seed' must be between 0 and {options.max_seed}; got {seed}.")
    count = _integer(parameters, "number_of_images")
    if count is not None and not 1 <= count <= options.max_images:
        raise invalid(f"Parameter 'number_of_images' must be between 1 and {options.max_images}; got {count}.")
    negative = parameters.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise invalid("Parameter 'negative_prompt' must be text.")
    if negative and not options.negative_prompt:
        raise invalid("This bot has no 'negative_prompt' choice.")
    quality = _choice(parameters, "quality", options.qualities)
    return ImageSettings(
        width=width,
        height=height,
        quality=quality or (options.qualities[0] if options.qualities else None),
        seed=seed,
        number_of_images=count or 1,
        aspect_ratio=_choice(parameters, "aspect_ratio", options.aspect_ratios)
        or (options.aspect_ratios[0] if options.aspect_ratios else None),
        negative_prompt=(negative or "").strip() or None,
    )


def image_parameter_controls(bot: BotConfig) -> dict[str, Any]:
    """Poe ``parameter_controls`` (api_version "2") for the bot's image choices."""
    options = bot.images
    controls: list[dict[str, Any]] = []
    if options.aspect_ratios:
        ratios = []
        for ratio in options.aspect_ratios:
            w, h = (int(part) for part in ratio.split(":"))
            ratios.append({"value": ratio, "width": w, "height": h})
        controls.append(
            {
                "control": "aspect_ratio",
                "label": "Aspect ratio",
                "parameter_name": "aspect_ratio",
                "default_value": options.aspect_ratios[0],
                "options": ratios,
            }
        )
    if options.sizes:
        controls.append(
            {
                "control": "drop_down",
                "label": "Size",
                "parameter_name": "size",
                "default_value": options.sizes[0],
                "options": [{"value": size, "name": size.replace("x", " × ")} for size in options.sizes],
            }
        )
    if options.qualities:
        controls.append(
            {
                "control": "drop_down",
                "label": "Quality",
                "parameter_name": "quality",
                "default_value": options.qualities[0],
                "options": [{"value": quality, "name": quality.capitalize()} for quality in options.qualities],
            }
        )
    if options.max_images > 1:
        controls.append(
            {
                "control": "slider",
                "label": "Number of images",
                "parameter_name": "number_of_images",
                "default_value": 1,
                "min_value": 1,
                "max_value": options.max_images,
                "step": 1,
            }
        )
    if options.negative_prompt:
        controls.append(
            {
                "control": "text_field",
                "label": "Negative prompt",
                "parameter_name": "negative_prompt",
                "placeholder": "What the image should not show",
            }
        )
    if options.max_seed:
        controls.append(
            {
                "control": "text_field",
                "label": "Seed",
                "parameter_name": "seed",
                "placeholder": f"0 to {options.max_seed}; empty for random",
            }
        )
    return {"api_version": "2", "sections": [{"name": "Image", "controls": controls}]}


# ---------------------------------------------------------------- text bots


def thinking_enabled(bot: BotConfig) -> bool:
    thinking = (bot.additional_request_fields or {}).get("thinking")
    return isinstance(thinking, Mapping) and thinking.get("type") == "enabled"


def over_limit(name: str, value: Any, limit: str) -> GatewayError:
    error = invalid(f"'{name}' = {value!r} is over this bot's limit: {limit}; lower it (the gateway never clamps).")
    error.param = name
    return error


def check_limits(bot: BotConfig, chat: ChatRequest) -> None:
    """One rule for every numeric request parameter: a value outside the bot's limits is a 400 naming the parameter
    and the limit, never clamped in silence (``max_tokens`` / ``max_completion_tokens``, ``temperature``, the number
    of stop sequences; ``top_p`` is checked against 0-1 when the request is parsed)."""
    limits = bot.inference
    if chat.max_tokens is not None and chat.max_tokens > limits.max_tokens:
        raise over_limit("max_tokens", chat.max_tokens, f"at most {limits.max_tokens} tokens per answer")
    if chat.temperature is not None and chat.temperature > limits.max_temperature:
        raise over_limit("temperature", chat.temperature, f"at most {limits.max_temperature}")
    stops = list(dict.fromkeys([*limits.stop_sequences, *(s for s in chat.stop_sequences if s)]))
    if chat.stop_sequences and len(stops) > limits.max_stop_sequences:
        room = max(0, limits.max_stop_sequences - len(limits.stop_sequences))
        raise over_limit("stop", list(chat.stop_sequences), f"at most {room} stop sequences of the request's own")


def check_capabilities(bot: BotConfig, chat: ChatRequest) -> None:
    """Request features the bot's model lacks (``tools``, ``reasoning_effort``) and values over the bot's limits: a
    400 naming the field and the fix."""
    check_tools(bot, chat.tools)
    check_limits(bot, chat)
    effort = chat.reasoning_effort
    if effort is None:
        return
    if effort not in REASONING_EFFORTS:
        raise invalid(f"'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}; got {effort!r}.")
    if not bot.capabilities.reasoning:
        raise invalid(
            f"Bot '{bot.name}' does not reason, so 'reasoning_effort' = {effort!r} has no effect on it: remove "
            "'reasoning_effort', or ask a reasoning bot (capabilities.reasoning in bots.json)."
        )
    if not thinking_enabled(bot):
        raise invalid(
            f"Bot '{bot.name}' always reasons with a budget of its own: 'reasoning_effort' = {effort!r} cannot tune "
            "it; remove 'reasoning_effort'."
        )


def effort_budget(effort: str, answer_tokens: int) -> int:
    """The thinking budget for a ``reasoning_effort`` (0: thinking off), see the module docstring."""
    if effort == "none":
        return 0
    medium = max(MIN_THINKING_BUDGET, answer_tokens // 2)
    return {"medium": medium, "high": max(medium, answer_tokens - MIN_THINKING_BUDGET)}.get(effort, MIN_THINKING_BUDGET)


def apply_text_parameters(bot: BotConfig, chat: ChatRequest) -> ChatRequest:
    """``chat`` with its text parameters checked and applied (request fields set explicitly stay as they are)."""
    check_capabilities(bot, chat)
    parameters = chat.parameters
    if chat.reasoning_effort is not None:
        if parameters.get("thinking_budget") not in (None, ""):
            raise invalid("Give either 'reasoning_effort' or 'thinking_budget', not both.")
        answer_tokens = min(chat.max_tokens or bot.inference.max_tokens, bot.inference.max_tokens)
        effort_tokens = effort_budget(chat.reasoning_effort, answer_tokens)
        if effort_tokens and effort_tokens >= answer_tokens:
            raise invalid(
                f"'reasoning_effort' = {chat.reasoning_effort!r} needs a thinking budget of {effort_tokens} tokens, "
                f"below the answer's max_tokens ({answer_tokens}); raise max_tokens or use 'none'."
            )
        chat = replace(chat, thinking_budget=effort_tokens)
    if not any(parameters.get(name) not in (None, "") for name in TEXT_PARAMETERS):
        return chat
    temperature = _number(parameters, "temperature")
    if temperature is not None and not 0 <= temperature <= bot.inference.max_temperature:
        raise invalid(
            f"Parameter 'temperature' must be between 0 and {bot.inference.max_temperature}; got {temperature}."
        )
    max_tokens = _integer(parameters, "max_tokens")
    if max_tokens is not None and not 1 <= max_tokens <= bot.inference.max_tokens:
        raise invalid(f"Parameter 'max_tokens' must be between 1 and {bot.inference.max_tokens}; got {max_tokens}.")
    chat = replace(
        chat,
        temperature=chat.temperature if chat.temperature is not None else temperature,
        max_tokens=chat.max_tokens or max_tokens,
    )
    budget = _integer(parameters, "thinking_budget")
    if budget is not None:
        if not thinking_enabled(bot):
            raise invalid("This bot does not think before answering: it has no 'thinking_budget'.")
        answer_tokens = min(chat.max_tokens or bot.inference.max_tokens, bot.inference.max_tokens)
        if not MIN_THINKING_BUDGET <= budget < answer_tokens:
            raise invalid(
                f"Parameter 'thinking_budget' must be from {MIN_THINKING_BUDGET} to {answer_tokens - 1} "
                f"(below the answer's max_tokens); got {budget}."
            )
        chat = replace(chat, thinking_budget=budget)
    return chat


def text_parameter_controls(bot: BotConfig) -> dict[str, Any]:
    """Poe ``parameter_controls`` (api_version "2") for a text bot: temperature (not with Claude thinking, which
    wants the model's own), the answer's max tokens and, for thinking bots, the thinking budget; each with the bot's
    default and limits. The values arrive in the query's ``parameters`` (``apply_text_parameters``)."""
    limits = bot.inference
    controls: list[dict[str, Any]] = []
    thinking = thinking_enabled(bot)
    if not thinking:
        temperature: dict[str, Any] = {
            "control": "slider",
            "label": "Temperature",
            "description": "Lower is more focused, higher more varied; unset: the model's default.",
            "parameter_name": "temperature",
            "min_value": 0,
            "max_value": limits.max_temperature,
            "step": 0.1,
        }
        if limits.temperature is not None:
            temperature["default_value"] = limits.temperature
        controls.append(temperature)
    step = 256 if limits.max_tokens >= 1024 else 1
    controls.append(
        {
            "control": "slider",
            "label": "Max output tokens",
            "parameter_name": "max_tokens",
            "default_value": limits.max_tokens,
            "min_value": step,
            "max_value": limits.max_tokens,
            "step": step,
        }
    )
    if thinking and limits.max_tokens > MIN_THINKING_BUDGET:
        configured = (bot.additional_request_fields or {})["thinking"].get("budget_tokens", MIN_THINKING_BUDGET)
        top = max(MIN_THINKING_BUDGET, (limits.max_tokens - 1) // MIN_THINKING_BUDGET * MIN_THINKING_BUDGET)
        controls.append(
            {
                "control": "slider",
                "label": "Thinking budget (tokens)",
                "description": "Tokens the model may think with before answering; below the max output tokens.",
                "parameter_name": "thinking_budget",
                "default_value": min(max(MIN_THINKING_BUDGET, int(configured)), top),
                "min_value": MIN_THINKING_BUDGET,
                "max_value": top,
                "step": MIN_THINKING_BUDGET,
            }
        )
    return {"api_version": "2", "sections": [{"name": "Answer", "controls": controls}]}
