"""The gateway as an ECS Fargate service behind an Application Load Balancer (``gatewayCompute=fargate``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stacks.config.common import Context, error, json_object, setting
from stacks.config.security import MAX_JOB_SUBNETS, SUBNET_ID, VPC_ID

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

CERTIFICATE_ARN = setting(
    "fargate",
    "gatewayCertificateArn",
    None,
    "required with `fargate`: the ACM certificate of the load balancer's HTTPS listener; the stack deploys to its "
    "region",
    kind="`arn:aws:acm:<region>:<account>:certificate/<id>`",
    default_text="absent",
)
TASK_CPU = setting(
    "fargate",
    "gatewayTaskCpu",
    1024,
    "one task's CPU units (1024 = 1 vCPU); uvicorn runs one worker per vCPU",
    kind="Fargate CPU units: " + ", ".join(map(str, FARGATE_TASK_SIZES)),
    low=256,
    high=16384,
)
TASK_MEMORY = setting(
    "fargate",
    "gatewayTaskMemoryMb",
    2048,
    "one task's memory: a size Fargate allows with gatewayTaskCpu",
    kind="MiB, a size Fargate allows with the CPU",
    default_text="`2048` (or the least the CPU allows, if more)",
    low=512,
)
MIN_TASKS = setting(
    "fargate", "gatewayMinTasks", 2, "autoscaling's lower bound (the service starts there)", low=1, high=1000
)
MAX_TASKS = setting(
    "fargate",
    "gatewayMaxTasks",
    10,
    "autoscaling's upper bound",
    kind="integer gatewayMinTasks-1000",
    default_text="`10` (or gatewayMinTasks, if more)",
    low=1,
    high=1000,
)
REQUESTS_PER_TASK = setting(
    "fargate",
    "gatewayRequestsPerTask",
    600,
    "the ALB requests per task per minute the service scales to keep (beside 60% CPU)",
    low=1,
    high=1_000_000,
)
STREAM_INTERVAL = setting(
    "fargate",
    "gatewayStreamIntervalMs",
    50,
    "read pacing: after an answer's first token, a task reads each answer's Bedrock connection at most this often "
    "and forwards what arrived meanwhile at once (fewer reads and writes a token, so more streams a vCPU); the "
    "first token is never held, nor any text longer than this; `0` reads every event as it arrives",
    kind="milliseconds 0-1000",
    low=0,
    high=1000,
)
GATEWAY_VPC = setting(
    "fargate",
    "gatewayVpc",
    None,
    '`{"vpcId": ..., "publicSubnetIds": [2+ subnets for the load balancer], "privateSubnetIds": [subnets with a NAT '
    "route for the tasks]}` of an existing VPC",
    kind="JSON object",
    default_text="absent: a new VPC",
)
# The keys that only the Fargate service reads: set with gatewayCompute=lambda they would be ignored, so they fail.
FARGATE_KEYS = (
    CERTIFICATE_ARN.key,
    TASK_CPU.key,
    TASK_MEMORY.key,
    MIN_TASKS.key,
    MAX_TASKS.key,
    REQUESTS_PER_TASK.key,
    STREAM_INTERVAL.key,
    GATEWAY_VPC.key,
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
    CPU and on ``requests_per_task`` (ALB requests per task per minute). ``stream_interval_ms``: the task's read
    pacing (``GATEWAY_STREAM_INTERVAL_MS``, ``lambdas.gateway.pacing``). ``vpc``: None creates a VPC (public subnets
    for the load balancer, private subnets with NAT gateways for the tasks)."""

    certificate_arn: str
    task_cpu: int = TASK_CPU.default
    task_memory_mb: int = TASK_MEMORY.default
    min_tasks: int = MIN_TASKS.default
    max_tasks: int = MAX_TASKS.default
    requests_per_task: int = REQUESTS_PER_TASK.default
    stream_interval_ms: int = STREAM_INTERVAL.default
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
        ctx = Context(context)
        certificate = ctx.raw(CERTIFICATE_ARN)
        if not isinstance(certificate, str) or not _CERTIFICATE_ARN.match(certificate.strip()):
            raise error(
                CERTIFICATE_ARN.key,
                "the ARN of an ACM certificate for the load balancer's HTTPS listener, required with "
                "gatewayCompute=fargate (request or import one in ACM, in the stack's region)",
                certificate,
                "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
            )
        cpu = ctx.integer(TASK_CPU)
        if cpu not in FARGATE_TASK_SIZES:
            raise error(TASK_CPU.key, "Fargate CPU units: " + ", ".join(map(str, FARGATE_TASK_SIZES)), cpu, 1024)
        memory = ctx.integer(TASK_MEMORY, default=max(TASK_MEMORY.default, FARGATE_TASK_SIZES[cpu][0]))
        allowed = FARGATE_TASK_SIZES[cpu]
        if memory not in allowed:
            raise error(
                TASK_MEMORY.key,
                f"a memory size Fargate allows with gatewayTaskCpu={cpu}: {allowed[0]} to {allowed[-1]} MiB in steps "
                f"of {allowed[1] - allowed[0]}",
                memory,
                allowed[0],
            )
        min_tasks = ctx.integer(MIN_TASKS)
        max_tasks = ctx.integer(
            MAX_TASKS, default=max(MAX_TASKS.default, min_tasks), low=min_tasks, why=" (>= gatewayMinTasks)"
        )
        return cls(
            certificate_arn=certificate.strip(),
            task_cpu=cpu,
            task_memory_mb=memory,
            min_tasks=min_tasks,
            max_tasks=max_tasks,
            requests_per_task=ctx.integer(REQUESTS_PER_TASK),
            stream_interval_ms=ctx.integer(STREAM_INTERVAL),
            vpc=_gateway_vpc(ctx.raw(GATEWAY_VPC)),
        )


def _gateway_vpc(value: object) -> GatewayVpcConfig | None:
    example = '\'{"vpcId": "vpc-0abc...", "publicSubnetIds": ["subnet-..", "subnet-.."], "privateSubnetIds": [...]}\''
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "create")):
        return None
    value = json_object(value, "gatewayVpc", example)
    need = (
        '{"vpcId": "vpc-...", "publicSubnetIds": [2 or more "subnet-..." ids in different AZs, for the load balancer], '
        '"privateSubnetIds": [1 or more "subnet-..." ids with a NAT route, for the tasks]}, or absent (a new VPC)'
    )
    if not isinstance(value, dict) or set(value) != {"vpcId", "publicSubnetIds", "privateSubnetIds"}:
        raise error("gatewayVpc", need, value, example)
    vpc_id, public, private = value["vpcId"], value["publicSubnetIds"], value["privateSubnetIds"]

    def subnets(ids: object, least: int) -> bool:
        return (
            isinstance(ids, list)
            and least <= len(ids) <= MAX_JOB_SUBNETS
            and all(isinstance(s, str) and SUBNET_ID.match(s) for s in ids)
        )

    if not isinstance(vpc_id, str) or not VPC_ID.match(vpc_id) or not subnets(public, 2) or not subnets(private, 1):
        raise error("gatewayVpc", need, value, example)
    return GatewayVpcConfig(
        vpc_id=vpc_id,
        public_subnet_ids=tuple(dict.fromkeys(public)),
        private_subnet_ids=tuple(dict.fromkeys(private)),
    )
