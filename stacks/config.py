"""Deployment settings, read once from the CDK context (``cdk.json`` plus ``-c key=value``) into frozen dataclasses.

``-c`` values arrive as strings, so every reader casts ("7" -> 7, "true" -> True, '["a", "b"]' or "a,b" -> a tuple)
and a bad value fails with the key, the value and the fix. Nothing else under ``stacks/`` reads context, environment
variables or AWS, so synth stays offline and deterministic. This module imports no CDK code: it is cheap to test.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# The runtime's model registry is the one list of inference-profile prefixes: IAM (bedrock_batch_role.py) must grant
# exactly the profiles the Lambdas accept. model_families imports the standard library only, so synth stays cheap and
# offline (tests/unit/test_model_families.py guards that).
from lambdas.shared.model_families import PROFILE_PREFIXES, batch_model_problem
from lambdas.shared.models import DEADLINE_MARGIN

ARCHITECTURES = ("arm64", "x86_64")
INFERENCE_PROFILE_PREFIXES = tuple(f"{geo}." for geo in PROFILE_PREFIXES)  # us., us-gov., eu., apac., ..., global.
# CloudWatch Logs retention periods CDK's RetentionDays offers (INFINITE left out on purpose), by day count.
LOG_RETENTION_DAYS: dict[int, str] = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
DEFAULT_ALLOWED_MODEL_IDS = (
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "amazon.titan-embed-text-v2:0",
)
DEFAULT_BEDROCK_REGIONS = ("us-east-1", "us-east-2", "us-west-2")
MAX_EXECUTION_TIMEOUT_HOURS = 365 * 24  # a Standard workflow runs for at most one year
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GATEWAY_BOTS_FILE = "lambdas/gateway/bots.json"
MODALITIES = ("text", "image", "video")
# Lambda Web Adapter, zip form: the layer arn:<partition>:lambda:<region>:<account>:layer:<name>:<version>, published
# per partition, region and architecture by the project (its README and user guide, "Zip Packages"). The one place
# that says which release the gateway runs; docs/bedrock-facts.md ("IAM, SNS, KMS and the Lambda Web Adapter") gives
# the sources. v1.1.0 is the newest stable release; its layer is version 30 (29 was cut by a release that was reverted).
WEB_ADAPTER_RELEASE = "v1.1.0"
WEB_ADAPTER_LAYER_VERSION = 30
WEB_ADAPTER_LAYER_NAMES = {"arm64": "LambdaAdapterLayerArm64", "x86_64": "LambdaAdapterLayerX86"}
# Who publishes the layer where. Commercial regions: one account, both architectures, every region of the release
# pipeline, which dropped me-south-1 (so no layer there since v1.0.0). China: one account per region, x86_64 only
# (the README lists no arm64 layer there). No other partition (GovCloud, ISO, European Sovereign Cloud) has one.
WEB_ADAPTER_COMMERCIAL_ACCOUNT = "753240598075"
WEB_ADAPTER_COMMERCIAL_GAPS = ("me-south-1",)
WEB_ADAPTER_CHINA_ACCOUNTS = {"cn-north-1": "041581134020", "cn-northwest-1": "069767869989"}
WEB_ADAPTER_CHINA_ARCHITECTURES = ("x86_64",)
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
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+(:[a-z0-9-]+)?$", re.IGNORECASE)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_BOOLEANS = {"true": True, "false": False}


class _HasNode(Protocol):
    """Anything with a construct node, such as ``cdk.App``; typed loosely so this module needs no CDK import."""

    @property
    def node(self) -> Any: ...


@dataclass(frozen=True)
class BatchConfig:
    """The batch workflow: concurrency cap, polling, timeouts and which Bedrock models a run may use."""

    max_concurrent_jobs: int = 20
    poll_interval_seconds: int = 60
    job_timeout_hours: int = 72
    execution_timeout_hours: int = 150  # 2 * late_job_hours(72)
    max_records_per_job: int = 50_000
    allowed_model_ids: tuple[str, ...] = DEFAULT_ALLOWED_MODEL_IDS
    bedrock_regions: tuple[str, ...] = DEFAULT_BEDROCK_REGIONS
    # cdk.json prices (over lambdas/shared/prices.json): (model id, on-demand USD per 1M input, per 1M output tokens)
    prices: tuple[tuple[str, float, float], ...] = ()

    def prices_json(self) -> str:
        """``prices`` as Finalize reads them (``PRICES``): ``{"<id>": {"input_per_1m": x, "output_per_1m": y}}``."""
        return json.dumps(
            {model: {"input_per_1m": i, "output_per_1m": o} for model, i, o in self.prices}, separators=(",", ":")
        )


@dataclass(frozen=True)
class FunctionConfig:
    """Settings every Lambda function shares, plus the sizes of the control-plane and data-plane functions."""

    architecture: str = "arm64"
    control_plane_memory_mb: int = 256
    data_plane_memory_mb: int = 3008
    data_plane_ephemeral_storage_mb: int = 10240
    log_retention_days: int = 30


@dataclass(frozen=True)
class StorageConfig:
    """The data bucket: how long run files live and whether `cdk destroy` empties and deletes it."""

    run_data_expiration_days: int = 30
    auto_delete_objects: bool = False


KMS_KEY_CREATE = "create"
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,128}$")
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+@-]{0,256}$")
MAX_TAGS = 40  # Bedrock jobs take up to 200 tags; CloudFormation stack tags 50, the stack adds a few of its own


_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
MAX_JOB_SUBNETS = 16  # CreateModelInvocationJob vpcConfig.subnetIds


@dataclass(frozen=True)
class BatchVpcConfig:
    """Where Bedrock batch jobs run (``vpcConfig``): a VPC the stack creates (``{"create": true}``: isolated subnets,
    an S3 gateway endpoint, flow logs) or an existing one (``{"vpcId": ..., "subnetIds": [...]}``, whose routes to S3
    are its owner's). Either way the stack creates the jobs' security group."""

    create: bool = False
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecurityConfig:
    """Optional hardening, off by default (``kmsKey`` absent = SSE-S3 and AWS-owned keys, as before).

    ``kms_key``: None, ``"create"`` (a customer-managed key with rotation, made by the stack) or an existing key ARN.
    The key encrypts the data bucket, every log group, the state machine and the Bedrock job output.
    ``tags``: cost-attribution tags (``{"project": ..., "owner": ..., "costCentre": ..., "environment": ...}``) put on
    every resource of the stacks and on every Bedrock batch job.
    """

    kms_key: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    batch_vpc: BatchVpcConfig | None = None

    @property
    def creates_key(self) -> bool:
        return self.kms_key == KMS_KEY_CREATE

    @property
    def uses_kms(self) -> bool:
        return self.kms_key is not None

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> SecurityConfig:
        return cls(
            kms_key=_kms_key(context.get("kmsKey")),
            tags=_tags(context.get("tags")),
            batch_vpc=_batch_vpc(context.get("batchVpc")),
        )


def _batch_vpc(value: object) -> BatchVpcConfig | None:
    example = '\'{"create": true}\' or \'{"vpcId": "vpc-0abc...", "subnetIds": ["subnet-0abc..."]}\''
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "false")):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _error("batchVpc", "a JSON object", value, example) from None
    need = (
        '{"create": true}, or {"vpcId": "vpc-...", "subnetIds": [1 to 16 "subnet-..." ids]} of an existing VPC, '
        "or absent (jobs outside a VPC)"
    )
    if not isinstance(value, dict) or not set(value) <= {"create", "vpcId", "subnetIds"}:
        raise _error("batchVpc", need, value, example)
    create = value.get("create", False)
    if create is True and set(value) == {"create"}:
        return BatchVpcConfig(create=True)
    vpc_id, subnets = value.get("vpcId"), value.get("subnetIds")
    if (
        create is not False
        or not isinstance(vpc_id, str)
        or not _VPC_ID.match(vpc_id)
        or not isinstance(subnets, list)
        or not 1 <= len(subnets) <= MAX_JOB_SUBNETS
        or not all(isinstance(s, str) and _SUBNET_ID.match(s) for s in subnets)
    ):
        raise _error("batchVpc", need, value, example)
    return BatchVpcConfig(vpc_id=vpc_id, subnet_ids=tuple(dict.fromkeys(subnets)))


def _kms_key(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "false")):
        return None
    text = str(value).strip()
    if text.lower() == KMS_KEY_CREATE:
        return KMS_KEY_CREATE
    if _KMS_KEY_ARN.match(text):
        return text
    raise _error(
        "kmsKey",
        '"create" (a new customer-managed key), the ARN of an existing key (arn:aws:kms:<region>:<account>:key/<id>), '
        "or absent (S3-managed keys)",
        value,
        KMS_KEY_CREATE,
    )


def _tags(value: object) -> tuple[tuple[str, str], ...]:
    example = '\'{"project": "batch", "owner": "team@example.com", "costCentre": "1234", "environment": "dev"}\''
    if value is None:
        return ()
    if isinstance(value, str):  # -c tags='{"project": ...}'
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise _error("tags", "a JSON object of tag names to values", value, example) from None
    if not isinstance(value, dict) or len(value) > MAX_TAGS:
        raise _error("tags", f"a JSON object of at most {MAX_TAGS} tag names to values", value, example)
    tags = []
    for key, tag_value in value.items():
        if not isinstance(key, str) or not _TAG_KEY.match(key) or key.lower().startswith("aws:"):
            raise _error(
                "tags", f"an object whose names are 1-128 tag characters, not aws:; {key!r} is not", value, example
            )
        if not isinstance(tag_value, str) or not _TAG_VALUE.match(tag_value):
            raise _error(
                "tags", f"an object whose values are strings of 0-256 tag characters; {key!r} is not", value, example
            )
        tags.append((key, tag_value))
    return tuple(tags)


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


GATEWAY_COMPUTES = ("lambda", "fargate")
# Fargate task sizes: CPU units -> the memory (MiB) each allows (Amazon ECS developer guide, "Troubleshoot Amazon ECS
# task definition invalid CPU or memory errors"; the ECS API's RegisterTaskDefinition ``memory``).
FARGATE_TASK_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}
# An ACM certificate ARN: arn:<partition>:acm:<region>:<account>:certificate/<uuid>.
_CERTIFICATE_ARN = re.compile(
    r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)
# The keys that only the Fargate service reads: set with gatewayCompute=lambda they would be ignored, so they fail.
FARGATE_KEYS = (
    "gatewayCertificateArn",
    "gatewayTaskCpu",
    "gatewayTaskMemoryMb",
    "gatewayMinTasks",
    "gatewayMaxTasks",
    "gatewayRequestsPerTask",
    "gatewayVpc",
)


@dataclass(frozen=True)
class GatewayVpcConfig:
    """An existing VPC for the Fargate gateway: the load balancer in ``public_subnet_ids``, the tasks in
    ``private_subnet_ids`` (whose route to the internet, a NAT gateway, is the VPC owner's)."""

    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class GatewayServiceConfig:
    """The gateway as an ECS Fargate service behind an Application Load Balancer (``gatewayCompute=fargate``).

    ``certificate_arn``: the ACM certificate of the HTTPS listener. ``task_cpu`` (CPU units, 1024 = 1 vCPU) and
    ``task_memory_mb`` size one task; uvicorn runs one worker per vCPU. ``min_tasks``..``max_tasks``: autoscaling on
    CPU and on ``requests_per_task`` (ALB requests per task per minute). ``vpc``: None creates a VPC (public subnets for
    the load balancer, private subnets with NAT gateways for the tasks)."""

    certificate_arn: str
    task_cpu: int = 1024
    task_memory_mb: int = 2048
    min_tasks: int = 2
    max_tasks: int = 10
    requests_per_task: int = 600
    vpc: GatewayVpcConfig | None = None

    @property
    def region(self) -> str:
        """The certificate's region: an ALB takes certificates of its own region only, so the stack deploys there
        (and synth knows the region, which the load balancer's access-log bucket policy needs)."""
        return self.certificate_arn.split(":")[3]

    @property
    def workers(self) -> int:
        """uvicorn worker processes: one per whole vCPU of the task, at least one."""
        return max(1, self.task_cpu // 1024)

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> GatewayServiceConfig:
        ctx = _Context(context)
        certificate = context.get("gatewayCertificateArn")
        if not isinstance(certificate, str) or not _CERTIFICATE_ARN.match(certificate.strip()):
            raise _error(
                "gatewayCertificateArn",
                "the ARN of an ACM certificate for the load balancer's HTTPS listener, required with "
                "gatewayCompute=fargate (request or import one in ACM, in the stack's region)",
                certificate,
                "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
            )
        cpu = ctx.integer("gatewayTaskCpu", cls.task_cpu, 256, 16384)
        if cpu not in FARGATE_TASK_SIZES:
            raise _error(
                "gatewayTaskCpu", "Fargate CPU units: " + ", ".join(map(str, FARGATE_TASK_SIZES)), cpu, cls.task_cpu
            )
        memory = ctx.integer("gatewayTaskMemoryMb", max(cls.task_memory_mb, FARGATE_TASK_SIZES[cpu][0]), 512, None)
        allowed = FARGATE_TASK_SIZES[cpu]
        if memory not in allowed:
            raise _error(
                "gatewayTaskMemoryMb",
                f"a memory size Fargate allows with gatewayTaskCpu={cpu}: {allowed[0]} to {allowed[-1]} MiB in steps "
                f"of {allowed[1] - allowed[0]}",
                memory,
                allowed[0],
            )
        min_tasks = ctx.integer("gatewayMinTasks", cls.min_tasks, 1, 1000)
        max_tasks = ctx.integer(
            "gatewayMaxTasks", max(cls.max_tasks, min_tasks), min_tasks, 1000, " (>= gatewayMinTasks)"
        )
        return cls(
            certificate_arn=certificate.strip(),
            task_cpu=cpu,
            task_memory_mb=memory,
            min_tasks=min_tasks,
            max_tasks=max_tasks,
            requests_per_task=ctx.integer("gatewayRequestsPerTask", cls.requests_per_task, 1, 1_000_000),
            vpc=_gateway_vpc(context.get("gatewayVpc")),
        )


def _gateway_vpc(value: object) -> GatewayVpcConfig | None:
    example = '\'{"vpcId": "vpc-0abc...", "publicSubnetIds": ["subnet-..", "subnet-.."], "privateSubnetIds": [...]}\''
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "create")):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _error("gatewayVpc", "a JSON object", value, example) from None
    need = (
        '{"vpcId": "vpc-...", "publicSubnetIds": [2 or more "subnet-..." ids in different AZs, for the load balancer], '
        '"privateSubnetIds": [1 or more "subnet-..." ids with a NAT route, for the tasks]}, or absent (a new VPC)'
    )
    if not isinstance(value, dict) or set(value) != {"vpcId", "publicSubnetIds", "privateSubnetIds"}:
        raise _error("gatewayVpc", need, value, example)
    vpc_id, public, private = value["vpcId"], value["publicSubnetIds"], value["privateSubnetIds"]

    def subnets(ids: object, least: int) -> bool:
        return (
            isinstance(ids, list)
            and least <= len(ids) <= MAX_JOB_SUBNETS
            and all(isinstance(s, str) and _SUBNET_ID.match(s) for s in ids)
        )

    if not isinstance(vpc_id, str) or not _VPC_ID.match(vpc_id) or not subnets(public, 2) or not subnets(private, 1):
        raise _error("gatewayVpc", need, value, example)
    return GatewayVpcConfig(
        vpc_id=vpc_id,
        public_subnet_ids=tuple(dict.fromkeys(public)),
        private_subnet_ids=tuple(dict.fromkeys(private)),
    )


# The keys GatewayKeysConfig reads (team keys: their table and budget alarm).
TEAM_KEYS_KEYS = ("gatewayKeysDeletionProtection", "gatewayKeyBudgetAlarmPercent")


@dataclass(frozen=True)
class GatewayKeysConfig:
    """Team keys (``docs/gateway-keys.md``): whether the key table is protected from deletion
    (``gatewayKeysDeletionProtection``, on by default) and the share of a key's monthly budget, in percent, past which
    the budget alarm fires (``gatewayKeyBudgetAlarmPercent``)."""

    deletion_protection: bool = True
    budget_alarm_percent: int = 80

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> GatewayKeysConfig:
        ctx = _Context(context)
        return cls(
            deletion_protection=ctx.boolean("gatewayKeysDeletionProtection", cls.deletion_protection),
            budget_alarm_percent=ctx.integer("gatewayKeyBudgetAlarmPercent", cls.budget_alarm_percent, 1, 100),
        )


@dataclass(frozen=True)
class GatewayConfig:
    """The model gateway: its bots (from ``gatewayBotsFile``), function size, Web Adapter layer, API throttling,
    media retention and Bedrock model invocation logging (``modelInvocationLogging``, off by default). Read by
    ``from_context`` only when the gateway stack is built: the batch stack never needs the bot file."""

    bots: tuple[GatewayBot, ...]
    bots_file: str = DEFAULT_GATEWAY_BOTS_FILE
    memory_mb: int = 1024
    # None: the layer the Lambda Web Adapter project publishes in the stack's region (WEB_ADAPTER_*); an account: a
    # copy of the layer that account publishes (same layer names) in the stack's region, e.g. for GovCloud.
    web_adapter_layer_account: str | None = None
    web_adapter_layer_version: int = WEB_ADAPTER_LAYER_VERSION
    throttling_rate_limit: int = 50
    throttling_burst_limit: int = 100
    media_expiration_days: int = 7
    bedrock_regions: tuple[str, ...] = DEFAULT_BEDROCK_REGIONS
    model_invocation_logging: bool = False  # account-level Bedrock invocation logs into a log group of the stack
    compute: str = "lambda"  # gatewayCompute: "lambda" (API Gateway + Lambda) or "fargate" (ALB + ECS Fargate)
    service: GatewayServiceConfig | None = None  # the Fargate settings, set exactly when compute is "fargate"
    keys: GatewayKeysConfig = GatewayKeysConfig()  # team keys: the key table and the budget alarm

    @classmethod
    def from_app(cls, app: _HasNode) -> GatewayConfig:
        return cls.from_context(app.node.get_all_context())

    @classmethod
    def from_context(cls, context: Mapping[str, object], *, root: Path = PROJECT_ROOT) -> GatewayConfig:
        """Read the gateway keys and the bot file (relative paths are relative to ``root``, the project root)."""
        _reject_typos(context)
        ctx = _Context(context)
        bots_file = context.get("gatewayBotsFile", DEFAULT_GATEWAY_BOTS_FILE)
        if not isinstance(bots_file, str) or not bots_file.strip() or Path(bots_file.strip()).is_absolute():
            # Relative: the file is staged into the function's asset, so IAM and the app read the same bots.
            raise _error(
                "gatewayBotsFile",
                "the path of the bot file, relative to the project",
                bots_file,
                DEFAULT_GATEWAY_BOTS_FILE,
            )
        account = context.get("gatewayWebAdapterLayerAccount")
        if account is not None and not re.fullmatch(r"\d{12}", str(account).strip()):
            raise _error(
                "gatewayWebAdapterLayerAccount",
                "the 12-digit account that publishes your copy of the Lambda Web Adapter layer (leave it out for "
                "the layer the Lambda Web Adapter project publishes)",
                account,
                "123456789012",
            )
        compute = ctx.choice("gatewayCompute", "lambda", GATEWAY_COMPUTES)
        stray = [key for key in FARGATE_KEYS if key in context and context[key] not in (None, "")]
        if compute == "lambda" and stray:
            raise ValueError(
                f"{', '.join(stray)} apply to gatewayCompute=fargate only, but gatewayCompute is lambda; "
                f"remove them from cdk.json or pass -c gatewayCompute=fargate"
            )
        return cls(
            bots=load_bots(_resolve(bots_file.strip(), root)),
            bots_file=bots_file.strip(),
            memory_mb=ctx.integer("gatewayMemoryMb", 1024, 128, 10240),
            web_adapter_layer_account=None if account is None else str(account).strip(),
            web_adapter_layer_version=ctx.integer("gatewayWebAdapterLayerVersion", WEB_ADAPTER_LAYER_VERSION, 1, None),
            throttling_rate_limit=ctx.integer("gatewayThrottlingRateLimit", 50, 1, 10_000),
            throttling_burst_limit=ctx.integer("gatewayThrottlingBurstLimit", 100, 1, 5_000),
            media_expiration_days=ctx.integer("gatewayMediaExpirationDays", 7, 1, None),
            bedrock_regions=ctx.strings("bedrockRegions", DEFAULT_BEDROCK_REGIONS, _check_region),
            model_invocation_logging=ctx.boolean("modelInvocationLogging", False),
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
    if region is not None and (not isinstance(region, str) or not _REGION.match(region)):
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
        not isinstance(count_tokens, str) or _check_model_id(count_tokens) or is_inference_profile(count_tokens)
    ):
        raise fail("count_tokens_model_id", "a foundation-model id (CountTokens takes no profile ids)")
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
    return _check_model_id(item)


def parse_model_arn(arn: str) -> tuple[str, str, str | None, str] | None:
    """``(kind, name, region or None, account or "")`` of a Bedrock model ARN; None for an id."""
    match = _MODEL_ARN.match(arn)
    if not match:
        return None
    return match["kind"], match["name"], match["region"] or None, match["account"] or ""


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class ObservabilityConfig:
    """Dashboards and alarms (both stacks): alarm thresholds, and where alarms send mail.

    ``alarm_email`` None (``alarmEmail`` unset or ""): the alarms exist, but no SNS topic or subscription is made.
    Percentages are over 5-minute periods.
    """

    alarm_email: str | None = None
    alarm_record_failure_percent: int = 10  # failed records / (succeeded + failed), per 5 minutes
    alarm_job_failure_percent: int = 10  # jobs ending Failed/Expired/Stopped / jobs ending, per 5 minutes
    alarm_gateway_5xx_percent: int = 5  # 5XXError / Count of the gateway API
    alarm_gateway_4xx_percent: int = 25  # 4XXError / Count: throttled (429) and rejected requests

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> ObservabilityConfig:
        _reject_typos(context)
        ctx = _Context(context)
        o = cls()
        email = context.get("alarmEmail", "")
        if email is None:
            email = ""
        if not isinstance(email, str) or (email.strip() and not _EMAIL.match(email.strip())):
            raise _error("alarmEmail", 'an email address, or "" for no alarm mail', email, "ops@example.com")
        return cls(
            alarm_email=email.strip() or None,
            alarm_record_failure_percent=ctx.integer(
                "alarmRecordFailurePercent", o.alarm_record_failure_percent, 1, 100
            ),
            alarm_job_failure_percent=ctx.integer("alarmJobFailurePercent", o.alarm_job_failure_percent, 1, 100),
            alarm_gateway_5xx_percent=ctx.integer("alarmGateway5xxPercent", o.alarm_gateway_5xx_percent, 1, 100),
            alarm_gateway_4xx_percent=ctx.integer("alarmGateway4xxPercent", o.alarm_gateway_4xx_percent, 1, 100),
        )


def late_job_hours(job_timeout_hours: int) -> int:
    """How long one job can hold a run: its own timeout, then Poll's ``DEADLINE_MARGIN`` past the service's deadline
    before it stops the job, then an hour for the stop and the output. The state machine's timeout is at least this,
    and by default twice it (a planned job and then a resubmission job, each running to its deadline)."""
    return job_timeout_hours + int(DEADLINE_MARGIN.total_seconds() // 3600) + 1


@dataclass(frozen=True)
class AppConfig:
    batch: BatchConfig
    functions: FunctionConfig
    storage: StorageConfig
    security: SecurityConfig = field(default_factory=SecurityConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)

    @classmethod
    def from_app(cls, app: _HasNode) -> AppConfig:
        """Read and validate the app's context (cdk.json and ``-c``); raises ValueError naming key, value and fix."""
        return cls.from_context(app.node.get_all_context())

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> AppConfig:
        """Same as ``from_app`` for a plain mapping of context keys (tests, the local runtime)."""
        _reject_typos(context)
        ctx = _Context(context)
        b, f, s = BatchConfig(), FunctionConfig(), StorageConfig()  # the defaults
        job_timeout = ctx.integer("jobTimeoutHours", b.job_timeout_hours, 24, 168)
        batch = BatchConfig(
            max_concurrent_jobs=ctx.integer("maxConcurrentJobs", b.max_concurrent_jobs, 1, 1000),
            poll_interval_seconds=ctx.integer("pollIntervalSeconds", b.poll_interval_seconds, 1, 3600),
            job_timeout_hours=job_timeout,
            execution_timeout_hours=ctx.integer(
                "executionTimeoutHours",
                2 * late_job_hours(job_timeout),
                late_job_hours(job_timeout),
                MAX_EXECUTION_TIMEOUT_HOURS,
                why=(
                    f" (at least jobTimeoutHours={job_timeout} + {late_job_hours(job_timeout) - job_timeout} h: the "
                    "time Poll waits past a job's deadline before it stops it, and an hour for the stop; at most one "
                    "year)"
                ),
            ),
            max_records_per_job=ctx.integer("maxRecordsPerJob", b.max_records_per_job, 100, 50_000),
            allowed_model_ids=ctx.strings("allowedModelIds", b.allowed_model_ids, _check_batch_model_id),
            bedrock_regions=ctx.strings("bedrockRegions", b.bedrock_regions, _check_region),
            prices=_prices(context.get("prices", {})),
        )
        functions = FunctionConfig(
            architecture=ctx.choice("lambdaArchitecture", f.architecture, ARCHITECTURES),
            control_plane_memory_mb=ctx.integer("controlPlaneMemoryMb", f.control_plane_memory_mb, 128, 10240),
            data_plane_memory_mb=ctx.integer("dataPlaneMemoryMb", f.data_plane_memory_mb, 128, 10240),
            data_plane_ephemeral_storage_mb=ctx.integer(
                "dataPlaneEphemeralStorageMb", f.data_plane_ephemeral_storage_mb, 512, 10240
            ),
            log_retention_days=ctx.log_retention("logRetentionDays", f.log_retention_days),
        )
        storage = StorageConfig(
            run_data_expiration_days=ctx.integer("runDataExpirationDays", s.run_data_expiration_days, 1, None),
            auto_delete_objects=ctx.boolean("autoDeleteObjects", s.auto_delete_objects),
        )
        return cls(
            batch=batch,
            functions=functions,
            storage=storage,
            security=SecurityConfig.from_context(context),
            observability=ObservabilityConfig.from_context(context),
        )


# The context keys this module reads, i.e. the ones `cdk.json` and `-c` may set.
KNOWN_KEYS = (
    "maxConcurrentJobs",
    "pollIntervalSeconds",
    "jobTimeoutHours",
    "executionTimeoutHours",
    "maxRecordsPerJob",
    "allowedModelIds",
    "bedrockRegions",
    "lambdaArchitecture",
    "controlPlaneMemoryMb",
    "dataPlaneMemoryMb",
    "dataPlaneEphemeralStorageMb",
    "logRetentionDays",
    "runDataExpirationDays",
    "autoDeleteObjects",
    "kmsKey",
    "tags",
    "batchVpc",
    "prices",
)
# The keys GatewayConfig reads (it also reads bedrockRegions).
GATEWAY_KEYS = (
    "gatewayBotsFile",
    "gatewayMemoryMb",
    "gatewayWebAdapterLayerAccount",
    "gatewayWebAdapterLayerVersion",
    "gatewayThrottlingRateLimit",
    "gatewayThrottlingBurstLimit",
    "gatewayMediaExpirationDays",
    "modelInvocationLogging",
    "gatewayCompute",
    *FARGATE_KEYS,
    *TEAM_KEYS_KEYS,
)
# The keys ObservabilityConfig reads (dashboards and alarms of both stacks).
OBSERVABILITY_KEYS = (
    "alarmEmail",
    "alarmRecordFailurePercent",
    "alarmJobFailurePercent",
    "alarmGateway5xxPercent",
    "alarmGateway4xxPercent",
)


def is_inference_profile(model_id: str) -> bool:
    """System inference-profile ids carry a geography prefix: ``us.anthropic.claude-3-5-haiku-20241022-v1:0``."""
    return model_id.startswith(INFERENCE_PROFILE_PREFIXES)


def base_model_id(model_id: str) -> str:
    """The foundation model behind an inference-profile id (the id itself for a foundation model)."""
    for prefix in INFERENCE_PROFILE_PREFIXES:
        if model_id.startswith(prefix):
            return model_id.removeprefix(prefix)
    return model_id


class _Context:
    """Typed readers over the raw context; each names the key and the fix when a value does not fit."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self._raw = raw

    def integer(self, key: str, default: int, low: int, high: int | None, why: str = "") -> int:
        value = self._raw.get(key, default)
        need = (f"an integer between {low} and {high}" if high is not None else f"an integer >= {low}") + why
        number = _as_int(value)
        if number is None or number < low or (high is not None and number > high):
            raise _error(key, need, value, default)
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw.get(key, default)
        if isinstance(value, bool):
            return value
        parsed = _BOOLEANS.get(str(value).strip().lower())
        if parsed is not None:
            return parsed
        raise _error(key, "true or false", value, str(default).lower())

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._raw.get(key, default)
        if value not in allowed:
            raise _error(key, "one of " + ", ".join(allowed), value, default)
        return str(value)

    def log_retention(self, key: str, default: int) -> int:
        value = self._raw.get(key, default)
        days = _as_int(value)
        if days not in LOG_RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS)
            raise _error(key, f"a CloudWatch Logs retention in days ({allowed})", value, default)
        return days

    def strings(self, key: str, default: tuple[str, ...], check: Callable[[str], str | None]) -> tuple[str, ...]:
        value = self._raw.get(key, default)
        example = ",".join(default)
        items = _as_string_list(value)
        if not items:
            raise _error(key, "a non-empty JSON list of strings (or a comma-separated string)", value, example)
        for item in items:
            problem = check(item)
            if problem:
                raise _error(key, f"a list whose items are {problem}; {item!r} is not", value, example)
        return tuple(dict.fromkeys(items))  # drop duplicates, keep order


def _prices(value: object) -> tuple[tuple[str, float, float], ...]:
    """cdk.json ``prices``: ``{"<model id>": {"input_per_1m": <USD>, "output_per_1m": <USD>}}`` (JSON text with -c)."""
    example = '{"amazon.nova-lite-v1:0": {"input_per_1m": 0.06, "output_per_1m": 0.24}}'
    raw = value
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            raise _error("prices", "a JSON object of model id -> prices", value, example) from None
    if not isinstance(raw, dict):
        raise _error("prices", "a JSON object of model id -> prices", value, example)
    prices = []
    for model_id, entry in raw.items():
        problem = _check_model_id(str(model_id))
        if problem:
            raise _error("prices", f"an object whose keys are {problem}; {model_id!r} is not", value, example)
        numbers = [entry.get(name) if isinstance(entry, dict) else None for name in ("input_per_1m", "output_per_1m")]
        if not all(isinstance(n, int | float) and not isinstance(n, bool) and n >= 0 for n in numbers):
            need = 'an object whose values are {"input_per_1m": <USD >= 0>, "output_per_1m": <USD >= 0>}'
            raise _error("prices", f"{need}; {model_id!r} has {entry!r}", value, example)
        prices.append((str(model_id), float(numbers[0]), float(numbers[1])))  # type: ignore[arg-type]
    return tuple(prices)


def _check_model_id(item: str) -> str | None:
    if item.lower().startswith("arn:") or not _MODEL_ID.match(item):
        return "Bedrock model or inference-profile ids (not ARNs) such as 'anthropic.claude-3-haiku-20240307-v1:0'"
    return None


def _check_batch_model_id(item: str) -> str | None:
    """allowedModelIds: model or inference-profile ids of models that run batch inference jobs."""
    problem = _check_model_id(item)
    if problem is not None:
        return problem
    no_batch = batch_model_problem(item)
    return None if no_batch is None else f"ids of models that support batch inference (remove it: {no_batch})"


def _check_region(item: str) -> str | None:
    return None if _REGION.match(item) else "AWS region names such as 'us-east-1'"


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def _as_string_list(value: object) -> list[str] | None:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    return None


def _error(key: str, need: str, value: object, example: object) -> ValueError:
    return ValueError(f"{key} must be {need}, got {value!r}; set it in cdk.json or pass -c {key}={example}")


def _normalise(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _reject_typos(context: Mapping[str, object]) -> None:
    """Fail on a key that is not ours but nearly is (``maxConcurentJobs``), which would otherwise be ignored."""
    known = KNOWN_KEYS + GATEWAY_KEYS + OBSERVABILITY_KEYS
    ours = {_normalise(key): key for key in known}
    for key in context:
        if key in known or ":" in key or "/" in key:  # CDK's own keys: feature flags, aws:cdk:..., lookups
            continue
        match = difflib.get_close_matches(_normalise(key), ours, n=1, cutoff=0.85)
        if match:
            raise ValueError(
                f"unknown context key {key!r}; did you mean {ours[match[0]]!r}? "
                f"Rename it in cdk.json or pass -c {ours[match[0]]}=..."
            )
