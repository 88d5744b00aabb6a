"""The Lambda Web Adapter layer: the pinned release where it is published, a clear synth error where it is not."""

from __future__ import annotations

import re

import aws_cdk as cdk
import botocore.session
import pytest

from stacks.config import (
    WEB_ADAPTER_CHINA_ACCOUNTS,
    WEB_ADAPTER_COMMERCIAL_REGIONS,
    WEB_ADAPTER_LAYER_VERSION,
    GatewayConfig,
    web_adapter_publishers,
)
from stacks.constructs.model_gateway import web_adapter_layer_arn

PUBLISHED_CONFIG = GatewayConfig(bots=())


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
    found = web_adapter_layer_arn(_in(region), PUBLISHED_CONFIG, architecture)
    # THEN it is the publisher's layer of that partition, region and architecture, at the pinned version
    assert found == f"{arn}:{WEB_ADAPTER_LAYER_VERSION}"


@pytest.mark.parametrize(
    ("region", "architecture", "message"),
    [
        ("us-gov-west-1", "arm64", r"no LambdaAdapterLayerArm64 .* in us-gov-west-1 \(partition aws-us-gov\)"),
        ("us-gov-east-1", "x86_64", r"no LambdaAdapterLayerX86 .* in us-gov-east-1 \(partition aws-us-gov\)"),
        ("me-south-1", "arm64", r"in me-south-1 \(partition aws\)"),
        ("me-south-1", "x86_64", r"no LambdaAdapterLayerX86 .* in me-south-1 \(partition aws\)"),
        ("xx-future-1", "arm64", r"in xx-future-1 \(partition "),
        ("cn-north-1", "arm64", r"no LambdaAdapterLayerArm64 .* in cn-north-1: only x86_64 in China\. Set lambdaArch"),
    ],
)
def test_synth_stops_where_no_layer_is_published(region: str, architecture: str, message: str) -> None:
    # GIVEN a stack in a region or architecture the Lambda Web Adapter project publishes no layer for
    # WHEN resolving the layer / THEN synth stops, naming the layer, the region and how to go on
    with pytest.raises(ValueError, match=message) as caught:
        web_adapter_layer_arn(_in(region), PUBLISHED_CONFIG, architecture)
    assert "gatewayWebAdapterLayerAccount" in str(caught.value)


def test_your_own_copy_of_the_layer_is_used_wherever_you_published_it() -> None:
    # GIVEN a copy of the layer in an account of yours in GovCloud, at your version
    own = GatewayConfig(bots=(), web_adapter_layer_account="111122223333", web_adapter_layer_version=7)
    # WHEN / THEN that is the layer
    assert web_adapter_layer_arn(_in("us-gov-west-1"), own, "x86_64") == (
        "arn:aws-us-gov:lambda:us-gov-west-1:111122223333:layer:LambdaAdapterLayerX86:7"
    )


# What Lambda accepts as a layer version ARN: botocore's lambda model, shape LayerVersionArn
LAYER_VERSION_ARN = re.compile(
    botocore.session.get_session().get_service_model("lambda").shape_for("LayerVersionArn").metadata["pattern"]
)
PUBLISHED = [
    *((region, architecture) for region in WEB_ADAPTER_COMMERCIAL_REGIONS for architecture in ("arm64", "x86_64")),
    *((region, "x86_64") for region in WEB_ADAPTER_CHINA_ACCOUNTS),
]


@pytest.mark.parametrize(("region", "architecture"), PUBLISHED)
def test_every_region_synth_allows_gets_a_well_formed_layer_arn(region: str, architecture: str) -> None:
    # GIVEN a region and architecture the release pipeline publishes the layer in / WHEN resolving the layer
    arn = web_adapter_layer_arn(_in(region), PUBLISHED_CONFIG, architecture)
    # THEN it is an ARN Lambda accepts for a layer version
    assert LAYER_VERSION_ARN.fullmatch(arn), arn
    # AND of that region and its partition, the publishing account, the architecture's layer and the pinned version
    _, partition, _, arn_region, account, _, name, version = arn.split(":")
    assert arn_region == region and partition == ("aws-cn" if region.startswith("cn-") else "aws")
    assert account == web_adapter_publishers(architecture)[region]
    assert name == ("LambdaAdapterLayerArm64" if architecture == "arm64" else "LambdaAdapterLayerX86")
    assert int(version) == WEB_ADAPTER_LAYER_VERSION


def test_the_layer_is_published_in_the_release_pipelines_regions_only() -> None:
    # GIVEN the regions of the release pipeline (aws-lambda-web-adapter .github/workflows/prod.json, v1.0.0)
    # WHEN / THEN they are 33, with me-south-1 dropped, and China adds its two regions for x86_64 only
    assert len(WEB_ADAPTER_COMMERCIAL_REGIONS) == len(set(WEB_ADAPTER_COMMERCIAL_REGIONS)) == 33
    assert "me-south-1" not in WEB_ADAPTER_COMMERCIAL_REGIONS
    assert set(web_adapter_publishers("x86_64")) - set(web_adapter_publishers("arm64")) == set(
        WEB_ADAPTER_CHINA_ACCOUNTS
    )


def test_an_env_agnostic_stack_looks_the_account_up_by_region_at_deploy() -> None:
    # GIVEN a stack without a region (the project's own stacks are env-agnostic)
    stack = cdk.Stack(cdk.App(), "Gateway")
    # WHEN resolving the layer for both architectures (one mapping per stack)
    arm = stack.resolve(cdk.Fn.join("", [web_adapter_layer_arn(stack, PUBLISHED_CONFIG, "arm64")]))
    x86 = stack.resolve(cdk.Fn.join("", [web_adapter_layer_arn(stack, PUBLISHED_CONFIG, "x86_64")]))
    # THEN the account comes from a mapping keyed by the region deployed to, then the architecture
    assert {"Fn::FindInMap": ["WebAdapterLayerPublisher", {"Ref": "AWS::Region"}, "arm64"]} in arm["Fn::Join"][1]
    assert {"Fn::FindInMap": ["WebAdapterLayerPublisher", {"Ref": "AWS::Region"}, "x8664"]} in x86["Fn::Join"][1]
    # AND the mapping holds exactly the published layers: a deploy to any other region (me-south-1, a new region,
    # GovCloud) or of arm64 to China stops at the mapping before anything is created
    (mapping,) = cdk.assertions.Template.from_stack(stack).to_json()["Mappings"].values()
    for architecture, key in (("arm64", "arm64"), ("x86_64", "x8664")):
        assert {r: m[key] for r, m in mapping.items() if key in m} == web_adapter_publishers(architecture)
    assert "me-south-1" not in mapping and "us-gov-west-1" not in mapping
