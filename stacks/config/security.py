"""Optional hardening of both stacks: a KMS key, cost-attribution tags, and a VPC for the Bedrock batch jobs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stacks.config.common import error, json_object, setting

KMS_KEY_CREATE = "create"
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,128}$")
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+@-]{0,256}$")
MAX_TAGS = 40  # Bedrock jobs take up to 200 tags; CloudFormation stack tags 50, the stack adds a few of its own
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
MAX_JOB_SUBNETS = 16  # CreateModelInvocationJob vpcConfig.subnetIds
_OFF = ("", "none", "false")

KMS_KEY = setting(
    "security",
    "kmsKey",
    None,
    '`"create"` (a new customer-managed key per stack, rotation on) or an existing key ARN: encrypts the data bucket, '
    "every log group, the state machine and the Bedrock job output (`s3EncryptionKeyId`); the gateway stack encrypts "
    "its media bucket, log groups, secret and invocation log group with it. An existing key's policy must let "
    "`logs.<region>.amazonaws.com`, `delivery.logs.amazonaws.com` (`kms:Decrypt`, the state machine's log delivery) "
    "and `bedrock.amazonaws.com` use it, as the created key's does",
    kind='`"create"` or a KMS key ARN',
    default_text="absent (S3-managed and AWS-owned keys)",
)
TAGS = setting(
    "security",
    "tags",
    None,
    'cost-attribution tags, e.g. `{"project": ..., "owner": ..., "costCentre": ..., "environment": ...}`: on every '
    "resource of both stacks and on every Bedrock batch job",
    kind=f"JSON object of at most {MAX_TAGS} tag names to values",
    default_text="none",
)
BATCH_VPC = setting(
    "security",
    "batchVpc",
    None,
    '`{"create": true}` (isolated subnets in 2 AZs, S3 gateway endpoint, flow logs) or `{"vpcId": "vpc-...", '
    '"subnetIds": ["subnet-..."]}` (its route to S3 is yours): jobs get `vpcConfig` with these subnets and a security '
    "group of their own (HTTPS out only). A job in the VPC reads and writes only S3, so the S3 gateway endpoint is the "
    "one endpoint it needs; no interface endpoint (and no NAT) is created",
    kind="JSON object",
    default_text="absent (jobs outside a VPC)",
)


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
            kms_key=_kms_key(context.get(KMS_KEY.key)),
            tags=_tags(context.get(TAGS.key)),
            batch_vpc=_batch_vpc(context.get(BATCH_VPC.key)),
        )


def _batch_vpc(value: object) -> BatchVpcConfig | None:
    example = '\'{"create": true}\' or \'{"vpcId": "vpc-0abc...", "subnetIds": ["subnet-0abc..."]}\''
    if value is None or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    value = json_object(value, "batchVpc", example)
    need = (
        '{"create": true}, or {"vpcId": "vpc-...", "subnetIds": [1 to 16 "subnet-..." ids]} of an existing VPC, '
        "or absent (jobs outside a VPC)"
    )
    if not isinstance(value, dict) or not set(value) <= {"create", "vpcId", "subnetIds"}:
        raise error("batchVpc", need, value, example)
    create = value.get("create", False)
    if create is True and set(value) == {"create"}:
        return BatchVpcConfig(create=True)
    vpc_id, subnets = value.get("vpcId"), value.get("subnetIds")
    if (
        create is not False
        or not isinstance(vpc_id, str)
        or not VPC_ID.match(vpc_id)
        or not isinstance(subnets, list)
        or not 1 <= len(subnets) <= MAX_JOB_SUBNETS
        or not all(isinstance(s, str) and SUBNET_ID.match(s) for s in subnets)
    ):
        raise error("batchVpc", need, value, example)
    return BatchVpcConfig(vpc_id=vpc_id, subnet_ids=tuple(dict.fromkeys(subnets)))


def _kms_key(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    text = str(value).strip()
    if text.lower() == KMS_KEY_CREATE:
        return KMS_KEY_CREATE
    if _KMS_KEY_ARN.match(text):
        return text
    raise error(
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
        value = json_object(value, "tags", example)
    if not isinstance(value, dict) or len(value) > MAX_TAGS:
        raise error("tags", f"a JSON object of at most {MAX_TAGS} tag names to values", value, example)
    tags = []
    for key, tag_value in value.items():
        if not isinstance(key, str) or not _TAG_KEY.match(key) or key.lower().startswith("aws:"):
            raise error(
                "tags", f"an object whose names are 1-128 tag characters, not aws:; {key!r} is not", value, example
            )
        if not isinstance(tag_value, str) or not _TAG_VALUE.match(tag_value):
            raise error(
                "tags", f"an object whose values are strings of 0-256 tag characters; {key!r} is not", value, example
            )
        tags.append((key, tag_value))
    return tuple(tags)
