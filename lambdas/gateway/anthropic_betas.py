"""What the Messages API routes do with each ``anthropic-beta`` value (docs/gateway/anthropic.md, "Betas").

One rule, by what a beta asks of the answer:

- ``SERVED``: betas whose feature the gateway serves itself, or that ask nothing of the model: accepted, never
  forwarded (Claude Code's own marker, token counting, prompt caching and its 1-hour TTL and scope, PDFs, adaptive
  thinking, the context-window stop reason, fine-grained tool streaming: the tool input streams as Converse gives it,
  in the same events);
- ``FORWARDED``: betas Bedrock takes for some Claude models (``lambdas.shared.model_families.CLAUDE_BETAS``): passed
  on as Converse ``additionalModelRequestFields.anthropic_beta`` where the bot's model takes them. Each of them only
  permits something (interleaved thinking, a longer output or context, leaner tool tokens, context editing, effort):
  on a model without it the beta is accepted and not forwarded (the answer has the same shape, the model simply does
  not use the feature) and the ``x-gateway-betas-not-forwarded`` response header names it, so nothing is dropped in
  silence;
- any other beta (Files API, MCP connector, code execution, computer use, skills, web search and fetch, tool search,
  and unknown ones) asks for a feature Bedrock's Converse API does not have or the gateway does not translate: a 400
  naming it, as Anthropic's API answers a beta it does not know.

A request field that exists only with its beta (``context_management``, ``output_config``) is forwarded with the
beta; without the beta, or on a model that does not take the beta, it is a 400 naming the field: the client asked
the model to do something it will not do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lambdas.gateway.errors import GatewayError
from lambdas.shared.model_families import CLAUDE_BETAS, claude_betas_of

SERVED = frozenset(
    {
        "claude-code-20250219",  # sent by Claude Code to say it is Claude Code; asks nothing of the model
        "token-counting-2024-11-01",  # POST /v1/messages/count_tokens
        "prompt-caching-2024-07-31",  # cache_control -> cachePoint
        "extended-cache-ttl-2025-04-11",  # cache_control.ttl "1h" -> cachePoint ttl
        "prompt-caching-scope-2026-01-05",  # cache_control.scope: a cache point as any (Bedrock's have no scope)
        "pdfs-2024-09-25",  # document blocks, on bots with documents
        "adaptive-thinking-2026-01-28",  # thinking {type: adaptive}, passed to the model as it is
        "model-context-window-exceeded-2025-08-26",  # the stop reason Converse reports itself
        "fine-grained-tool-streaming-2025-05-14",  # tool input streams as Converse gives it (input_json_delta)
    }
)
FORWARDED = frozenset().union(*CLAUDE_BETAS.values())
# request fields a beta opens -> that beta
FIELD_BETAS = {"context_management": "context-management-2025-06-27", "output_config": "effort-2025-11-24"}
INVALID = "invalid_request_error"


@dataclass(frozen=True)
class Betas:
    """A request's betas for one bot: those forwarded to Bedrock, and those accepted without being forwarded."""

    forwarded: tuple[str, ...] = ()
    not_forwarded: tuple[str, ...] = ()


def parse(header: str) -> tuple[str, ...]:
    """The values of an ``anthropic-beta`` header (comma separated; the SDKs join a list so), in order, once each;
    any beta neither served nor forwarded is a 400 naming it."""
    betas = tuple(dict.fromkeys(beta.strip() for beta in header.split(",") if beta.strip()))
    unknown = [beta for beta in betas if beta not in SERVED | FORWARDED]
    if unknown:
        raise GatewayError(
            400,
            f"Unsupported beta header: {', '.join(unknown)[:200]}. This gateway serves Bedrock's Claude betas where "
            "the model takes them and the betas of features it serves itself (docs/gateway/anthropic.md, 'Betas'); "
            "remove the others.",
            code="beta",
        )
    return betas


def for_model(betas: Iterable[str], model_id: str, fields: Iterable[str], model: str) -> Betas:
    """The betas forwarded to ``model_id`` and those accepted without being forwarded; a beta's request field
    (``fields``: the body fields the request sets) without its beta, or on a model that does not take it, is a 400."""
    given = tuple(betas)
    takes = claude_betas_of(model_id)
    for field in fields:
        beta = FIELD_BETAS.get(field)
        if beta is None:
            continue
        if beta not in given:
            raise GatewayError(
                400, f"{field}: needs the anthropic-beta header '{beta}'; send it, or leave it out.", code=INVALID
            )
        if beta not in takes:
            raise GatewayError(
                400,
                f"{field}: the model '{model}' does not take the beta '{beta}' on Bedrock, so it would not honour "
                f"'{field}'; leave it out, or ask a model that takes it.",
                code=INVALID,
            )
    forwarded = tuple(beta for beta in given if beta in FORWARDED and beta in takes)
    not_forwarded = tuple(beta for beta in given if beta in FORWARDED and beta not in takes)
    return Betas(forwarded, not_forwarded)
