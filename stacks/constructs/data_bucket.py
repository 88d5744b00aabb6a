"""The data bucket (``inputs/`` uploads, ``runs/<run>/...`` run files) and prefix-scoped grants on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import StorageConfig
from stacks.constructs.nag import acknowledge

RUNS_PREFIX = "runs/"
INPUTS_PREFIX = "inputs/"
ACCESS_LOG_EXPIRATION = cdk.Duration.days(90)
MULTIPART_UPLOAD_ABORT = cdk.Duration.days(1)


class DataBucket(Construct):
    """Creates the bucket (and its access-log bucket), or wraps ``existing_bucket``; ``bucket`` is the one to use.

    Exposes ``bucket`` (the created or the existing bucket) and ``access_logs_bucket`` (None for an existing bucket).
    ``settings`` (defaults: ``StorageConfig()``), ``bucket_props`` and ``encryption_key`` configure a new bucket:
    ``bucket_props`` override its secure defaults. ``bucket_props`` and ``encryption_key`` cannot be combined with
    ``existing_bucket`` (a ValueError says which to drop); ``settings`` is ignored for it. An existing bucket is used as
    it is: its encryption (SSE-S3, or grant the KMS key yourself), public access, TLS policy, access logs and the
    expiry of ``runs/`` are its owner's to set.

    With ``encryption_key`` (``kmsKey``) a new data bucket uses SSE-KMS with that key and an S3 Bucket Key (fewer KMS
    calls); its access-log bucket stays SSE-S3, the only encryption server access log delivery supports.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: StorageConfig | None = None,
        existing_bucket: s3.IBucket | None = None,
        bucket_props: Mapping[str, Any] | None = None,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, id_)
        if existing_bucket is not None:
            new_bucket_options = [
                name
                for name, value in (("bucket_props", bucket_props), ("encryption_key", encryption_key))
                if value is not None
            ]
            if new_bucket_options:
                options = " and ".join(new_bucket_options)
                raise ValueError(
                    f"DataBucket takes existing_bucket or {options}, not both ({options} configure a new bucket; an "
                    "existing bucket keeps its own encryption and settings): drop one of them"
                )
        self.access_logs_bucket: s3.Bucket | None = None
        if existing_bucket is not None:
            self.bucket: s3.IBucket = existing_bucket
            return

        settings = settings or StorageConfig()
        removal = cdk.RemovalPolicy.DESTROY if settings.auto_delete_objects else cdk.RemovalPolicy.RETAIN
        secure: dict[str, Any] = {
            "encryption": s3.BucketEncryption.S3_MANAGED,  # server access log delivery needs SSE-S3
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "removal_policy": removal,
            "auto_delete_objects": settings.auto_delete_objects,
        }
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            **secure,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs", expiration=ACCESS_LOG_EXPIRATION)],
        )
        acknowledge(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This is the server access log bucket of the data bucket; logging it into itself would loop.",
        )
        data_props: dict[str, Any] = {
            **secure,
            **(
                {"encryption": s3.BucketEncryption.KMS, "encryption_key": encryption_key, "bucket_key_enabled": True}
                if encryption_key is not None
                else {}
            ),
            "server_access_logs_bucket": self.access_logs_bucket,
            "server_access_logs_prefix": "data-bucket/",
            "lifecycle_rules": [
                s3.LifecycleRule(
                    id="ExpireRunData",
                    prefix=RUNS_PREFIX,
                    expiration=cdk.Duration.days(settings.run_data_expiration_days),
                ),
                s3.LifecycleRule(
                    id="AbortIncompleteMultipartUploads", abort_incomplete_multipart_upload_after=MULTIPART_UPLOAD_ABORT
                ),
            ],
        }
        self.bucket = s3.Bucket(self, "Bucket", **{**data_props, **(bucket_props or {})})


def grant_objects(
    bucket: s3.IBucket,
    grantee: iam.IGrantable,
    *,
    read: Sequence[str] = (),
    write: Sequence[str] = (),
    list_prefixes: Sequence[str] = (),
) -> None:
    """Grant exact S3 actions on key patterns (``runs/*/jobs/*``), instead of ``grant_read``'s ``s3:GetObject*`` etc.

    ``read`` gives s3:GetObject, ``write`` s3:PutObject and s3:AbortMultipartUpload (streamed multipart writes), and
    ``list_prefixes`` s3:ListBucket limited by an ``s3:prefix`` condition (``runs/`` lists everything below it).
    """
    principal = grantee.grant_principal
    if read:
        principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(key) for key in read])
        )
    if write:
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(key) for key in write],
            )
        )
    if list_prefixes:
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in list_prefixes]}},
            )
        )
