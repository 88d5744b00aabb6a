"""cdk-nag acknowledgements, one finding at a time, placed on the construct whose resource raises it."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one finding id such as ``AwsSolutions-S1`` or ``AwsSolutions-IAM5[Action::s3:*]`` on ``scope``."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))


def acknowledge_wildcard_resource(scope: IConstruct, resource: str, reason: str) -> None:
    """Acknowledge ``AwsSolutions-IAM5[Resource::...]`` for a resource ARN (tokens allowed) granted under ``scope``.

    The finding id embeds the ARN as cdk-nag flattens it (``<DataBucket1234.Arn>/runs/*``); it is rendered here from
    the same value the grant used, so a renamed construct cannot silently orphan the acknowledgement.
    """
    flat = _flatten(cdk.Stack.of(scope).resolve(resource))
    acknowledge(scope, f"AwsSolutions-IAM5[Resource::{flat}]", reason)


def _flatten(node: Any) -> str:
    """cdk-nag's ``flattenCfnReference``: Fn::Join joined, Fn::GetAtt as <Id.Attr>, Ref as <Id>, Fn::ImportValue as
    the export's name, others as JSON."""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict) and "Fn::Join" in node:
        delimiter, items = node["Fn::Join"]
        return delimiter.join(_flatten(item) for item in items)
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        resource, attribute = node["Fn::GetAtt"]
        return f"<{_flatten(resource)}.{_flatten(attribute)}>"
    if isinstance(node, dict) and "Fn::ImportValue" in node:  # an export of another stack, by its name
        return _flatten(node["Fn::ImportValue"])
    if isinstance(node, dict) and "Ref" in node:
        return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))  # JSON.stringify, as cdk-nag falls back to
