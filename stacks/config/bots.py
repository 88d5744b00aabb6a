"""The gateway's bot file, as far as the stacks need it: which models each bot calls (IAM grants exactly those),
where, with which guardrail. The app reads the rest of the file itself (lambdas/gateway/config.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdas.shared.model_families import price_published
from stacks.config.batch import is_inference_profile
from stacks.config.common import REGION, check_model_id

MODALITIES = ("text", "image", "video", "embedding")
# ARNs a bot's model_id may be instead of a model or system inference-profile id. These name no model, so the bot lists
# the models they send requests to in target_model_ids (IAM must allow those too), except for AWS's default prompt
# routers, whose models are known (below).
_TARGETED_ARN_KINDS = ("prompt-router", "default-prompt-router", "application-inference-profile")
# The models of the default prompt routers (Bedrock "Understanding intelligent prompt routing"; aws-bedrock-alpha
# DefaultPromptRouterIdentifier). A router calls them through the cross-region profile of its region's geography.
DEFAULT_PROMPT_ROUTER_MODELS: dict[str, tuple[str, ...]] = {
    "anthropic.claude:1": ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    "meta.llama:1": ("meta.llama3-1-8b-instruct-v1:0", "meta.llama3-1-70b-instruct-v1:0"),
    "amazon.nova:1": ("amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0"),
}
_REGION_GEOGRAPHY = {"us": "us", "eu": "eu", "ap": "apac"}  # region prefix -> inference-profile prefix
_MODEL_ARN = re.compile(
    r"^arn:aws[a-z-]*:bedrock:(?P<region>[a-z0-9-]*):(?P<account>\d{12})?:"
    r"(?P<kind>foundation-model|inference-profile|application-inference-profile|prompt-router|default-prompt-router)/"
    r"(?P<name>[A-Za-z0-9._:-]+)$"
)
# Bedrock GuardrailIdentifier (bedrock-runtime service model): an id, or the ARN of a guardrail.
_GUARDRAIL_ID = re.compile(r"^[a-z0-9]{1,64}$")
_GUARDRAIL_ARN = re.compile(r"^arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]{1,64}$")


@dataclass(frozen=True)
class GatewayBot:
    """What IAM needs to know of one bot of the gateway's bot file (the app reads the rest itself).

    ``model_id`` is a foundation-model id, a system inference-profile id or a Bedrock ARN (foundation model, inference
    profile, application inference profile, prompt router); ``region`` is where the bot calls Bedrock (None: the
    stack's region); ``target_model_ids`` are the models a prompt router or application inference profile sends
    requests to (filled in for AWS's default prompt routers); ``count_tokens_model_id`` is the foundation model
    CountTokens is asked about.
    """

    name: str
    model_id: str
    modality: str = "text"
    region: str | None = None
    target_model_ids: tuple[str, ...] = ()
    count_tokens_model_id: str | None = None
    guardrail_id: str | None = None  # the bot's ``guardrail.identifier``: a guardrail id or ARN (IAM: ApplyGuardrail)


def load_bots(path: Path) -> tuple[GatewayBot, ...]:
    """The bots of a bot file ``{"defaults": {...}, "bots": {"<name>": {"model_id": ..., ...}}}``, defaults applied.

    Plain JSON, no AWS: synth stays offline. Raises ValueError naming the file, the bot and the field.
    """
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"gatewayBotsFile: {path} is not valid JSON: {exc}") from exc
    defaults = document.get("defaults", {}) if isinstance(document, dict) else None
    entries = document.get("bots") if isinstance(document, dict) else None
    if not isinstance(defaults, dict) or not isinstance(entries, dict) or not entries:
        raise ValueError(f'gatewayBotsFile: {path} must be {{"defaults": {{...}}, "bots": {{"<name>": {{...}}}}}}')
    bots = []
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise ValueError(f"gatewayBotsFile: bot {name!r} in {path} must be an object")
        bots.append(_bot(name, {**defaults, **entry}, path))
    return tuple(bots)


def _bot(name: str, entry: Mapping[str, Any], path: Path) -> GatewayBot:
    def fail(field_name: str, need: str) -> ValueError:
        return ValueError(
            f"gatewayBotsFile: bot {name!r} in {path}: {field_name} must be {need}, got {entry.get(field_name)!r}"
        )

    model_id = entry.get("model_id")
    if not isinstance(model_id, str) or _check_bot_model(model_id):
        raise fail("model_id", "a Bedrock model id, inference-profile id or ARN")
    modality = entry.get("modality", "text")
    if modality not in MODALITIES:
        raise fail("modality", "one of " + ", ".join(MODALITIES))
    region = entry.get("region")
    if region is not None and (not isinstance(region, str) or not REGION.match(region)):
        raise fail("region", "an AWS region name such as 'us-east-1'")
    targets = entry.get("target_model_ids", [])
    if not isinstance(targets, list) or any(not isinstance(t, str) or _check_bot_model(t) for t in targets):
        raise fail("target_model_ids", "a list of Bedrock model ids, inference-profile ids or their ARNs")
    match = _MODEL_ARN.match(model_id)
    if match and match["kind"] in _TARGETED_ARN_KINDS and not targets:
        targets = list(_default_router_targets(match["kind"], match["name"], match["region"]))
        if not targets:
            raise fail("target_model_ids", f"the models the {match['kind']} sends requests to, so IAM can allow them")
    if any((m := _MODEL_ARN.match(t)) and m["kind"] in _TARGETED_ARN_KINDS for t in targets):
        raise fail("target_model_ids", "model or inference-profile ids (not routers)")
    count_tokens = entry.get("count_tokens_model_id")
    if count_tokens is not None and (
        not isinstance(count_tokens, str) or check_model_id(count_tokens) or is_inference_profile(count_tokens)
    ):
        raise fail("count_tokens_model_id", "a foundation-model id (CountTokens takes no profile ids)")
    prices = entry.get("prices")
    own_price = prices.get("input_per_1k") if isinstance(prices, dict) else None
    if not price_published(model_id) and not (
        isinstance(own_price, int | float) and not isinstance(own_price, bool) and own_price > 0
    ):
        raise fail(
            "prices",
            f'{{"input_per_1k": <USD per 1,000 input tokens>}}: {model_id} has no price in lambdas/shared/prices.json '
            "(the project found none published), so its bot must carry the one the Amazon Bedrock pricing page lists "
            "for its region",
        )
    guardrail = entry.get("guardrail")
    identifier = guardrail.get("identifier") if isinstance(guardrail, dict) else None
    if guardrail is not None and (
        not isinstance(identifier, str) or not (_GUARDRAIL_ID.match(identifier) or _GUARDRAIL_ARN.match(identifier))
    ):
        raise fail(
            "guardrail",
            'an object {"identifier": "<guardrail id or arn:aws:bedrock:<region>:<account>:guardrail/<id>>", '
            '"version": "DRAFT" or "<n>"} (or absent)',
        )
    return GatewayBot(
        name=name,
        model_id=model_id,
        modality=modality,
        region=region,
        target_model_ids=tuple(targets),
        count_tokens_model_id=count_tokens,
        guardrail_id=identifier,
    )


def _default_router_targets(kind: str, name: str, region: str) -> tuple[str, ...]:
    """The inference profiles a default prompt router of ``region`` calls; () if unknown."""
    geography = _REGION_GEOGRAPHY.get(region.split("-")[0])
    if kind != "default-prompt-router" or geography is None:
        return ()
    return tuple(f"{geography}.{model}" for model in DEFAULT_PROMPT_ROUTER_MODELS.get(name, ()))


def _check_bot_model(item: str) -> str | None:
    if item.lower().startswith("arn:"):
        return None if _MODEL_ARN.match(item) else "a Bedrock model, inference-profile or prompt-router ARN"
    return check_model_id(item)


def parse_model_arn(arn: str) -> tuple[str, str, str | None, str] | None:
    """``(kind, name, region or None, account or "")`` of a Bedrock model ARN; None for an id."""
    match = _MODEL_ARN.match(arn)
    if not match:
        return None
    return match["kind"], match["name"], match["region"] or None, match["account"] or ""
