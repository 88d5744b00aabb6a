"""Deployment settings, read once from the CDK context (``cdk.json`` plus ``-c key=value``) into frozen dataclasses.

One module per concern: ``common`` (the registry of settings and the typed readers), ``functions`` (what every
function and bucket shares), ``batch``, ``security``, ``bots`` and ``gateway`` (with ``fargate`` and ``team_keys``),
``operations``;
``reference`` renders the configuration reference (docs/configuration.md) from the registry. Every key is declared
once, with its type, default and meaning, and read through that declaration, so the reference cannot drift from the
code. A bad value fails with the key, the value and the fix. Nothing else under ``stacks/`` reads context,
environment variables or AWS, so synth stays offline and deterministic. This package imports no CDK code: it is
cheap to test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stacks.config.batch import (
    DEFAULT_ALLOWED_MODEL_IDS,
    DEFAULT_BEDROCK_REGIONS,
    INFERENCE_PROFILE_PREFIXES,
    MAX_EXECUTION_TIMEOUT_HOURS,
    BatchConfig,
    base_model_id,
    is_inference_profile,
    late_job_hours,
)
from stacks.config.bots import DEFAULT_PROMPT_ROUTER_MODELS, MODALITIES, GatewayBot, load_bots, parse_model_arn
from stacks.config.common import (
    ARCHITECTURES,
    LOG_RETENTION_DAYS,
    PROJECT_ROOT,
    SETTINGS,
    HasNode,
    Setting,
    keys,
    reject_typos,
)
from stacks.config.fargate import FARGATE_KEYS, FARGATE_TASK_SIZES, GatewayServiceConfig, GatewayVpcConfig
from stacks.config.functions import FunctionConfig, StorageConfig
from stacks.config.gateway import (
    DEFAULT_GATEWAY_BOTS_FILE,
    GATEWAY_COMPUTES,
    WEB_ADAPTER_CHINA_ACCOUNTS,
    WEB_ADAPTER_CHINA_ARCHITECTURES,
    WEB_ADAPTER_COMMERCIAL_ACCOUNT,
    WEB_ADAPTER_COMMERCIAL_REGIONS,
    WEB_ADAPTER_LAYER_NAMES,
    WEB_ADAPTER_LAYER_VERSION,
    WEB_ADAPTER_RELEASE,
    GatewayConfig,
    web_adapter_publishers,
)
from stacks.config.operations import ObservabilityConfig
from stacks.config.security import KMS_KEY_CREATE, MAX_JOB_SUBNETS, MAX_TAGS, BatchVpcConfig, SecurityConfig
from stacks.config.team_keys import GatewayKeysConfig

# The keys the batch stack reads (AppConfig), the gateway stack (GatewayConfig, which also reads bedrockRegions) and
# both stacks' dashboards and alarms (ObservabilityConfig): the ones `cdk.json` and `-c` may set.
KNOWN_KEYS = (*keys("batch"), *keys("functions"), *keys("security"))
GATEWAY_KEYS = (*keys("gateway"), *keys("fargate"))
OBSERVABILITY_KEYS = keys("operations")


@dataclass(frozen=True)
class AppConfig:
    batch: BatchConfig
    functions: FunctionConfig
    storage: StorageConfig
    security: SecurityConfig = field(default_factory=SecurityConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)

    @classmethod
    def from_app(cls, app: HasNode) -> AppConfig:
        """Read and validate the app's context (cdk.json and ``-c``); raises ValueError naming key, value and fix."""
        return cls.from_context(app.node.get_all_context())

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> AppConfig:
        """Same as ``from_app`` for a plain mapping of context keys (tests, the local runtime)."""
        reject_typos(context)
        return cls(
            batch=BatchConfig.from_context(context),
            functions=FunctionConfig.from_context(context),
            storage=StorageConfig.from_context(context),
            security=SecurityConfig.from_context(context),
            observability=ObservabilityConfig.from_context(context),
        )


__all__ = [
    "ARCHITECTURES",
    "DEFAULT_ALLOWED_MODEL_IDS",
    "DEFAULT_BEDROCK_REGIONS",
    "DEFAULT_GATEWAY_BOTS_FILE",
    "DEFAULT_PROMPT_ROUTER_MODELS",
    "FARGATE_KEYS",
    "FARGATE_TASK_SIZES",
    "GATEWAY_COMPUTES",
    "GATEWAY_KEYS",
    "INFERENCE_PROFILE_PREFIXES",
    "KMS_KEY_CREATE",
    "KNOWN_KEYS",
    "LOG_RETENTION_DAYS",
    "MAX_EXECUTION_TIMEOUT_HOURS",
    "MAX_JOB_SUBNETS",
    "MAX_TAGS",
    "MODALITIES",
    "OBSERVABILITY_KEYS",
    "PROJECT_ROOT",
    "SETTINGS",
    "WEB_ADAPTER_CHINA_ACCOUNTS",
    "WEB_ADAPTER_CHINA_ARCHITECTURES",
    "WEB_ADAPTER_COMMERCIAL_ACCOUNT",
    "WEB_ADAPTER_COMMERCIAL_REGIONS",
    "WEB_ADAPTER_LAYER_NAMES",
    "WEB_ADAPTER_LAYER_VERSION",
    "WEB_ADAPTER_RELEASE",
    "AppConfig",
    "BatchConfig",
    "BatchVpcConfig",
    "FunctionConfig",
    "GatewayBot",
    "GatewayConfig",
    "GatewayKeysConfig",
    "GatewayServiceConfig",
    "GatewayVpcConfig",
    "HasNode",
    "ObservabilityConfig",
    "SecurityConfig",
    "Setting",
    "StorageConfig",
    "base_model_id",
    "is_inference_profile",
    "late_job_hours",
    "load_bots",
    "parse_model_arn",
    "web_adapter_publishers",
]
