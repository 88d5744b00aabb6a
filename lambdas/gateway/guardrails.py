"""Amazon Bedrock Guardrails on a bot (``guardrail`` in bots.json): the Converse ``guardrailConfig``, the prompt check
of image and video bots (``ApplyGuardrail``, source ``INPUT``) and what an intervention becomes.

An intervention is a user-facing, non-retryable error (HTTP 400 before a stream, Poe ``error`` event or OpenAI error
chunk after it), never the blocked answer dressed as a normal one. Each one leaves a structured log line with the
guardrail's trace and the Bedrock request id, and a ``GuardrailInterventions`` metric by bot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lambdas.gateway.config import BotConfig
from lambdas.gateway.errors import USER_CAUSED, GatewayError
from lambdas.gateway.metrics import GUARDRAIL_INTERVENTIONS, emit
from lambdas.shared.observability import logger

INTERVENED = "guardrail_intervened"  # the Converse stopReason, and the error code the clients see
BLOCKED_MESSAGE = "This request was blocked by the bot's content guardrail. Rephrase it and try again."


def converse_guardrail(bot: BotConfig, *, streaming: bool) -> dict[str, Any] | None:
    """``guardrailConfig`` for Converse (``GuardrailConfiguration``) or ConverseStream
    (``GuardrailStreamConfiguration``, with ``streamProcessingMode``); None for a bot without a guardrail."""
    guardrail = bot.guardrail
    if guardrail is None:
        return None
    config: dict[str, Any] = {
        "guardrailIdentifier": guardrail.identifier,
        "guardrailVersion": guardrail.version,
        "trace": "enabled" if guardrail.trace else "disabled",
    }
    if streaming:
        config["streamProcessingMode"] = guardrail.stream_processing_mode
    return config


def with_guardrail(bot: BotConfig, request: Mapping[str, Any], *, streaming: bool) -> dict[str, Any]:
    """``request`` (Converse members) with the bot's ``guardrailConfig``, if it has a guardrail."""
    config = converse_guardrail(bot, streaming=streaming)
    return {**request, "guardrailConfig": config} if config else dict(request)


def intervention(bot: BotConfig, *, trace: Any, request_id: str | None, source: str) -> GatewayError:
    """Log and count one intervention; the error the client gets. ``trace``: the metadata's ``trace.guardrail``
    (Converse) or the ``assessments`` (ApplyGuardrail); ``source``: ``converse`` or ``apply_guardrail``."""
    guardrail = bot.guardrail
    logger.warning(
        "guardrail intervened",
        bot=bot.name,
        model_id=bot.model_id,
        guardrail_id=guardrail.identifier if guardrail else None,
        guardrail_version=guardrail.version if guardrail else None,
        bedrock_request_id=request_id,
        source=source,
        guardrail_trace=trace,
    )
    emit(GUARDRAIL_INTERVENTIONS, 1, "Count", bot=bot.name)
    return GatewayError(400, BLOCKED_MESSAGE, error_type=USER_CAUSED, code=INTERVENED)


async def check_prompt(bot: BotConfig, runtime: Any, prompt: str) -> None:
    """Image and video bots: the prompt through ``ApplyGuardrail`` (source ``INPUT``) before anything is generated;
    raises the intervention's GatewayError when the guardrail blocks it. Bedrock errors propagate to the caller."""
    guardrail = bot.guardrail
    if guardrail is None:
        return
    response = await runtime.apply_guardrail(
        guardrailIdentifier=guardrail.identifier,
        guardrailVersion=guardrail.version,
        source="INPUT",
        content=[{"text": {"text": prompt}}],
    )
    if response.get("action") == "GUARDRAIL_INTERVENED":
        request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
        trace = response.get("assessments") if guardrail.trace else None
        raise intervention(bot, trace=trace, request_id=request_id, source="apply_guardrail")
