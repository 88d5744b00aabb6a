"""What every Lambda function and bucket of both stacks shares: architecture, memory, log retention, run-data expiry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stacks.config.common import ARCHITECTURES, Context, setting

ARCHITECTURE = setting(
    "functions",
    "lambdaArchitecture",
    "arm64",
    "the processor architecture of every Lambda function",
    choices=ARCHITECTURES,
)
CONTROL_PLANE_MEMORY = setting(
    "functions", "controlPlaneMemoryMb", 256, "Lambda memory of Submit and Poll", low=128, high=10240
)
DATA_PLANE_MEMORY = setting(
    "functions",
    "dataPlaneMemoryMb",
    3008,
    "Lambda memory of Preprocess, Postprocess, Plan resubmission and Finalize",
    low=128,
    high=10240,
)
DATA_PLANE_STORAGE = setting(
    "functions",
    "dataPlaneEphemeralStorageMb",
    10240,
    "`/tmp` of the data-plane functions (preprocess keeps 8 bytes of line offsets per row there; a CSV or JSONL input "
    "whose greedy jobs fall back to two passes, its records.parquet too)",
    low=512,
    high=10240,
)
LOG_RETENTION = setting(
    "functions",
    "logRetentionDays",
    30,
    "CloudWatch Logs retention of every log group of both stacks",
    kind="a CloudWatch Logs retention in days (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)",
)
RUN_DATA_EXPIRATION = setting(
    "functions", "runDataExpirationDays", 30, "lifecycle expiry of the `runs/` objects of the data bucket", low=1
)
AUTO_DELETE_OBJECTS = setting(
    "functions",
    "autoDeleteObjects",
    False,
    "empty and delete the buckets on `cdk destroy` (otherwise they are kept, with their data)",
)


@dataclass(frozen=True)
class FunctionConfig:
    """Settings every Lambda function shares, plus the sizes of the control-plane and data-plane functions."""

    architecture: str = ARCHITECTURE.default
    control_plane_memory_mb: int = CONTROL_PLANE_MEMORY.default
    data_plane_memory_mb: int = DATA_PLANE_MEMORY.default
    data_plane_ephemeral_storage_mb: int = DATA_PLANE_STORAGE.default
    log_retention_days: int = LOG_RETENTION.default

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> FunctionConfig:
        ctx = Context(context)
        return cls(
            architecture=ctx.choice(ARCHITECTURE),
            control_plane_memory_mb=ctx.integer(CONTROL_PLANE_MEMORY),
            data_plane_memory_mb=ctx.integer(DATA_PLANE_MEMORY),
            data_plane_ephemeral_storage_mb=ctx.integer(DATA_PLANE_STORAGE),
            log_retention_days=ctx.log_retention(LOG_RETENTION),
        )


@dataclass(frozen=True)
class StorageConfig:
    """The buckets: how long run files live and whether `cdk destroy` empties and deletes them."""

    run_data_expiration_days: int = RUN_DATA_EXPIRATION.default
    auto_delete_objects: bool = AUTO_DELETE_OBJECTS.default

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> StorageConfig:
        ctx = Context(context)
        return cls(
            run_data_expiration_days=ctx.integer(RUN_DATA_EXPIRATION),
            auto_delete_objects=ctx.boolean(AUTO_DELETE_OBJECTS),
        )
