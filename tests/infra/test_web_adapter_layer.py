"""The Lambda Web Adapter layer: the pinned release where it is published, a clear synth error where it is not."""

from __future__ import annotations

import aws_cdk as cdk
import pytest

from stacks.config import WEB_ADAPTER_LAYER_VERSION, GatewayConfig
from stacks.constructs.model_gateway import web_adapter_layer_arn

PUBLISHED = GatewayConfig(bots=())


def _in(region: str) -> cdk.Stack:
    return cdk.Stack(cdk.App(), "Gateway", env=cdk.Environment(account="111122223333", region=region))


@pytest.mark.parametrize(
    ("region", "architecture", "arn"),
    [
        ("us-east-1", "arm64", "arn:aws:lambda:us-east-1:753240598075:layer:LambdaAdapterLayerArm64"),
        ("eu-west-1", "x86_64", "arn:aws:lambda:eu-west-1:753240598075:layer:LambdaAdapterLayerX86"),
        ("cn-north-1", "x86_64", "arn:aws-cn:lambda:cn-north-1:041581134020:layer:LambdaAdapterLayerX86"),
        ("cn-northwest-1", "x86_64", "arn:aws-cn:lambda:cn-northwest-1:069767869989:layer:LambdaAdapterLayerX86"),
    ],
)
def test_a_stack_in_a_region_gets_the_layer_published_there(region: str, architecture: str, arn: str) -> None:
    # GIVEN a stack whose region is known at synth / WHEN resolving the layer
    found = web_adapter_layer_arn(_in(region), PUBLISHED, architecture)
    # THEN it is the publisher's layer of that partition, region and architecture, at the pinned version
    assert found == f"{arn}:{WEB_ADAPTER_LAYER_VERSION}"


@pytest.mark.parametrize(
    ("region", "architecture", "message"),
    [
        ("us-gov-west-1", "arm64", r"no LambdaAdapterLayerArm64 .* in us-gov-west-1 \(partition aws-us-gov\)"),
        ("us-gov-east-1", "x86_64", r"no LambdaAdapterLayerX86 .* in us-gov-east-1 \(partition aws-us-gov\)"),
        ("me-south-1", "arm64", r"in me-south-1 \(partition aws\)"),
        ("cn-north-1", "arm64", r"no LambdaAdapterLayerArm64 .* in cn-north-1: only x86_64 in China\. Set lambdaArch"),
    ],
)
def test_synth_stops_where_no_layer_is_published(region: str, architecture: str, message: str) -> None:
    # GIVEN a stack in a region or architecture the Lambda Web Adapter project publishes no layer for
    # WHEN resolving the layer / THEN synth stops, naming the layer, the region and how to go on
    with pytest.raises(ValueError, match=message) as caught:
        web_adapter_layer_arn(_in(region), PUBLISHED, architecture)
    assert "gatewayWebAdapterLayerAccount" in str(caught.value)


def test_your_own_copy_of_the_layer_is_used_wherever_you_published_it() -> None:
    # GIVEN a copy of the layer in an account of yours in GovCloud, at your version
    own = GatewayConfig(bots=(), web_adapter_layer_account="111122223333", web_adapter_layer_version=7)
    # WHEN / THEN that is the layer
    assert web_adapter_layer_arn(_in("us-gov-west-1"), own, "x86_64") == (
        "arn:aws-us-gov:lambda:us-gov-west-1:111122223333:layer:LambdaAdapterLayerX86:7"
    )


def test_an_env_agnostic_stack_looks_the_account_up_by_partition_at_deploy() -> None:
    # GIVEN a stack without a region (the project's own stacks are env-agnostic)
    stack = cdk.Stack(cdk.App(), "Gateway")
    # WHEN resolving the layer twice (one mapping per stack)
    arn = web_adapter_layer_arn(stack, PUBLISHED, "arm64")
    web_adapter_layer_arn(stack, PUBLISHED, "x86_64")
    # THEN the ARN takes the account from a mapping with the commercial partition alone, so a deploy to any other
    # partition fails before anything is created
    template = stack.resolve(cdk.Fn.join("", [arn]))
    assert {"Fn::FindInMap": ["WebAdapterLayerPublisher", {"Ref": "AWS::Partition"}, "account"]} in template[
        "Fn::Join"
    ][1]
    mappings = cdk.assertions.Template.from_stack(stack).to_json()["Mappings"]
    assert mappings == {"WebAdapterLayerPublisher": {"aws": {"account": "753240598075"}}}
