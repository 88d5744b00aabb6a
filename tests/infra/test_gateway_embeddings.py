"""IAM of the shipped bot file: the gateway may invoke exactly the models its bots name, the embedding models of
``/v1/embeddings`` and the image models of ``/v1/images/generations`` included."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

from lambdas.gateway.config import load_bots as load_app_bots
from stacks.config import DEFAULT_GATEWAY_BOTS_FILE, PROJECT_ROOT, GatewayConfig, load_bots
from stacks.constructs.model_gateway import bot_model_arns
from tests.infra.conftest import flat

SHIPPED = Path(PROJECT_ROOT) / DEFAULT_GATEWAY_BOTS_FILE


@pytest.fixture(scope="module")
def granted() -> list[str]:
    stack = cdk.Stack(cdk.App(), "Probe", env=cdk.Environment(account="111122223333", region="us-east-1"))
    return [flat(stack.resolve(arn)) for arn in bot_model_arns(stack, GatewayConfig(bots=load_bots(SHIPPED)))]


def test_the_stack_reads_the_embedding_modality() -> None:
    # GIVEN the shipped bot file WHEN the stack reads it THEN its embedding bots keep their modality
    modalities = {bot.name: bot.modality for bot in load_bots(SHIPPED)}
    assert {name for name, modality in modalities.items() if modality == "embedding"} == {
        "titan-embed-v2",
        "titan-embed-multimodal",
        "cohere-embed-english",
        "cohere-embed-multilingual-query",
    }


def test_every_embedding_and_image_model_is_granted_in_its_region(granted: list[str]) -> None:
    # GIVEN the app's view of the shipped bots (the models the new routes call)
    bots = load_app_bots(SHIPPED)
    # WHEN the stack computes the models the gateway may invoke
    # THEN each embedding and image bot's foundation model is granted in the bot's region
    for bot in bots.values():
        if bot.modality in ("embedding", "image"):
            assert f"arn:<AWS::Partition>:bedrock:{bot.region}::foundation-model/{bot.model_id}" in granted


def test_nothing_is_granted_that_no_bot_names(granted: list[str]) -> None:
    # GIVEN every model id the shipped bot file names (models, CountTokens models, router targets)
    stack_bots = load_bots(SHIPPED)
    named = {bot.model_id for bot in stack_bots}
    named |= {bot.count_tokens_model_id for bot in stack_bots if bot.count_tokens_model_id}
    named |= {target for bot in stack_bots for target in bot.target_model_ids}
    bases = {model_id.split("/")[-1] for model_id in named}
    bases |= {base.split(".", 1)[1] for base in bases if base.split(".", 1)[0] in ("us", "global", "eu", "apac")}
    # WHEN the granted ARNs are read back to their model ids THEN each is one the file names (or a profile's model)
    for arn in granted:
        assert arn.split("/", 1)[-1] in bases, arn


def test_an_operators_nova_embeddings_bot_gets_its_model_granted() -> None:
    # GIVEN the bot file an operator writes for Nova Multimodal Embeddings (with their own price: none is published)
    nova_file = Path(PROJECT_ROOT) / "tests" / "data" / "gateway_bots_nova_embeddings.json"
    stack = cdk.Stack(cdk.App(), "Nova", env=cdk.Environment(account="111122223333", region="us-east-1"))
    # WHEN the stack computes the models the gateway may invoke
    granted = [flat(stack.resolve(arn)) for arn in bot_model_arns(stack, GatewayConfig(bots=load_bots(nova_file)))]
    # THEN the model is granted in the bots' region, and nothing else
    assert sorted(set(granted)) == [
        "arn:<AWS::Partition>:bedrock:us-east-1::foundation-model/amazon.nova-2-multimodal-embeddings-v1:0"
    ]
