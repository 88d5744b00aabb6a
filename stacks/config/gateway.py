"""The model gateway's settings: its bot file, where it runs, the Lambda Web Adapter layer, API throttling, media
retention and Bedrock model invocation logging."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stacks.config.batch import BEDROCK_REGIONS, DEFAULT_BEDROCK_REGIONS
from stacks.config.bots import GatewayBot, load_bots
from stacks.config.common import PROJECT_ROOT, Context, HasNode, check_region, error, reject_typos, setting
from stacks.config.fargate import FARGATE_KEYS, GatewayServiceConfig
from stacks.config.team_keys import GatewayKeysConfig

DEFAULT_GATEWAY_BOTS_FILE = "lambdas/gateway/bots.json"
GATEWAY_COMPUTES = ("lambda", "fargate")
# Lambda Web Adapter, zip form: the layer arn:<partition>:lambda:<region>:<account>:layer:<name>:<version>, published
# per partition, region and architecture by the project (its README and user guide, "Zip Packages"). The one place
# that says which release the gateway runs; docs/bedrock-facts.md ("IAM, SNS, KMS and the Lambda Web Adapter") gives
# the sources. v1.1.0 is the newest stable release; its layer is version 30 (29 was cut by a release that was reverted).
WEB_ADAPTER_RELEASE = "v1.1.0"
WEB_ADAPTER_LAYER_VERSION = 30
WEB_ADAPTER_LAYER_NAMES = {"arm64": "LambdaAdapterLayerArm64", "x86_64": "LambdaAdapterLayerX86"}
# Who publishes the layer where. Commercial regions: one account, both architectures, in the regions of the release
# pipeline (its .github/workflows/prod.json, every one arm64_supported), which dropped me-south-1 for v1.0.0; a region
# added to AWS later has no layer until the pipeline lists it. China: one account per region, x86_64 only (the README
# lists no arm64 layer there). No other partition (GovCloud, ISO, European Sovereign Cloud) has one.
WEB_ADAPTER_COMMERCIAL_ACCOUNT = "753240598075"
WEB_ADAPTER_COMMERCIAL_REGIONS = (
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)
WEB_ADAPTER_CHINA_ACCOUNTS = {"cn-north-1": "041581134020", "cn-northwest-1": "069767869989"}
WEB_ADAPTER_CHINA_ARCHITECTURES = ("x86_64",)


def web_adapter_publishers(architecture: str) -> dict[str, str]:
    """The region -> account of every published Lambda Web Adapter layer of ``architecture`` (``arm64``,
    ``x86_64``), as the constants above say."""
    publishers = dict.fromkeys(WEB_ADAPTER_COMMERCIAL_REGIONS, WEB_ADAPTER_COMMERCIAL_ACCOUNT)
    if architecture in WEB_ADAPTER_CHINA_ARCHITECTURES:
        publishers.update(WEB_ADAPTER_CHINA_ACCOUNTS)
    return publishers


BOTS_FILE = setting(
    "gateway",
    "gatewayBotsFile",
    DEFAULT_GATEWAY_BOTS_FILE,
    "the gateway's bot file (staged into the function or image; IAM grants exactly its bots' models)",
    kind="a path relative to the project",
)
COMPUTE = setting(
    "gateway",
    "gatewayCompute",
    "lambda",
    "where the gateway runs: `lambda` (the function behind the REST API) or `fargate` (ECS Fargate behind an "
    "Application Load Balancer; see [Gateway compute](gateway/compute.md))",
    choices=GATEWAY_COMPUTES,
)
MEMORY = setting("gateway", "gatewayMemoryMb", 1024, "memory of the gateway function", low=128, high=10240)
LAYER_ACCOUNT = setting(
    "gateway",
    "gatewayWebAdapterLayerAccount",
    None,
    "only for a copy of the Lambda Web Adapter layer you publish yourself (same layer names), e.g. in GovCloud, where "
    "the Lambda Web Adapter project publishes none: the account of that copy (see [The Lambda Web Adapter layer]"
    "(gateway/compute.md#the-lambda-web-adapter-layer))",
    kind="12-digit account id",
    default_text="absent: the account that publishes the pinned release in the stack's region",
)
LAYER_VERSION = setting(
    "gateway",
    "gatewayWebAdapterLayerVersion",
    WEB_ADAPTER_LAYER_VERSION,
    f"the layer version: the pinned release ({WEB_ADAPTER_RELEASE}), or that of your copy",
    low=1,
)
THROTTLING_RATE = setting(
    "gateway",
    "gatewayThrottlingRateLimit",
    50,
    "API stage throttling: requests per second (over it: 429)",
    low=1,
    high=10_000,
)
THROTTLING_BURST = setting(
    "gateway", "gatewayThrottlingBurstLimit", 100, "API stage throttling: burst", low=1, high=5_000
)
MEDIA_EXPIRATION = setting(
    "gateway",
    "gatewayMediaExpirationDays",
    7,
    "lifecycle expiry of generated images and videos in the media bucket",
    low=1,
)
INVOCATION_LOGGING = setting(
    "gateway",
    "modelInvocationLogging",
    False,
    "Bedrock model invocation logging (text data) into a log group of the gateway stack, with a role for Bedrock and "
    "the account-level configuration set by a custom resource (see [Model invocation logging]"
    "(operations.md#model-invocation-logging))",
)


@dataclass(frozen=True)
class GatewayConfig:
    """The model gateway: its bots (from ``gatewayBotsFile``), function size, Web Adapter layer, API throttling,
    media retention and Bedrock model invocation logging (``modelInvocationLogging``, off by default). Read by
    ``from_context`` only when the gateway stack is built: the batch stack never needs the bot file."""

    bots: tuple[GatewayBot, ...]
    bots_file: str = DEFAULT_GATEWAY_BOTS_FILE
    memory_mb: int = MEMORY.default
    # None: the layer the Lambda Web Adapter project publishes in the stack's region (WEB_ADAPTER_*); an account: a
    # copy of the layer that account publishes (same layer names) in the stack's region, e.g. for GovCloud.
    web_adapter_layer_account: str | None = None
    web_adapter_layer_version: int = WEB_ADAPTER_LAYER_VERSION
    throttling_rate_limit: int = THROTTLING_RATE.default
    throttling_burst_limit: int = THROTTLING_BURST.default
    media_expiration_days: int = MEDIA_EXPIRATION.default
    bedrock_regions: tuple[str, ...] = DEFAULT_BEDROCK_REGIONS
    model_invocation_logging: bool = False  # account-level Bedrock invocation logs into a log group of the stack
    compute: str = COMPUTE.default  # "lambda" (API Gateway + Lambda) or "fargate" (ALB + ECS Fargate)
    service: GatewayServiceConfig | None = None  # the Fargate settings, set exactly when compute is "fargate"
    keys: GatewayKeysConfig = GatewayKeysConfig()  # team keys: the key table and the budget alarm

    @classmethod
    def from_app(cls, app: HasNode) -> GatewayConfig:
        return cls.from_context(app.node.get_all_context())

    @classmethod
    def from_context(cls, context: Mapping[str, object], *, root: Path = PROJECT_ROOT) -> GatewayConfig:
        """Read the gateway keys and the bot file (relative paths are relative to ``root``, the project root)."""
        reject_typos(context)
        ctx = Context(context)
        bots_file = ctx.raw(BOTS_FILE)
        if not isinstance(bots_file, str) or not bots_file.strip() or Path(bots_file.strip()).is_absolute():
            # Relative: the file is staged into the function's asset, so IAM and the app read the same bots.
            need = "the path of the bot file, relative to the project"
            raise error(BOTS_FILE.key, need, bots_file, BOTS_FILE.default)
        account = ctx.raw(LAYER_ACCOUNT)
        if account is not None and not re.fullmatch(r"\d{12}", str(account).strip()):
            raise error(
                LAYER_ACCOUNT.key,
                "the 12-digit account that publishes your copy of the Lambda Web Adapter layer (leave it out for "
                "the layer the Lambda Web Adapter project publishes)",
                account,
                "123456789012",
            )
        compute = ctx.choice(COMPUTE)
        stray = [key for key in FARGATE_KEYS if key in context and context[key] not in (None, "")]
        if compute == "lambda" and stray:
            raise ValueError(
                f"{', '.join(stray)} apply to gatewayCompute=fargate only, but gatewayCompute is lambda; "
                f"remove them from cdk.json or pass -c gatewayCompute=fargate"
            )
        return cls(
            bots=load_bots(_resolve(bots_file.strip(), root)),
            bots_file=bots_file.strip(),
            memory_mb=ctx.integer(MEMORY),
            web_adapter_layer_account=None if account is None else str(account).strip(),
            web_adapter_layer_version=ctx.integer(LAYER_VERSION),
            throttling_rate_limit=ctx.integer(THROTTLING_RATE),
            throttling_burst_limit=ctx.integer(THROTTLING_BURST),
            media_expiration_days=ctx.integer(MEDIA_EXPIRATION),
            bedrock_regions=ctx.strings(BEDROCK_REGIONS, check_region),
            model_invocation_logging=ctx.boolean(INVOCATION_LOGGING),
            compute=compute,
            service=GatewayServiceConfig.from_context(context) if compute == "fargate" else None,
            keys=GatewayKeysConfig.from_context(context),
        )


def _resolve(path: str, root: Path) -> Path:
    resolved = root / path
    if not resolved.is_file():
        raise ValueError(
            f"gatewayBotsFile: the bot file {str(resolved)!r} does not exist; create it or point gatewayBotsFile at "
            f"one in cdk.json or with -c gatewayBotsFile=path/to/bots.json"
        )
    return resolved
