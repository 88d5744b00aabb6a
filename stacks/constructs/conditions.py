"""Conditions against the cross-service confused deputy (IAM user guide): a service may use a role or a key only when
it acts for this account (``aws:SourceAccount``) and for a resource of the expected kind (``aws:SourceArn``)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct


def for_this_account(scope: Construct, source_arn: str) -> dict[str, dict[str, str]]:
    """The condition block: this stack's account, and a source ARN matching ``source_arn`` (a pattern)."""
    return {
        "StringEquals": {"aws:SourceAccount": cdk.Stack.of(scope).account},
        "ArnLike": {"aws:SourceArn": source_arn},
    }


def any_resource_arn(scope: Construct, service: str, resource: str, arn_format: cdk.ArnFormat) -> str:
    """``arn:<partition>:<service>:<region>:<account>:<resource>/*`` (or ``:*``) of this stack."""
    return cdk.Stack.of(scope).format_arn(service=service, resource=resource, resource_name="*", arn_format=arn_format)


def service_for_this_account(scope: Construct, service: str, source_arn: str) -> iam.IPrincipal:
    """The service principal (``states.amazonaws.com``, ...) limited by ``for_this_account``."""
    return iam.ServicePrincipal(service).with_conditions(for_this_account(scope, source_arn))
