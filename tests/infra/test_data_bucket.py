"""The data bucket: encrypted, private, TLS only, access-logged, run files expire; or the team's own bucket."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from stacks.config import StorageConfig
from stacks.constructs.data_bucket import DataBucket
from tests.infra.conftest import Synthesized


def test_bucket_is_encrypted_private_and_logged(synthesized: Synthesized, template: Template) -> None:
    # GIVEN the synthesized stack
    bucket = synthesized.stack.data_bucket
    # WHEN reading the data bucket
    props = synthesized.resource(bucket.bucket)["Properties"]
    # THEN it is SSE-S3 encrypted, blocks all public access, logs to the access-log bucket and has no physical name
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket.access_logs_bucket is not None
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": synthesized.logical_id(bucket.access_logs_bucket)
    }
    assert "BucketName" not in props


def test_bucket_policy_denies_plain_http(synthesized: Synthesized, template: Template) -> None:
    # GIVEN the data bucket
    bucket_id = synthesized.logical_id(synthesized.stack.data_bucket.bucket)
    # WHEN / THEN its bucket policy denies every request that is not sent over TLS
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Principal": {"AWS": "*"},
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_run_files_expire_and_bucket_is_retained(synthesized: Synthesized) -> None:
    # GIVEN the default configuration (runDataExpirationDays 30, autoDeleteObjects false)
    resource = synthesized.resource(synthesized.stack.data_bucket.bucket)
    # WHEN reading its lifecycle rules and deletion policy
    rules = {rule["Id"]: rule for rule in resource["Properties"]["LifecycleConfiguration"]["Rules"]}
    # THEN runs/ expires after 30 days, incomplete uploads are aborted, and the bucket survives stack deletion
    assert rules["ExpireRunData"]["Prefix"] == "runs/"
    assert rules["ExpireRunData"]["ExpirationInDays"] == 30
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert resource["DeletionPolicy"] == "Retain"


def test_existing_bucket_is_used_as_is() -> None:
    # GIVEN a team's own bucket
    stack = cdk.Stack(cdk.App(), "Existing")
    existing = s3.Bucket.from_bucket_name(stack, "Theirs", "their-bucket")
    # WHEN the construct wraps it
    data = DataBucket(stack, "DataBucket", settings=StorageConfig(), existing_bucket=existing)
    # THEN that bucket is used and no bucket is created
    assert data.bucket is existing
    assert data.access_logs_bucket is None
    Template.from_stack(stack).resource_count_is("AWS::S3::Bucket", 0)


def test_existing_bucket_and_bucket_props_are_rejected_together() -> None:
    # GIVEN both an existing bucket and props for a new one
    stack = cdk.Stack(cdk.App(), "Both")
    existing = s3.Bucket.from_bucket_name(stack, "Theirs", "their-bucket")
    # WHEN / THEN the construct refuses the ambiguity
    with pytest.raises(ValueError, match="existing_bucket or bucket_props, not both"):
        DataBucket(stack, "DataBucket", settings=StorageConfig(), existing_bucket=existing, bucket_props={})
