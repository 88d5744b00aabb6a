"""Bot configuration (``bots.json``: ``defaults`` plus per-bot overrides) and gateway settings, validated once at start.

A bot is the merge of ``defaults`` and its own entry (nested objects merge key by key), validated into a frozen
``BotConfig``. Any invalid value stops the start with ``BotConfigError`` naming the bot, the field, the value and the
fix. Model ids are read with the one model-id parser of the project (``lambdas.shared.model_families.ModelRef``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lambdas.gateway.metrics import EmfAgent
from lambdas.gateway.team_keys import TeamKeySettings
from lambdas.shared.model_families import (
    ACCOUNT_RESOURCE_ARN_KINDS,
    COHERE_INPUT_TYPES,
    NOVA_MME_PURPOSES,
    STABILITY_ASPECT_RATIOS,
    ModelRef,
    embedding_adapter_of,
    image_sizes_of,
    price_published,
)

Modality = Literal["text", "image", "video", "embedding"]
ImageFormat = Literal["amazon", "stability"]  # InvokeModel body: Nova Canvas / Titan Image, or Stability AI
BOTS_FILE = Path(__file__).with_name("bots.json")
DEFAULT_KEY_REF = "default"
BOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# ARN resource types a bot's model_id may name (system/application profiles, models, prompt routers).
MODEL_ARN_KINDS = (
    "foundation-model",
    "inference-profile",
    "application-inference-profile",
    "prompt-router",
    "default-prompt-router",
)
_MODEL_ID = re.compile(r"^[a-z0-9-]+\.[A-Za-z0-9._:-]+$")


class BotConfigError(ValueError):
    """bots.json cannot be served; the message names the bot, the field, the value and the fix."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InferenceDefaults(_Frozen):
    """Defaults and limits of the inference parameters; a request may lower ``max_tokens`` but never raise it."""

    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop_sequences: tuple[str, ...] = ()
    max_temperature: float = Field(default=1.0, ge=0, le=2)  # a request's temperature is clamped to this
    max_stop_sequences: int = Field(default=4, ge=0, le=8191)


class Capabilities(_Frozen):
    streaming: bool = True
    images_in: bool = False
    documents: bool = False
    reasoning: bool = False  # show the model's reasoning (quoted block on Poe, reasoning_content on OpenAI)
    prompt_caching: bool = False  # a cachePoint after the system prompt
    token_counting: bool = False
    tools: bool = False  # tool use (OpenAI tools / Poe tools): Claude 3+, Nova, Llama 3.1+, Mistral Large, Command R
    tools_streaming: bool = True  # tool use works with ConverseStream; False: requests with tools use Converse
    forced_tool: bool = False  # takes toolChoice "any" (Claude, Nova, Mistral Large): response_format by a forced tool
    structured_output: bool = False  # Converse outputConfig.textFormat (JSON schema): Claude Haiku / Sonnet / Opus 4.5+


class Prices(_Frozen):
    """USD. Text and embeddings: per 1,000 (input) tokens; images: per image; video: per second."""

    input_per_1k: float = Field(default=0.0, ge=0)
    output_per_1k: float = Field(default=0.0, ge=0)
    cache_read_per_1k: float = Field(default=0.0, ge=0)
    cache_write_per_1k: float = Field(default=0.0, ge=0)
    per_image: float = Field(default=0.0, ge=0)
    per_video_second: float = Field(default=0.0, ge=0)


class ImageOptions(_Frozen):
    """What an image bot's users may choose (Poe ``parameters`` / OpenAI extra body fields); the first value of each
    list is the default. Empty lists: the choice is not offered. Unset: the defaults of the bot's ``image_format``."""

    sizes: tuple[str, ...] = ()  # "WIDTHxHEIGHT" (Nova Canvas, Titan)
    qualities: tuple[str, ...] = ()  # "standard", "premium" (Nova Canvas, Titan)
    aspect_ratios: tuple[str, ...] = ()  # "W:H" (Stability)
    max_images: int = Field(default=1, ge=1, le=5)
    max_seed: int = Field(default=0, ge=0, le=4_294_967_295)  # 0: no seed choice
    negative_prompt: bool = True

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for size in value:
            if not re.match(r"^[1-9][0-9]{2,3}x[1-9][0-9]{2,3}$", size):
                raise ValueError(f"size '{size}' is not WIDTHxHEIGHT (such as '1024x1024')")
        return value

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ratio in value:
            if not re.match(r"^[1-9][0-9]?:[1-9][0-9]?$", ratio):
                raise ValueError(f"aspect ratio '{ratio}' is not W:H (such as '16:9')")
        return value


# Defaults per image_format; every bot's sizes and aspect ratios are checked against its model at start
# (lambdas.shared.model_families.IMAGE_MODEL_SIZES). The "amazon" sizes are in Titan Image Generator's table and
# within Nova Canvas' rules, so both models take them.
DEFAULT_IMAGE_OPTIONS: dict[str, ImageOptions] = {
    "amazon": ImageOptions(
        sizes=("1024x1024", "1280x768", "768x1280", "1152x896", "896x1152"),
        qualities=("standard", "premium"),
        max_images=4,
        max_seed=858_993_459,  # Nova Canvas' limit (Titan's is higher)
    ),
    "stability": ImageOptions(
        aspect_ratios=STABILITY_ASPECT_RATIOS,
        max_seed=4_294_967_295,
    ),
}
DEFAULT_CONTEXT_TOKENS = 128_000


GUARDRAIL_ID = re.compile(r"^[a-z0-9]{1,64}$")
GUARDRAIL_ARN = re.compile(r"^arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]{1,64}$")
GUARDRAIL_VERSION = re.compile(r"^(DRAFT|[1-9][0-9]{0,7})$")


class GuardrailSettings(_Frozen):
    """An Amazon Bedrock guardrail on every answer of a bot: Converse ``guardrailConfig`` for text bots, the prompt
    through ``ApplyGuardrail`` for image and video bots (their InvokeModel bodies take none).

    ``identifier``: the guardrail id or ARN; ``version``: ``"DRAFT"`` or a published version number; ``trace``: ask
    Bedrock for the assessment (logged when the guardrail intervenes); ``stream_processing_mode``: ``sync`` (chunks
    are checked before they are sent) or ``async`` (sent at once and checked meanwhile: faster, but blocked text may
    reach the user)."""

    identifier: str
    version: str = "DRAFT"
    trace: bool = True
    stream_processing_mode: Literal["sync", "async"] = "sync"

    @field_validator("identifier")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not (GUARDRAIL_ID.match(value) or GUARDRAIL_ARN.match(value)):
            raise ValueError(
                "use a guardrail id (lower-case letters and digits, such as 'abc123def456') or its ARN "
                "(arn:aws:bedrock:<region>:<account>:guardrail/<id>)"
            )
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not GUARDRAIL_VERSION.match(value):
            raise ValueError('use "DRAFT" or a published version number such as "1"')
        return value

    @property
    def arn_region(self) -> str | None:
        """The region of an ARN identifier (None for a bare id: the bot's region)."""
        return self.identifier.split(":")[3] if self.identifier.startswith("arn:") else None


class EmbeddingOptions(_Frozen):
    """Embedding bots (``/v1/embeddings``): ``input_type`` (Cohere Embed v3 only: what the vectors are for,
    ``search_document`` by default), ``embedding_purpose`` (Amazon Nova Multimodal Embeddings only, the same idea:
    ``GENERIC_INDEX`` by default) and ``max_inputs`` (the most texts one request may embed; lists longer than the
    model takes per call are split and answered in order)."""

    input_type: str | None = None
    embedding_purpose: str | None = None
    max_inputs: int = Field(default=2048, ge=1, le=2048)  # OpenAI's limit for one request's input array

    @field_validator("input_type")
    @classmethod
    def _input_type(cls, value: str | None) -> str | None:
        if value is not None and value not in COHERE_INPUT_TYPES:
            raise ValueError(f"use one of {', '.join(COHERE_INPUT_TYPES)}")
        return value

    @field_validator("embedding_purpose")
    @classmethod
    def _embedding_purpose(cls, value: str | None) -> str | None:
        if value is not None and value not in NOVA_MME_PURPOSES:
            raise ValueError(f"use one of {', '.join(NOVA_MME_PURPOSES)}")
        return value


class PoeSettings(_Frozen):
    introduction_message: str = ""
    parameter_controls: dict[str, Any] | None = None  # passed to Poe as it is (api_version "2")


class BotConfig(_Frozen):
    name: str
    model_id: str
    modality: Modality = "text"
    region: str = "us-east-1"
    description: str = ""
    system_prompt: str = ""
    inference: InferenceDefaults = InferenceDefaults()
    capabilities: Capabilities = Capabilities()
    additional_request_fields: dict[str, Any] | None = None  # Converse additionalModelRequestFields, as they are
    image_format: ImageFormat | None = None  # image bots: which InvokeModel request body the model takes
    image_options: ImageOptions | None = None  # image bots: the users' choices; unset: DEFAULT_IMAGE_OPTIONS
    embedding: EmbeddingOptions | None = None  # embedding bots: input_type, max_inputs; unset: the defaults
    context_tokens: int = Field(default=DEFAULT_CONTEXT_TOKENS, ge=1, le=10_000_000)  # prompts over it are refused
    count_tokens_model_id: str | None = None  # CountTokens model (bare foundation-model id); unset: model_id
    # the models a prompt router or application inference profile sends requests to: the stack allows them in IAM
    # (stacks/config/bots.py reads them; AWS's default routers need none)
    target_model_ids: tuple[str, ...] = ()
    guardrail: GuardrailSettings | None = None  # an Amazon Bedrock guardrail on every answer; unset: none
    prices: Prices = Prices()
    poe: PoeSettings = PoeSettings()
    access_key_ref: str = DEFAULT_KEY_REF

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not BOT_NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)")
        return value

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, value: str) -> str:
        ref = ModelRef.parse(value)
        if ref.arn_kind is not None and ref.arn_kind not in MODEL_ARN_KINDS:
            raise ValueError(f"an ARN of type '{ref.arn_kind}' cannot be invoked; use one of {list(MODEL_ARN_KINDS)}")
        if ref.arn_kind is None and not _MODEL_ID.match(ref.base_model_id):
            raise ValueError(
                "use a foundation-model id (provider.model-version), an inference-profile id (us./eu./global. ...) "
                "or an ARN (prompt router, inference profile)"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", value):
            raise ValueError("use an AWS region name such as 'us-east-1'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BotConfig:
        if self.modality != "text" and self.capabilities.prompt_caching:
            raise ValueError("capabilities.prompt_caching applies to text bots only; remove it")
        if self.modality != "text" and self.capabilities.tools:
            raise ValueError("capabilities.tools applies to text bots only; remove it")
        if self.modality == "image" and self.image_format is None:
            raise ValueError("image bots need image_format ('amazon' for Nova Canvas/Titan, 'stability'); set it")
        if self.modality != "image" and self.image_options is not None:
            raise ValueError("image_options applies to image bots only; remove it")
        if self.modality == "image":
            self._check_image_choices()
        if self.modality != "embedding" and self.embedding is not None:
            raise ValueError("embedding applies to embedding bots only; remove it")
        if self.modality == "embedding":
            self._check_embedding_model()
        if not price_published(self.model_id) and self.prices.input_per_1k <= 0:
            raise ValueError(
                f"bot '{self.name}' calls '{self.model_id}', whose price this project could not read on a public "
                "page (it is not in lambdas/shared/prices.json), so the bot must carry its own; set "
                f"bots.{self.name}.prices.input_per_1k to the USD per 1,000 input tokens the Amazon Bedrock pricing "
                f"page lists for the model in {self.region}"
            )
        region = self.guardrail.arn_region if self.guardrail else None
        if region is not None and region != self.region:
            raise ValueError(
                f"the guardrail's ARN is in {region} but the bot calls Bedrock in {self.region}; use a guardrail of "
                "the bot's region"
            )
        return self

    def _check_image_choices(self) -> None:
        """Every size and aspect ratio the bot offers is one its model generates (a model not in the registry is
        not checked)."""
        sizes = image_sizes_of(self.model_id)
        if sizes is None:
            return
        field = (
            "image_options" if self.image_options is not None else f"the defaults of image_format {self.image_format}"
        )
        for size in self.images.sizes:
            problem = sizes.size_problem(size)
            if problem:
                raise ValueError(f"{field}: size '{size}' cannot be generated ({problem}); offer other sizes")
        for ratio in self.images.aspect_ratios:
            problem = sizes.aspect_ratio_problem(ratio)
            if problem:
                raise ValueError(f"{field}: aspect ratio '{ratio}' cannot be used ({problem}); offer other ones")

    def _check_embedding_model(self) -> None:
        """The model is an embedding model of the registry (its request body is known), and ``input_type`` and
        ``embedding_purpose`` are given only to a model that takes them."""
        adapter = embedding_adapter_of(self.model_id)
        if adapter is None:
            raise ValueError(
                f"embedding bots need an embedding model of lambdas/shared/model_families.py (Titan Text Embeddings "
                f"V2, Titan Multimodal Embeddings G1, Cohere Embed v3, Nova Multimodal Embeddings); "
                f"'{self.model_id}' is none; fix model_id"
            )
        if self.embeddings.input_type is not None and "input_type" not in adapter.parameters:
            raise ValueError(f"embedding.input_type applies to Cohere Embed only, not {adapter.title}; remove it")
        if self.embeddings.embedding_purpose is not None and "embedding_purpose" not in adapter.parameters:
            raise ValueError(
                f"embedding.embedding_purpose applies to Nova Multimodal Embeddings only, not {adapter.title}; "
                "remove it (Cohere Embed takes embedding.input_type)"
            )

    @property
    def embeddings(self) -> EmbeddingOptions:
        """The embedding choices: ``embedding``, or the defaults."""
        return self.embedding if self.embedding is not None else EmbeddingOptions()

    @property
    def images(self) -> ImageOptions:
        """The image choices: ``image_options``, or the defaults of the bot's ``image_format``."""
        if self.image_options is not None:
            return self.image_options
        return DEFAULT_IMAGE_OPTIONS[self.image_format or "amazon"]

    @property
    def ref(self) -> ModelRef:
        return ModelRef.parse(self.model_id)

    @property
    def is_router(self) -> bool:
        return self.ref.arn_kind in ("prompt-router", "default-prompt-router")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "parameter_controls":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(bot: str, error: ValidationError, data: Mapping[str, Any]) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(bot)"
        value = item.get("input")
        shown = "(missing)" if item["type"] == "missing" else json.dumps(value, default=str)[:120]
        lines.append(
            f"bot '{bot}': field '{where}' = {shown}: {item['msg']}; fix it under bots.{bot} (or defaults) in bots.json"
        )
    return "\n".join(lines)


# An ARN of an account's own resource (a prompt router, an inference profile) whose account field is left empty in
# the bot file: it names the deploying account's resource, filled in at start (``GATEWAY_ACCOUNT_ID``).
_ACCOUNT_LESS_ARN = re.compile(
    rf"^(arn:aws[a-z-]*:bedrock:[a-z0-9-]+:)(:(?:{'|'.join(ACCOUNT_RESOURCE_ARN_KINDS)})/.+)$"
)
LOCAL_ACCOUNT = "123456789012"  # the emulator's (moto's) account, used when GATEWAY_ACCOUNT_ID is not set


def with_account(model_id: str, account: str) -> str:
    """``model_id`` with ``account`` filled in when it is an account-less ARN of an account resource, else as is."""
    match = _ACCOUNT_LESS_ARN.match(model_id)
    return f"{match.group(1)}{account}{match.group(2)}" if match else model_id


def parse_bots(document: Mapping[str, Any], account: str = LOCAL_ACCOUNT) -> dict[str, BotConfig]:
    """Validate a bots document (``{"defaults": {...}, "bots": {name: {...}}}``) into frozen configs by name;
    account-less router/profile ARNs get ``account``."""
    if not isinstance(document, Mapping) or not isinstance(document.get("bots"), Mapping):
        raise BotConfigError("bots.json must be an object with a 'bots' object (and optional 'defaults'); add it")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise BotConfigError("bots.json: 'defaults' must be an object of bot fields; fix it")
    unknown = set(document) - {"defaults", "bots", "$comment"}
    if unknown:
        raise BotConfigError(f"bots.json: unknown top-level keys {sorted(unknown)}; use only 'defaults' and 'bots'")
    bots: dict[str, BotConfig] = {}
    problems: list[str] = []
    for name, entry in document["bots"].items():
        if not isinstance(entry, Mapping):
            problems.append(f"bot '{name}': must be an object of fields, got {json.dumps(entry)[:60]}")
            continue
        data = _merge(defaults, entry) | {"name": name}
        if isinstance(data.get("model_id"), str):
            data["model_id"] = with_account(data["model_id"], account)
        targets = data.get("target_model_ids")
        if isinstance(targets, list):
            data["target_model_ids"] = [with_account(t, account) if isinstance(t, str) else t for t in targets]
        try:
            bots[name] = BotConfig.model_validate(data)
        except ValidationError as error:
            problems.append(_describe(name, error, data))
    if problems:
        raise BotConfigError("invalid bot configuration:\n" + "\n".join(problems))
    if not bots:
        raise BotConfigError("bots.json defines no bot; add at least one under 'bots'")
    return bots


def load_bots(path: Path = BOTS_FILE, account: str = LOCAL_ACCOUNT) -> dict[str, BotConfig]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BotConfigError(f"cannot read bot configuration {path}: {error}") from None
    return parse_bots(document, account)


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway needs besides the bots; ``from_env`` reads it once at start."""

    bots: Mapping[str, BotConfig]
    access_keys: Mapping[str, str] = field(default_factory=dict)  # key ref -> key
    max_body_bytes: int = 1_048_576
    body_timeout: float = 30.0  # seconds to receive a whole request body (slow clients: HTTP 408)
    connect_timeout: float = 5.0
    read_timeout: float = 300.0
    max_attempts: int = 4  # in all, the first call included
    retry_mode: str = "adaptive"
    # Connections to Bedrock held open: one per open stream (a stream keeps its connection until it ends), so the
    # streams a process serves at once, not a cost - aiohttp opens them on demand. In Lambda one request at a time.
    max_pool_connections: int = 1000
    # Read pacing (lambdas.gateway.pacing): after an answer's first token, its Bedrock connection is read at most
    # every this many milliseconds, several events a read; 0: every event read as it arrives (the Lambda option)
    stream_interval_ms: int = 0
    media_bucket: str = ""  # S3 bucket for generated images (presigned URLs); empty: image bots answer 503
    media_region: str = "us-east-1"
    media_url_seconds: int = 3600
    video_poll_seconds: float = 5.0
    video_max_seconds: float = 540.0  # under Poe's 600 s limit for a whole answer
    access_keys_secret_arn: str = ""  # on AWS: a Secrets Manager secret {ref: key}, read once at start
    attachment_max_bytes: int = 4_718_592  # one attachment (Converse: documents 4.5 MB, images 3.75 MB)
    attachment_timeout: float = 10.0  # seconds to download one attachment URL
    attachment_private_hosts: bool = False  # local runs only: allow attachment URLs on private/loopback addresses
    team_keys: TeamKeySettings = field(default_factory=TeamKeySettings)  # the team-key table and the admin key
    emf_agent: EmfAgent | None = None  # the Fargate task: EMF records to the CloudWatch agent, not printed
    # The Batch API: the batch stack's data bucket (files and batches, lambdas.gateway.batch_store) and state machine
    # (lambdas.gateway.routes_batches); empty when the gateway is deployed without the batch stack (those routes
    # then answer an error naming the fix)
    batch_bucket: str = ""
    batch_region: str = "us-east-1"
    batch_state_machine_arn: str = ""
    # POST /v1/files: the largest upload (API Gateway's 10 MB REST payload; larger inputs go as s3:// references)
    max_upload_bytes: int = 10_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if env is None else env
        path = Path(env.get("GATEWAY_BOTS_FILE") or BOTS_FILE)
        return cls(
            bots=load_bots(path, env.get("GATEWAY_ACCOUNT_ID") or LOCAL_ACCOUNT),
            access_keys=access_keys_from_env(env),
            max_body_bytes=int(env.get("GATEWAY_MAX_BODY_BYTES", "1048576")),
            body_timeout=float(env.get("GATEWAY_BODY_TIMEOUT", "30")),
            connect_timeout=float(env.get("GATEWAY_CONNECT_TIMEOUT", "5")),
            read_timeout=float(env.get("GATEWAY_READ_TIMEOUT", "300")),
            max_attempts=int(env.get("GATEWAY_MAX_ATTEMPTS", "4")),
            retry_mode=env.get("GATEWAY_RETRY_MODE", "adaptive"),
            max_pool_connections=int(env.get("GATEWAY_MAX_POOL_CONNECTIONS", "1000")),
            stream_interval_ms=stream_interval_ms(env.get("GATEWAY_STREAM_INTERVAL_MS", "0")),
            media_bucket=env.get("GATEWAY_MEDIA_BUCKET", ""),
            media_region=env.get("GATEWAY_MEDIA_REGION") or env.get("AWS_REGION") or "us-east-1",
            media_url_seconds=int(env.get("GATEWAY_MEDIA_URL_SECONDS", "3600")),
            video_poll_seconds=float(env.get("GATEWAY_VIDEO_POLL_SECONDS", "5")),
            video_max_seconds=float(env.get("GATEWAY_VIDEO_MAX_SECONDS", "540")),
            access_keys_secret_arn=env.get("GATEWAY_ACCESS_KEYS_SECRET_ARN", ""),
            attachment_max_bytes=int(env.get("GATEWAY_ATTACHMENT_MAX_BYTES", "4718592")),
            attachment_timeout=float(env.get("GATEWAY_ATTACHMENT_TIMEOUT", "10")),
            attachment_private_hosts=env.get("GATEWAY_ATTACHMENT_PRIVATE_HOSTS", "").lower() == "true",
            team_keys=TeamKeySettings.from_env(env),
            batch_state_machine_arn=env.get("GATEWAY_BATCH_STATE_MACHINE_ARN", ""),
            emf_agent=(
                EmfAgent.parse(env["GATEWAY_EMF_AGENT_ENDPOINT"], env.get("GATEWAY_EMF_LOG_GROUP", ""))
                if env.get("GATEWAY_EMF_AGENT_ENDPOINT")
                else None
            ),
            batch_bucket=env.get("GATEWAY_BATCH_BUCKET", ""),
            batch_region=env.get("GATEWAY_BATCH_REGION") or env.get("AWS_REGION") or "us-east-1",
            max_upload_bytes=int(env.get("GATEWAY_MAX_UPLOAD_BYTES", "10000000")),
        )


def stream_interval_ms(raw: str) -> int:
    """``GATEWAY_STREAM_INTERVAL_MS``: whole milliseconds, 0 (off) to 1000."""
    value = raw.strip()
    if not value.isdigit() or int(value) > 1000:
        raise BotConfigError(
            f"GATEWAY_STREAM_INTERVAL_MS must be whole milliseconds from 0 (off) to 1000, got {raw!r}; "
            "set it with the cdk.json key gatewayStreamIntervalMs"
        )
    return int(value)


def parse_access_keys(raw: str, source: str) -> dict[str, str]:
    """A JSON object {ref: key} of non-empty strings (the secret's value, or GATEWAY_ACCESS_KEYS)."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) and v for v in parsed.values()):
        raise BotConfigError(f'{source} must be a JSON object {{"ref": "key", ...}} of non-empty strings')
    return dict(parsed)


def access_keys_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """``GATEWAY_ACCESS_KEY``: the key of the ``default`` ref; ``GATEWAY_ACCESS_KEYS`` (JSON {ref: key}): others."""
    keys: dict[str, str] = {}
    raw = env.get("GATEWAY_ACCESS_KEYS", "").strip()
    if raw:
        keys.update(parse_access_keys(raw, "GATEWAY_ACCESS_KEYS"))
    if env.get("GATEWAY_ACCESS_KEY"):
        keys[DEFAULT_KEY_REF] = env["GATEWAY_ACCESS_KEY"]
    return keys
