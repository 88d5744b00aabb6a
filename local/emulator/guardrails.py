"""Amazon Bedrock Guardrails, emulated deterministically: Converse/ConverseStream ``guardrailConfig`` and
``ApplyGuardrail``.

Every well-formed guardrail id (or ARN) and version exists (the service model's patterns are checked by the protocol
layer; an empty identifier or version is refused here, as the service does). A guardrail intervenes when the text it
checks contains one of ``Guardrails.blocked_words`` (default ``BLOCKME``, case-insensitive, whole words):

- Converse / ConverseStream: the prompt (system and message texts) is checked; on a hit the model is not invoked:
  the answer's text is the guardrail's blocked-input message, ``stopReason`` is ``guardrail_intervened``, and with
  ``trace: enabled`` the metadata's ``trace.guardrail`` carries the input assessment (word policy, the match) and
  ``actionReason``. Without a hit, ``trace.guardrail`` (tracing on) carries an assessment with no finding.
- Converse / ConverseStream, the answer: when the prompt passes, the model's text is checked against
  ``blocked_words`` and ``output_blocked_words`` (default ``BLOCKOUTPUT``: a word filter on outputs only, as a word
  with ``inputEnabled: false`` is). On a hit ``stopReason`` is ``guardrail_intervened``, the trace (tracing on) adds
  ``outputAssessments`` and ``actionReason``, and the text is the blocked-output message: all of it in Converse;
  in ConverseStream (``streamProcessingMode``, user guide "Configure streaming response behavior to filter
  content") ``sync`` scans each chunk before sending it, so the words before the one that matched are streamed, then
  the message; ``async`` sends chunks at once and scans them behind, so the matching word and one more are streamed
  before the message (how far async runs ahead is undocumented: the emulator lets one chunk past the match).
- ApplyGuardrail (``source`` ``INPUT``: ``blocked_words``; ``OUTPUT``: those and ``output_blocked_words``): ``action``
  ``GUARDRAIL_INTERVENED`` with the blocked-input (or -output) message in ``outputs`` and the assessment, or ``NONE``;
  ``usage`` counts one word-policy unit per 1,000 characters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from local.emulator.conversation import Answer
from local.emulator.errors import validation_error

DEFAULT_BLOCKED_WORDS = ("BLOCKME",)
DEFAULT_OUTPUT_BLOCKED_WORDS = ("BLOCKOUTPUT",)
BLOCKED_INPUT_MESSAGE = "Sorry, the model cannot answer this question."  # the console's default blocked messaging
BLOCKED_OUTPUT_MESSAGE = "Sorry, the model cannot answer this question."  # the same default for outputs
ASYNC_SCAN_LAG = 1  # words an async-mode stream sends past the one that matched
ACTION_REASON = "Guardrail blocked."
INTERVENED = "guardrail_intervened"


@dataclass(frozen=True)
class GuardedAnswer(Answer):
    """An answer with the guardrail's trace beside the prompt router's (``trace.guardrail``)."""

    guardrail_trace: dict[str, Any] | None = None

    def trace(self) -> dict[str, Any] | None:
        base = super().trace() or {}
        if self.guardrail_trace is None:
            return base or None
        return {**base, "guardrail": self.guardrail_trace}


def guardrail_id(identifier: str) -> str:
    """The id of an id or ARN (``arn:...:guardrail/<id>``)."""
    return identifier.rsplit("/", 1)[-1]


def check_config(config: Mapping[str, Any]) -> None:
    """What the model's patterns let through but the service refuses: an empty identifier or version."""
    if not config.get("guardrailIdentifier") or not config.get("guardrailVersion"):
        raise validation_error("The guardrail identifier and version must not be empty.")


class Guardrails:
    """The account's guardrails; ``blocked_words``, ``output_blocked_words``, ``blocked_message`` and
    ``blocked_output_message`` can be changed at any time."""

    def __init__(self) -> None:
        self.blocked_words: list[str] = list(DEFAULT_BLOCKED_WORDS)
        self.output_blocked_words: list[str] = list(DEFAULT_OUTPUT_BLOCKED_WORDS)
        self.blocked_message = BLOCKED_INPUT_MESSAGE
        self.blocked_output_message = BLOCKED_OUTPUT_MESSAGE

    def matches(self, text: str, words: Sequence[str] | None = None) -> list[str]:
        return [
            word
            for word in (self.blocked_words if words is None else words)
            if word and re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE)
        ]

    def assessment(self, text: str, matches: Sequence[str]) -> dict[str, Any]:
        """A ``GuardrailAssessment`` of ``text``: the word policy's findings, metrics and coverage."""
        units = max(1, math.ceil(len(text) / 1000))
        usage = {
            "topicPolicyUnits": 0,
            "contentPolicyUnits": 0,
            "wordPolicyUnits": units,
            "sensitiveInformationPolicyUnits": 0,
            "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": 0,
        }
        assessment: dict[str, Any] = {
            "invocationMetrics": {
                "guardrailProcessingLatency": 1,
                "usage": usage,
                "guardrailCoverage": {"textCharacters": {"guarded": len(text), "total": len(text)}},
            }
        }
        if matches:
            words = [{"match": word, "action": "BLOCKED", "detected": True} for word in matches]
            assessment["wordPolicy"] = {"customWords": words, "managedWordLists": []}
        return assessment

    def guard(self, request: Mapping[str, Any], result: Answer, *, streaming: bool = False) -> Answer:
        """``result`` as the request's ``guardrailConfig`` (if any) lets it through: unchanged, or blocked (the input,
        or the output; ``streaming``: a ConverseStream answer, blocked as its ``streamProcessingMode`` says)."""
        config = request.get("guardrailConfig")
        if not config:
            return result
        check_config(config)
        prompt = "\n".join(_prompt_texts(request))
        matches = self.matches(prompt)
        tracing = config.get("trace", "disabled") in ("enabled", "enabled_full")
        key = guardrail_id(config["guardrailIdentifier"])
        trace: dict[str, Any] | None = None
        if tracing:
            trace = {"inputAssessment": {key: self.assessment(prompt, matches)}}
            if matches:
                trace["actionReason"] = ACTION_REASON
        guarded = GuardedAnswer(**{f.name: getattr(result, f.name) for f in fields(result)}, guardrail_trace=trace)
        if not matches:
            return self._guard_output(config, guarded, streaming)
        return replace(
            guarded,
            text=self.blocked_message,
            stop_reason=INTERVENED,
            stop_sequence=None,
            reasoning=None,
            tool_uses=(),
        )

    def _guard_output(self, config: Mapping[str, Any], result: GuardedAnswer, streaming: bool) -> Answer:
        """The model's text through the output filters: unchanged, or replaced by the blocked-output message."""
        found = self.matches(result.text, [*self.blocked_words, *self.output_blocked_words])
        if not found:
            return result
        trace = result.guardrail_trace
        if trace is not None:
            key = guardrail_id(config["guardrailIdentifier"])
            outputs = {"outputAssessments": {key: [self.assessment(result.text, found)]}, "actionReason": ACTION_REASON}
            trace = {**trace, **outputs}
        text = self.blocked_output_message
        if streaming:  # what the stream sent before the guardrail stopped it, then the message
            pieces = re.findall(r"\s*\S+", result.text)
            hit = next(n for n, piece in enumerate(pieces) if self.matches(piece, found))
            lag = ASYNC_SCAN_LAG + 1 if config.get("streamProcessingMode") == "async" else 0
            sent = "".join(pieces[: hit + lag])
            text = f"{sent} {text}" if sent else text
        return replace(
            result,
            text=text,
            stop_reason=INTERVENED,
            stop_sequence=None,
            tool_uses=(),
            guardrail_trace=trace,
        )

    def apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The ``ApplyGuardrail`` answer for its (validated) parameters."""
        check_config(params)
        texts = [block["text"]["text"] for block in params.get("content") or [] if "text" in block]
        text = "\n".join(texts)
        output = params.get("source") == "OUTPUT"  # the output-only words check model outputs only
        matches = self.matches(text, [*self.blocked_words, *self.output_blocked_words] if output else None)
        assessment = self.assessment(text, matches)
        answer: dict[str, Any] = {
            "usage": assessment["invocationMetrics"]["usage"],
            "action": "GUARDRAIL_INTERVENED" if matches else "NONE",
            "outputs": [{"text": self.blocked_output_message if output else self.blocked_message}] if matches else [],
            "assessments": [assessment],
            "guardrailCoverage": assessment["invocationMetrics"]["guardrailCoverage"],
        }
        if matches:
            answer["actionReason"] = ACTION_REASON
        return answer


def _prompt_texts(request: Mapping[str, Any]) -> list[str]:
    """The texts a guardrail checks: system blocks and message text blocks (``guardContent`` included)."""
    texts = [block["text"] for block in request.get("system") or [] if isinstance(block.get("text"), str)]
    for message in request.get("messages") or []:
        for block in message.get("content") or []:
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif "guardContent" in block:
                texts.append(block["guardContent"].get("text", {}).get("text", ""))
    return texts
