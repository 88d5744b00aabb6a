"""Converse answers, with no HTTP in sight: checks in the service's words, the echo, usage, prompt caching, routing.

The answer is the text of the last user message, exactly as sent (deterministic), shaped like a model would:

- ``inferenceConfig.stopSequences``: the answer stops just before the first stop sequence (``stop_sequence``);
- ``inferenceConfig.maxTokens``: the answer keeps its first ``maxTokens`` words (``max_tokens``);
- a reasoning request in ``additionalModelRequestFields`` (Claude ``thinking``, Nova ``reasoningConfig``,
  ``reasoning_config`` / ``reasoning_effort``) adds a ``reasoningContent`` block (text + signature, an HMAC of the
  text with the emulator's key, ``tool_use.sign_reasoning``) before the answer; on Claude, a last user message holding
  Anthropic's test string ``REDACTED_THINKING_TRIGGER`` gets a ``redactedContent`` block instead;
- a ``toolConfig`` is checked and the model may answer with one ``toolUse`` block instead of text, or (the last user
  text naming two or more tools) a text block then one ``toolUse`` block per tool named (stop reason ``tool_use``);
  Claude thinking is checked against tool loops, forced tool choice and temperature; see ``local.emulator.tool_use``;
- ``outputConfig.textFormat`` (structured output) is checked and the answer is a JSON value for its schema instead
  of the echo, cut at ``maxTokens`` like any answer; see ``local.emulator.structured_output``;
- ``EMULATOR_STOP_REASON=<value>`` in the last user message makes the model stop there with one of the stop reasons
  no request field produces (``TRIGGERED_STOP_REASONS``: ``content_filtered``, ``malformed_model_output``,
  ``malformed_tool_use``, ``model_context_window_exceeded``), its answer the text before the trigger.

Media (the Converse "Supported models and model features" table): an ``image`` block (in a message or a tool result)
only for models with Vision (``VISION_MODEL_PREFIXES``), a ``document`` block only for models with Document chat
(every chat model but ``NO_DOCUMENT_MODEL_PREFIXES``); ValidationException naming the block otherwise.

Tokens are whitespace-separated words (``families.estimate_tokens``), counted over tool specs, system blocks and
message blocks in that order; an image, document, video or audio block counts ``MEDIA_BLOCK_TOKENS``. CountTokens
uses the same count, so ``count_tokens == inputTokens + cacheReadInputTokens + cacheWriteInputTokens``.

Prompt caching (``PromptCache``): each ``cachePoint`` marks the prefix before it (tools, then system, then messages).
A prefix already cached for the same answering model is read (``cacheReadInputTokens``, the longest one); the last
cache point's prefix, if not cached, is written (``cacheWriteInputTokens``: its tokens minus those read, with a
``cacheDetails`` entry for its TTL). ``inputTokens`` excludes both. Entries live for their TTL (``5m`` default, or
``1h``) on the emulator's clock, renewed by each hit. As the service does ("Prompt caching for faster model
inference"), a checkpoint caches only when its prefix holds the model's minimum tokens per checkpoint
(``CACHE_MIN_TOKENS``: 1,024 for Claude 3.7 Sonnet, 2,048 for Claude 3.5 Haiku, 1,000 for Nova, ...) counted from the
last checkpoint that cached; below it the request succeeds uncached (usage reports 0 read, 0 written). A request
takes at most 4 cache points, Nova none in ``toolConfig.tools``, a ``1h`` TTL only on Claude Opus / Haiku / Sonnet
4.5, and models without prompt caching reject a cache point (ValidationException each).

Prompt routers: a ``default-prompt-router`` ARN (``anthropic.claude:1``, ``meta.llama:1``, ``amazon.nova:1``) or a
registered custom ``prompt-router`` ARN routes a prompt of at most ``short_prompt_tokens`` tokens to the router's
first (smaller) model and longer ones to its last; the answer's ``trace.promptRouter.invokedModelId`` names the model
(an inference-profile ARN, or a foundation-model ARN for ids without a geographic prefix).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from local.emulator.claude_betas import check_anthropic_beta
from local.emulator.errors import not_found, validation_error
from local.emulator.families import base_model_id, estimate_tokens
from local.emulator.protocol import service_model
from local.emulator.structured_output import answer_value, output_schema
from local.emulator.tool_use import (
    check_claude_top_k,
    check_thinking,
    check_tool_config,
    redact_reasoning,
    sign_reasoning,
    tool_calls,
)

MEDIA_BLOCK_TOKENS = 100  # an image, document, video or audio block, whatever its size
DEFAULT_SHORT_PROMPT_TOKENS = 32  # prompt routers: prompts up to this size go to the router's first model
CACHE_TTLS = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
# "Prompt caching for faster model inference", supported models table: minimum tokens per cache checkpoint (longest
# base-model-id prefix wins). A caching model missing here gets the largest minimum (stricter reading).
CACHE_MIN_TOKENS: dict[str, int] = {
    "anthropic.claude-3-5-haiku": 2048,
    "anthropic.claude-3-5-sonnet-20241022-v2": 1024,
    "anthropic.claude-3-7-sonnet": 1024,
    "anthropic.claude-sonnet-4": 1024,
    "anthropic.claude-opus-4": 1024,
    "anthropic.claude-opus-4-5": 4096,
    "anthropic.claude-haiku-4-5": 4096,
    "amazon.nova": 1000,
}
MAX_CACHE_POINTS = 4  # cache checkpoints per request, every model of the table
ONE_HOUR_TTL_PREFIXES = ("anthropic.claude-opus-4-5", "anthropic.claude-haiku-4-5", "anthropic.claude-sonnet-4-5")
NO_ONE_HOUR_TTL = (
    "This model doesn't support the 1h TTL of the cachePoint. Use the default 5m TTL (leave out ttl), and try again."
)
NO_TOOL_CACHE_FAMILIES = frozenset({"nova"})  # Nova: checkpoints in system and messages only, not in tools
TOO_MANY_CACHE_POINTS = (
    f"The request has {{count}} cache points. A request can have at most {MAX_CACHE_POINTS} cache points; remove "
    "some and try again."
)
NO_TOOL_CACHE_POINT = (
    "This model doesn't support a cachePoint in toolConfig.tools. Put cache points in system or messages only, and "
    "try again."
)
# Converse "Supported models and model features" table, column Vision (base-model-id prefixes); every other chat
# model refuses an image block. Column Document chat: every chat model but these.
VISION_MODEL_PREFIXES = (
    "anthropic.claude-3-haiku",
    "anthropic.claude-3-sonnet",
    "anthropic.claude-3-opus",
    "anthropic.claude-3-5-sonnet",
    "anthropic.claude-3-7-sonnet",
    "anthropic.claude-sonnet-4",
    "anthropic.claude-opus-4",
    "anthropic.claude-haiku-4-5",
    "amazon.nova-lite",
    "amazon.nova-pro",
    "amazon.nova-premier",
    "amazon.nova-2-lite",
    "meta.llama3-2-11b",
    "meta.llama3-2-90b",
    "meta.llama4",
    "mistral.pixtral",
)
NO_DOCUMENT_MODEL_PREFIXES = ("amazon.nova-micro", "amazon.titan-text-premier", "ai21.jamba-instruct")
UNSUPPORTED_MEDIA = (
    "This model doesn't support the {kind} content block at {where}. Remove the {kind} block, or use a model that "
    "supports {kind} input, and try again."
)
# A prompt trigger for the stop reasons no request field produces: the last user message holds
# ``EMULATOR_STOP_REASON=<value>``; the model stops there (its answer: the text before the trigger).
STOP_REASON_TRIGGER = re.compile(r"EMULATOR_STOP_REASON=([a-z_]+)")
STOP_REASONS = tuple(service_model("bedrock-runtime").shape_for("StopReason").enum)
TRIGGERED_STOP_REASONS = (
    "content_filtered",
    "malformed_model_output",
    "malformed_tool_use",
    "model_context_window_exceeded",
)

INVALID_MODEL = "The provided model identifier is invalid."
NOT_A_CHAT_MODEL = (
    "This action doesn't support the model that you provided. Try again with a supported text or chat model."
)
NO_PROMPT_CACHING = (
    "You invoked an unsupported model, or your request did not allow prompt caching. "
    "See the documentation for more information."
)
MUST_START_WITH_USER = (
    "A conversation must start with a user message. Try again with a conversation that starts with a user message."
)
MUST_ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between "
    "user and assistant roles and try again."
)

# Base model id prefix -> chat family (longest prefix wins). Models that Converse serves.
CHAT_MODEL_PREFIXES: dict[str, str] = {
    "anthropic.claude": "anthropic",
    "amazon.nova-micro": "nova",
    "amazon.nova-lite": "nova",
    "amazon.nova-pro": "nova",
    "amazon.nova-premier": "nova",
    "amazon.nova-2-lite": "nova",
    "amazon.titan-text": "titan-text",
    "meta.llama": "llama",
    "mistral.": "mistral",
    "cohere.command": "cohere",
    "ai21.jamba": "ai21",
    "deepseek.": "deepseek",
    "openai.gpt-oss": "openai",
    "qwen.": "qwen",
    "writer.palmyra": "writer",
}
# Known models that are not chat models (Converse refuses them with NOT_A_CHAT_MODEL).
NON_CHAT_MODEL_PREFIXES = (
    "amazon.titan-embed",
    "amazon.titan-image-generator",
    "amazon.nova-canvas",
    "amazon.nova-reel",
    "amazon.nova-sonic",
    "cohere.embed",
    "cohere.rerank",
    "stability.",
)
# Families with prompt caching; Claude generations before 3.5 Haiku / 3.7 Sonnet have none.
CACHING_FAMILIES = frozenset({"anthropic", "nova", "profile"})
_NO_CACHING_CLAUDE = re.compile(r"^anthropic\.claude-(v2|instant|3-(haiku|sonnet|opus)|3-5-sonnet)")
# ARNs whose model the emulator cannot know: answered as a generic chat model with every feature.
_OPAQUE_ARN = re.compile(
    r"^arn:aws[-a-z]*:bedrock:[^:]*:[0-9]{12}:(application-inference-profile|provisioned-model|custom-model-deployment)/"
)
_ROUTER_ARN = re.compile(
    r"^arn:aws(?P<partition>-[^:]+)?:bedrock:(?P<region>[0-9a-z-]{1,20}):(?P<account>[0-9]{12}):"
    r"(?P<kind>default-prompt-router|prompt-router)/(?P<id>[a-zA-Z0-9-:.]+)$"
)
_GEO_PREFIXED = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.")
DEFAULT_PROMPT_ROUTERS: dict[str, tuple[str, ...]] = {
    "anthropic.claude:1": ("us.anthropic.claude-3-haiku-20240307-v1:0", "us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
    "meta.llama:1": ("us.meta.llama3-1-8b-instruct-v1:0", "us.meta.llama3-1-70b-instruct-v1:0"),
    "amazon.nova:1": ("us.amazon.nova-lite-v1:0", "us.amazon.nova-pro-v1:0"),
}
CLAUDE_MIN_THINKING_BUDGET = 1024
# Anthropic's documented way to get a redacted_thinking block on purpose (extended-thinking docs)
REDACTED_THINKING_TRIGGER = "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253"


# ---------------------------------------------------------------- models and routers


@dataclass(frozen=True)
class Target:
    """The model that answers: ``model_id`` as routed, its chat ``family``, and the router's trace id if routed."""

    model_id: str
    family: str
    invoked_model_id: str | None = None

    @property
    def supports_caching(self) -> bool:
        return self.family in CACHING_FAMILIES and not _NO_CACHING_CLAUDE.match(base_model_id(self.model_id))

    @property
    def cache_min_tokens(self) -> int:
        """Tokens a prompt prefix needs before a cache checkpoint caches it (``CACHE_MIN_TOKENS``)."""
        found = [prefix for prefix in CACHE_MIN_TOKENS if base_model_id(self.model_id).startswith(prefix)]
        return CACHE_MIN_TOKENS[max(found, key=len)] if found else max(CACHE_MIN_TOKENS.values())

    def accepts(self, kind: str) -> bool:
        """Whether the model reads ``image`` / ``document`` blocks (an opaque ARN: every feature)."""
        if self.family == "profile" or kind not in ("image", "document"):
            return True
        base = base_model_id(self.model_id)
        if kind == "image":
            return base.startswith(VISION_MODEL_PREFIXES)
        return not base.startswith(NO_DOCUMENT_MODEL_PREFIXES)


def is_prompt_router(model_id: str) -> bool:
    return _ROUTER_ARN.match(model_id) is not None


def _longest_prefix(base: str, prefixes: Mapping[str, str]) -> str | None:
    found = [prefix for prefix in prefixes if base.startswith(prefix)]
    return prefixes[max(found, key=len)] if found else None


def chat_target(model_id: str) -> Target:
    """The chat model ``model_id`` names (id, inference profile or ARN); ValidationException if Converse cannot."""
    if _OPAQUE_ARN.match(model_id):
        return Target(model_id, "profile")
    base = base_model_id(model_id)
    family = _longest_prefix(base, CHAT_MODEL_PREFIXES)
    if family is not None:
        return Target(model_id, family)
    if base.startswith(NON_CHAT_MODEL_PREFIXES):
        raise validation_error(NOT_A_CHAT_MODEL)
    raise validation_error(INVALID_MODEL)


def _invoked_model_arn(model_id: str, partition: str, region: str, account: str) -> str:
    if _GEO_PREFIXED.match(model_id):
        return f"arn:aws{partition}:bedrock:{region}:{account}:inference-profile/{model_id}"
    return f"arn:aws{partition}:bedrock:{region}::foundation-model/{model_id}"


def route(
    model_id: str,
    prompt_tokens: int,
    custom_routers: Mapping[str, Sequence[str]],
    short_prompt_tokens: int = DEFAULT_SHORT_PROMPT_TOKENS,
) -> Target:
    """Resolve ``model_id``: a prompt router picks one of its models by prompt size; anything else is itself."""
    router = _ROUTER_ARN.match(model_id)
    if router is None:
        return chat_target(model_id)
    models: Sequence[str] | None
    if router["kind"] == "default-prompt-router":
        models = DEFAULT_PROMPT_ROUTERS.get(router["id"])
    else:
        models = custom_routers.get(model_id) or custom_routers.get(router["id"])
    if not models:
        raise not_found(
            f"The prompt router {model_id} was not found. "
            f"(Emulator: default routers are {', '.join(DEFAULT_PROMPT_ROUTERS)}; register custom ones with "
            "BedrockEmulator.add_prompt_router.)"
        )
    chosen = models[0] if prompt_tokens <= short_prompt_tokens else models[-1]
    invoked = _invoked_model_arn(chosen, router["partition"] or "", router["region"], router["account"])
    return Target(chosen, chat_target(chosen).family, invoked)


# ---------------------------------------------------------------- request checks, in the service's words


def check_messages(messages: Sequence[dict[str, Any]]) -> None:
    """Roles start with user and alternate; no message is empty; no text block is blank."""
    if not messages or messages[0].get("role") != "user":
        raise validation_error(MUST_START_WITH_USER)
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant") or (index and role == messages[index - 1].get("role")):
            raise validation_error(MUST_ALTERNATE)
        content = message.get("content") or []
        if not content:
            raise validation_error(
                f"The content field in the Message object at messages.{index} is empty. "
                "Add a ContentBlock object to the content field and try again."
            )
        for number, block in enumerate(content):
            if "text" in block and not block["text"].strip():
                raise validation_error(
                    f"The text field in the ContentBlock object at messages.{index}.content.{number} is blank. "
                    "Add text to the text field, and try again."
                )


def reasoning_requested(target: Target, fields: Any, max_tokens: int | None) -> bool:
    """Whether ``additionalModelRequestFields`` asks for reasoning; Claude's thinking budget is checked."""
    if not isinstance(fields, dict):
        return False
    thinking = fields.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        budget = thinking.get("budget_tokens")
        if target.family == "anthropic" and thinking["type"] == "enabled":
            if not isinstance(budget, int) or budget < CLAUDE_MIN_THINKING_BUDGET:
                raise validation_error(
                    "The model returned the following errors: thinking.enabled.budget_tokens: "
                    f"Input should be greater than or equal to {CLAUDE_MIN_THINKING_BUDGET}"
                )
            if max_tokens is not None and max_tokens <= budget:
                raise validation_error(
                    "The model returned the following errors: `max_tokens` must be greater than "
                    "`thinking.budget_tokens`."
                )
        return True
    for key in ("reasoningConfig", "reasoning_config"):
        config = fields.get(key)
        if isinstance(config, dict) and config.get("type") == "enabled":
            return True
        if config is True:
            return True
    return isinstance(fields.get("reasoning_effort"), str)


# ---------------------------------------------------------------- tokens and cache points


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def block_tokens(block: dict[str, Any]) -> int:
    """Tokens of one content block (message, system, tool-result or tool)."""
    if "text" in block and isinstance(block["text"], str):
        return estimate_tokens(block["text"])
    if "json" in block:
        return estimate_tokens(_json_text(block["json"]))
    if "guardContent" in block:
        return estimate_tokens(block["guardContent"].get("text", {}).get("text", ""))
    if "toolUse" in block:
        return estimate_tokens(f"{block['toolUse'].get('name', '')} {_json_text(block['toolUse'].get('input'))}")
    if "toolResult" in block:
        return sum(block_tokens(item) for item in block["toolResult"].get("content", []))
    if "reasoningContent" in block:
        return estimate_tokens(block["reasoningContent"].get("reasoningText", {}).get("text", ""))
    if "toolSpec" in block:
        spec = block["toolSpec"]
        schema = _json_text(spec.get("inputSchema", {}).get("json", {}))
        return estimate_tokens(f"{spec.get('name', '')} {spec.get('description', '')} {schema}")
    if any(kind in block for kind in ("image", "document", "video", "audio")):
        return MEDIA_BLOCK_TOKENS
    return 0  # cachePoint, systemTool, ...


def _prompt_items(request: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, block) for every tool, system block and message block, in prompt order."""
    for tool in (request.get("toolConfig") or {}).get("tools", []):
        yield "tools", tool
    for block in request.get("system") or []:
        yield "system", block
    for message in request.get("messages") or []:
        for block in message.get("content") or []:
            yield message.get("role", ""), block


@dataclass(frozen=True)
class CachePoint:
    digest: str  # of everything before it
    tokens: int  # input tokens before it
    ttl: str


@dataclass(frozen=True)
class Prompt:
    tokens: int
    cache_points: tuple[CachePoint, ...]


def measure_prompt(request: Mapping[str, Any]) -> Prompt:
    """The prompt's input tokens and cache points (``request``: Converse members or a ConverseTokensRequest)."""
    digest = hashlib.sha256()
    tokens = 0
    points: list[CachePoint] = []
    for where, block in _prompt_items(request):
        if "cachePoint" in block:
            ttl = block["cachePoint"].get("ttl", "5m")
            points.append(CachePoint(digest.copy().hexdigest(), tokens, ttl))
            continue
        digest.update(_json_text([where, block]).encode())
        tokens += block_tokens(block)
    return Prompt(max(1, tokens), tuple(points))


class PromptCache:
    """Cached prompt prefixes per answering model, with their expiry on the emulator's clock."""

    def __init__(self) -> None:
        self._expiry: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def use(self, model_id: str, points: Sequence[CachePoint], now: datetime, min_tokens: int = 0) -> tuple[int, int]:
        """Read the longest cached prefix, write the last one if new; returns (tokens read, tokens written)."""
        usable: list[CachePoint] = []
        for point in points:  # each checkpoint at least ``min_tokens`` after the last one that caches
            if point.tokens - (usable[-1].tokens if usable else 0) >= max(1, min_tokens):
                usable.append(point)
        if not usable:
            return 0, 0
        model = base_model_id(model_id)
        with self._lock:
            read = 0
            for point in usable:
                key = f"{model}/{point.digest}"
                if self._expiry.get(key, now) > now:
                    read = max(read, point.tokens)
                    self._expiry[key] = now + CACHE_TTLS[point.ttl]
            last = usable[-1]
            last_key = f"{model}/{last.digest}"
            written = 0
            if self._expiry.get(last_key, now) <= now:
                written = last.tokens - read
                for point in usable:
                    self._expiry[f"{model}/{point.digest}"] = now + CACHE_TTLS[point.ttl]
            return read, written


# ---------------------------------------------------------------- the answer


def words(text: str) -> list[str]:
    """``text`` as word pieces (each with the whitespace before it) that join back to it."""
    pieces = re.findall(r"\s*\S+", text)
    trailing = text[len("".join(pieces)) :]
    if pieces and trailing:
        pieces[-1] += trailing
    return pieces


def _texts(blocks: Sequence[dict[str, Any]]) -> list[str]:
    return [block["text"] for block in blocks if isinstance(block.get("text"), str)]


def echo_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of the last user message (its text blocks joined by newlines), or of its tool results."""
    users = [message for message in messages if message.get("role") == "user"]
    content = users[-1].get("content", []) if users else []
    texts = _texts(content)
    if not texts:
        results = [block["toolResult"] for block in content if "toolResult" in block]
        texts = [text for result in results for text in _texts(result.get("content", []))]
    return "\n".join(texts) or "OK"


def reasoning_text(echo: str) -> str:
    return f"The user wants their last message ({estimate_tokens(echo)} words) repeated back exactly."


def signature(text: str) -> str:
    return sign_reasoning(text)


@dataclass(frozen=True)
class Answer:
    target: Target
    text: str
    stop_reason: str
    stop_sequence: str | None
    reasoning: str | None
    prompt_tokens: int  # all input tokens, cached or not
    cache_read: int
    cache_write: int
    cache_ttl: str | None  # of the written prefix
    cache_used: bool  # the request had cache points
    response_field_paths: tuple[str, ...] = ()
    # the tool calls (toolUseId, name, input) the answer ends with; ``text`` (if any) is a text block before them
    tool_uses: tuple[dict[str, Any], ...] = ()
    redacted: bool = False  # the reasoning comes as a redactedContent block (encrypted, its text not shown)

    @property
    def output_tokens(self) -> int:
        tools = sum(block_tokens({"toolUse": tool}) for tool in self.tool_uses)
        return estimate_tokens(self.text) + (estimate_tokens(self.reasoning) if self.reasoning else 0) + tools

    def usage(self) -> dict[str, Any]:
        input_tokens = self.prompt_tokens - self.cache_read - self.cache_write
        usage: dict[str, Any] = {
            "inputTokens": input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.prompt_tokens + self.output_tokens,
        }
        if self.cache_used:
            usage |= {"cacheReadInputTokens": self.cache_read, "cacheWriteInputTokens": self.cache_write}
        if self.cache_write:
            usage["cacheDetails"] = [{"ttl": self.cache_ttl, "inputTokens": self.cache_write}]
        return usage

    def trace(self) -> dict[str, Any] | None:
        if self.target.invoked_model_id is None:
            return None
        return {"promptRouter": {"invokedModelId": self.target.invoked_model_id}}

    def response_fields(self) -> dict[str, Any] | None:
        """``additionalModelResponseFields`` for the requested paths the emulator knows (``/stop_sequence``)."""
        if "/stop_sequence" in self.response_field_paths:
            return {"stop_sequence": self.stop_sequence}
        return None

    def content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.reasoning is not None and self.redacted:
            blocks.append({"reasoningContent": {"redactedContent": redact_reasoning(self.reasoning)}})
        elif self.reasoning is not None:
            text = {"text": self.reasoning, "signature": signature(self.reasoning)}
            blocks.append({"reasoningContent": {"reasoningText": text}})
        if self.tool_uses:
            lead: list[dict[str, Any]] = [{"text": self.text}] if self.text else []
            return [*blocks, *lead, *({"toolUse": tool} for tool in self.tool_uses)]
        return [*blocks, {"text": self.text}]


def check_cache_points(request: Mapping[str, Any], target: Target, prompt: Prompt) -> None:
    """Cache points only on models with prompt caching, at most ``MAX_CACHE_POINTS``, a ``1h`` TTL only on the models
    that have it (``ONE_HOUR_TTL_PREFIXES``), none in Nova's tools."""
    if not prompt.cache_points:
        return
    if not target.supports_caching:
        raise validation_error(NO_PROMPT_CACHING)
    if len(prompt.cache_points) > MAX_CACHE_POINTS:
        raise validation_error(TOO_MANY_CACHE_POINTS.format(count=len(prompt.cache_points)))
    one_hour = target.family == "profile" or base_model_id(target.model_id).startswith(ONE_HOUR_TTL_PREFIXES)
    if not one_hour and any(point.ttl == "1h" for point in prompt.cache_points):
        raise validation_error(NO_ONE_HOUR_TTL)
    tools = (request.get("toolConfig") or {}).get("tools") or []
    if target.family in NO_TOOL_CACHE_FAMILIES and any("cachePoint" in tool for tool in tools):
        raise validation_error(NO_TOOL_CACHE_POINT)


def check_media(messages: Sequence[Mapping[str, Any]], target: Target) -> None:
    """Image and document blocks (in a message or a tool result) only for models that read them."""
    for index, message in enumerate(messages):
        for number, block in enumerate(message.get("content") or []):
            nested = (block.get("toolResult") or {}).get("content") or [] if isinstance(block, Mapping) else []
            for kind in ("image", "document"):
                inside = any(isinstance(item, Mapping) and kind in item for item in nested)
                if (kind in block or inside) and not target.accepts(kind):
                    where = f"messages.{index}.content.{number}"
                    raise validation_error(UNSUPPORTED_MEDIA.format(kind=kind, where=where))


def triggered_stop(echo: str) -> tuple[str, str] | None:
    """(stop reason, answer) when the last user message holds ``EMULATOR_STOP_REASON=<value>``, else None."""
    found = STOP_REASON_TRIGGER.search(echo)
    if found is None:
        return None
    if found[1] not in TRIGGERED_STOP_REASONS:
        raise validation_error(
            f"(Emulator) EMULATOR_STOP_REASON={found[1]} is not a stop reason the trigger produces; use one of "
            f"{', '.join(TRIGGERED_STOP_REASONS)} (the others come from the request: maxTokens, stopSequences, "
            f"toolConfig, guardrailConfig; Bedrock's are {', '.join(STOP_REASONS)})."
        )
    return found[1], echo[: found.start()].rstrip() or "OK"


def shape_text(text: str, max_tokens: int | None, stop_sequences: Sequence[str]) -> tuple[str, str, str | None]:
    """(answer, stopReason, stop sequence hit): cut before the first stop sequence or after ``max_tokens`` words,
    whichever comes first in the text."""
    pieces = words(text)
    max_cut = len("".join(pieces[:max_tokens])) if max_tokens is not None and len(pieces) > max_tokens else None
    hits = [(text.find(sequence), sequence) for sequence in stop_sequences if sequence and sequence in text]
    if hits:
        position, sequence = min(hits)
        if max_cut is None or position < max_cut:
            return text[:position], "stop_sequence", sequence
    if max_cut is not None:
        return text[:max_cut], "max_tokens", None
    return text, "end_turn", None


def answer(
    request: Mapping[str, Any],
    target: Target,
    prompt: Prompt,
    cache: PromptCache,
    now: datetime,
    min_cache_tokens: int | None = None,
) -> Answer:
    """Answer a checked Converse ``request`` (the operation's members) with ``target``."""
    check_cache_points(request, target, prompt)
    check_media(request.get("messages") or [], target)
    config = request.get("inferenceConfig") or {}
    max_tokens = config.get("maxTokens")
    echo = echo_text(request.get("messages") or [])
    thinking = reasoning_requested(target, request.get("additionalModelRequestFields"), max_tokens)
    check_tool_config(request, target.family, target.model_id)
    check_thinking(request, target.family)
    check_claude_top_k(request, target.family)
    check_anthropic_beta(request, target.model_id, target.family)
    schema = output_schema(request, target.family, target.model_id)
    triggered = triggered_stop(echo)
    tools = tool_calls(request, echo) if triggered is None else []
    answered = echo if schema is None or tools else json.dumps(answer_value(schema, echo))  # structured: the JSON
    text, stop_reason, stop_sequence = shape_text(answered, max_tokens, config.get("stopSequences") or [])
    if triggered is not None:
        text, stop_reason, stop_sequence = triggered[1], triggered[0], None
    elif len(tools) > 1:  # several calls: the model says which first, in a text block
        text, stop_reason, stop_sequence = f"Calling {', '.join(tool['name'] for tool in tools)}.", "tool_use", None
    elif tools:
        text, stop_reason, stop_sequence = "", "tool_use", None
    minimum = target.cache_min_tokens if min_cache_tokens is None else min_cache_tokens
    read, written = cache.use(target.model_id, prompt.cache_points, now, minimum)
    return Answer(
        target=target,
        text=text,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        reasoning=reasoning_text(echo) if thinking else None,
        prompt_tokens=prompt.tokens,
        cache_read=read,
        cache_write=written,
        cache_ttl=prompt.cache_points[-1].ttl if written else None,
        cache_used=bool(prompt.cache_points),
        response_field_paths=tuple(request.get("additionalModelResponseFieldPaths") or ()),
        tool_uses=tuple(tools),
        redacted=thinking and target.family == "anthropic" and REDACTED_THINKING_TRIGGER in echo,
    )
