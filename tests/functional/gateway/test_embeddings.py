"""``POST /v1/embeddings`` in-process, driven by the openai SDK against the emulator: every shipped embedding bot,
float and base64 vectors, dimensions, long lists split and reassembled in order, errors naming the field, per-bot
metrics and the shared governance (keys, unknown models, wrong endpoints); and the Nova Multimodal Embeddings bots an
operator adds with their own price (the test bot file ``tests/data/gateway_bots_nova_embeddings.json``)."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings, load_bots
from local.emulator.families import FAMILIES, embed, invoke_nova_mme
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, TEAM_KEY, openai_client
from tests.functional.gateway.test_guardrails import emf_records, logged
from tests.functional.gateway.test_metrics import value

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
EMBEDDING_BOTS = ("titan-embed-v2", "titan-embed-multimodal", "cohere-embed-english", "cohere-embed-multilingual-query")


def texts(count: int) -> list[str]:
    return [f"text number {index} about lighthouses" for index in range(count)]


@pytest.mark.parametrize("bot", EMBEDDING_BOTS)
async def test_each_embedding_bot_answers_one_vector_per_text_in_order(sdk: openai.AsyncOpenAI, bot: str) -> None:
    # GIVEN three texts WHEN the SDK asks an embedding bot for float vectors
    answer = await sdk.embeddings.create(model=bot, input=texts(3), encoding_format="float")
    # THEN there is one unit-norm 1,024-dimension vector per text, indexed in order, with the emulator's vector of
    # that very text (a misplaced vector would be another text's)
    assert answer.object == "list" and answer.model == bot
    assert [item.index for item in answer.data] == [0, 1, 2]
    for item, text in zip(answer.data, texts(3), strict=True):
        assert item.object == "embedding" and len(item.embedding) == 1024
        assert item.embedding == pytest.approx(embed(text, 1024))
    # AND the usage counts the input tokens: Titan's own count (the emulator counts words), else, without Bedrock's
    # token-count header (the emulator sends none for embedding models), one token per 4 characters
    counted = sum(len(text.split()) for text in texts(3)) if bot.startswith("titan") else None
    estimated = sum(math.ceil(len(text) / 4) for text in texts(3))
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == (counted or estimated)


async def test_a_list_over_the_models_batch_limit_is_split_and_reassembled_in_order(
    sdk: openai.AsyncOpenAI, emulator: BedrockEmulator
) -> None:
    # GIVEN 200 texts, over Cohere Embed v3's 96 texts per call
    many = texts(200)
    # WHEN the SDK embeds them with a Cohere bot
    answer = await sdk.embeddings.create(model="cohere-embed-english", input=many, encoding_format="float")
    # THEN Bedrock was called three times (96 + 96 + 8) and every vector is its own text's, in order
    assert emulator.calls().get("InvokeModel") == 3
    assert [item.index for item in answer.data] == list(range(200))
    assert all(item.embedding == pytest.approx(embed(text, 1024)) for item, text in zip(answer.data, many, strict=True))


async def test_titan_embeds_one_text_per_call(sdk: openai.AsyncOpenAI, emulator: BedrockEmulator) -> None:
    # GIVEN five texts WHEN Titan Text Embeddings V2 embeds them
    answer = await sdk.embeddings.create(model="titan-embed-v2", input=texts(5), encoding_format="float")
    # THEN each text was one InvokeModel call, and the answer keeps their order
    assert emulator.calls().get("InvokeModel") == 5
    for item, text in zip(answer.data, texts(5), strict=True):
        assert item.embedding == pytest.approx(embed(text, 1024))


@pytest.mark.parametrize(("bot", "dimensions"), [("titan-embed-v2", 256), ("titan-embed-multimodal", 384)])
async def test_dimensions_reach_the_model(sdk: openai.AsyncOpenAI, bot: str, dimensions: int) -> None:
    # GIVEN a size the model takes WHEN it is asked for
    answer = await sdk.embeddings.create(model=bot, input="one text", dimensions=dimensions, encoding_format="float")
    # THEN the vector has that many values
    assert len(answer.data[0].embedding) == dimensions


async def test_base64_is_little_endian_float32_and_the_sdk_decodes_it(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a text WHEN it is asked for as base64
    raw = await sdk.embeddings.create(model="titan-embed-v2", input="one text", encoding_format="base64")
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    # THEN it decodes as little-endian float32 to the float answer
    data = base64.b64decode(encoded)
    values = struct.unpack(f"<{len(data) // 4}f", data)
    expected = embed("one text", 1024)
    assert list(values) == pytest.approx(expected, rel=1e-6)
    # AND the SDK's default (it asks for base64 and decodes it itself) gives the same vector
    decoded = await sdk.embeddings.create(model="titan-embed-v2", input="one text")
    assert decoded.data[0].embedding == pytest.approx(expected, rel=1e-6)


async def test_unsupported_dimensions_name_the_accepted_values(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a size Titan Text Embeddings V2 does not make WHEN it is asked for
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.embeddings.create(model="titan-embed-v2", input="x", dimensions=384)
    # THEN the 400 names the field and the accepted sizes, before any Bedrock call
    assert "'dimensions' = 384" in raised.value.message and "256, 512, 1024" in raised.value.message


async def test_dimensions_on_a_fixed_size_model_are_refused(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN Cohere Embed v3 (one output size) WHEN dimensions are asked for THEN the 400 says to remove them
    with pytest.raises(openai.BadRequestError, match="remove 'dimensions'"):
        await sdk.embeddings.create(model="cohere-embed-english", input="x", dimensions=256)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([[1, 2, 3]], "'input[0]' is not a string: token arrays are not supported"),
        ([1, 2, 3], "'input[0]' is not a string: token arrays are not supported"),
        ([], "'input' is empty"),
        (["fine", ""], "'input[1]' is an empty string"),
        (["x" * 2049], "'input[0]' has 2049 characters; Cohere Embed v3 takes at most 2048"),
    ],
)
async def test_bad_inputs_are_a_400_naming_the_field(
    client: httpx.AsyncClient, emulator: BedrockEmulator, given: Any, message: str
) -> None:
    # GIVEN an input the gateway cannot embed WHEN it is sent
    response = await client.post("/v1/embeddings", json={"model": "cohere-embed-english", "input": given}, headers=AUTH)
    # THEN it is a 400 naming the field, in OpenAI's error shape, and Bedrock was never called
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not emulator.calls().get("InvokeModel")


async def test_more_texts_than_the_bot_allows_are_refused(settings: GatewaySettings, emulator: BedrockEmulator) -> None:
    # GIVEN a bot that takes at most 2 texts per request
    bot = settings.bots["titan-embed-v2"]
    limited = bot.model_copy(update={"embedding": bot.embeddings.model_copy(update={"max_inputs": 2})})
    application = create_app(replace(settings, bots={**settings.bots, "titan-embed-v2": limited}))
    async with application.router.lifespan_context(application), openai_client(application, KEY) as sdk:
        # WHEN 3 are sent THEN the 400 names the limit
        with pytest.raises(openai.BadRequestError, match="embeds at most 2 per request"):
            await sdk.embeddings.create(model="titan-embed-v2", input=texts(3))
    assert not emulator.calls().get("InvokeModel")


async def test_chat_models_and_embedding_models_keep_to_their_routes(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a chat bot WHEN it is asked for embeddings THEN the 400 lists the embedding bots
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.embeddings.create(model="nova-lite", input="x")
    assert "is a text model" in raised.value.message and "titan-embed-v2" in raised.value.message
    # AND an embedding bot asked to chat says where it answers
    with pytest.raises(openai.BadRequestError, match="POST /v1/embeddings"):
        await sdk.chat.completions.create(model="titan-embed-v2", messages=[{"role": "user", "content": "hi"}])


async def test_unknown_models_and_bad_keys(app: FastAPI) -> None:
    # GIVEN the SDK with a wrong key WHEN it asks for embeddings THEN 401
    async with openai_client(app, "wrong-key") as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.embeddings.create(model="titan-embed-v2", input="x")
    # AND with the key of another team's bot it is refused on this one
    async with openai_client(app, TEAM_KEY) as team:
        with pytest.raises(openai.AuthenticationError):
            await team.embeddings.create(model="titan-embed-v2", input="x")
    # AND an unknown model is a 404
    async with openai_client(app, KEY) as sdk:
        with pytest.raises(openai.NotFoundError):
            await sdk.embeddings.create(model="no-such-embedder", input="x")


async def test_models_lists_the_embedding_bots(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN the shipped bots WHEN the model list is read
    models = {model.id: model for model in (await sdk.models.list()).data}
    # THEN every embedding bot is listed with its modality
    for bot in EMBEDDING_BOTS:
        assert (models[bot].model_extra or {})["modality"] == "embedding"


async def test_an_answer_leaves_the_bots_cost_and_token_metrics(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN Titan Text Embeddings V2 at its price per 1,000 tokens WHEN two texts are embedded
    response = await client.post(
        "/v1/embeddings", json={"model": "titan-embed-v2", "input": ["one two three", "four five"]}, headers=AUTH
    )
    assert response.status_code == 200
    # THEN one EMF record per request carries the tokens and the cost under the bot's dimension
    (record,) = emf_records(capfd.readouterr().out)
    assert record["bot"] == "titan-embed-v2"
    assert value(record, "InputTokens") == 5 == response.json()["usage"]["prompt_tokens"]
    assert math.isclose(value(record, "CostUSD"), 5 / 1000 * 0.00002)
    (usage,) = logged(caplog, "gateway usage")
    assert usage["bot"] == "titan-embed-v2" and usage["input_tokens"] == 5


async def test_a_failed_call_fails_the_whole_request(client: httpx.AsyncClient, emulator: BedrockEmulator) -> None:
    # GIVEN Bedrock throttling every call WHEN a list is embedded
    emulator.state.faults["runtime_throttle"] = 100
    response = await client.post("/v1/embeddings", json={"model": "titan-embed-v2", "input": texts(4)}, headers=AUTH)
    # THEN the client gets the throttling error (retryable), never a partial list
    assert response.status_code == 429
    assert response.headers.get("x-should-retry") == "true"
    assert "data" not in json.loads(response.text)


# ---------------------------------------------------------------- Amazon Nova Multimodal Embeddings (operator-priced)

NOVA_BOTS_FILE = Path(__file__).resolve().parents[2] / "data" / "gateway_bots_nova_embeddings.json"
NOVA_PRICE = 0.5  # the test bot file's price per 1,000 tokens (none is published: an operator supplies it)


def estimated_tokens(texts: list[str]) -> int:
    """Nova's answer has no token count and the emulator sends no count header: one token per 4 characters."""
    return sum(math.ceil(len(text) / 4) for text in texts)


@pytest.fixture
async def nova(emulator: BedrockEmulator, settings: GatewaySettings) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK on an app serving the shipped bots plus the test bot file's Nova Multimodal Embeddings bots."""
    application = create_app(replace(settings, bots={**settings.bots, **load_bots(NOVA_BOTS_FILE)}))
    async with application.router.lifespan_context(application), openai_client(application, KEY) as sdk:
        yield sdk


async def test_nova_embeds_a_string_and_a_list_of_three_in_order(
    nova: openai.AsyncOpenAI, emulator: BedrockEmulator
) -> None:
    # GIVEN the operator's Nova Multimodal Embeddings bot WHEN the SDK embeds one string
    one = await nova.embeddings.create(model="nova-embed", input="a lighthouse", encoding_format="float")
    # THEN one 3,072-value vector (the model's default size) is the emulator's vector of that text
    assert [item.index for item in one.data] == [0] and one.model == "nova-embed"
    assert one.data[0].embedding == pytest.approx(embed("a lighthouse", 3072))
    # WHEN it embeds a list of three
    answer = await nova.embeddings.create(model="nova-embed", input=texts(3), encoding_format="float")
    # THEN each text was its own InvokeModel call (1 + 3 in all), and each vector is its own text's, at its index
    assert emulator.calls().get("InvokeModel") == 4
    assert [item.index for item in answer.data] == [0, 1, 2]
    for item, text in zip(answer.data, texts(3), strict=True):
        assert item.embedding == pytest.approx(embed(text, 3072))
    # AND the usage is the estimate (the answer carries no count)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == estimated_tokens(texts(3))


async def test_nova_dimensions_and_base64(nova: openai.AsyncOpenAI) -> None:
    # GIVEN a text WHEN 256 dimensions are asked for THEN the vector has 256 values, the model's at that size
    small = await nova.embeddings.create(model="nova-embed", input="one text", dimensions=256, encoding_format="float")
    assert len(small.data[0].embedding) == 256
    assert small.data[0].embedding == pytest.approx(embed("one text", 256))
    # WHEN it is asked for as base64 THEN it decodes as little-endian float32 to the same vector
    raw = await nova.embeddings.create(model="nova-embed", input="one text", dimensions=256, encoding_format="base64")
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    data = base64.b64decode(encoded)
    assert list(struct.unpack(f"<{len(data) // 4}f", data)) == pytest.approx(embed("one text", 256), rel=1e-6)


async def test_nova_refuses_other_dimensions_naming_its_four(
    nova: openai.AsyncOpenAI, emulator: BedrockEmulator
) -> None:
    # GIVEN a size Nova Multimodal Embeddings does not make WHEN it is asked for
    with pytest.raises(openai.BadRequestError) as raised:
        await nova.embeddings.create(model="nova-embed", input="x", dimensions=512)
    # THEN the 400 names the field and the four sizes, before any Bedrock call
    assert raised.value.code == "invalid_dimensions"
    assert "'dimensions' = 512" in raised.value.message and "256, 384, 1024, 3072" in raised.value.message
    assert not emulator.calls().get("InvokeModel")


async def test_each_nova_bot_sends_its_own_embedding_purpose(
    nova: openai.AsyncOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the emulator's Nova family, watched for the bodies it is sent
    sent: list[dict[str, Any]] = []

    def watched(model_id: str, model_input: dict[str, Any]) -> Any:
        sent.append(model_input)
        return invoke_nova_mme(model_id, model_input)

    monkeypatch.setitem(FAMILIES, "nova-multimodal-embed", watched)
    # WHEN the index bot and the query bot of the same model embed a text each
    await nova.embeddings.create(model="nova-embed", input="a document", encoding_format="float")
    await nova.embeddings.create(model="nova-embed-query", input="a query", dimensions=1024, encoding_format="float")
    # THEN each call carried its bot's purpose, the size asked for (3,072 when none) and the text, never truncated
    assert [body["singleEmbeddingParams"] for body in sent] == [
        {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 3072,
            "text": {"truncationMode": "NONE", "value": "a document"},
        },
        {
            "embeddingPurpose": "GENERIC_RETRIEVAL",
            "embeddingDimension": 1024,
            "text": {"truncationMode": "NONE", "value": "a query"},
        },
    ]


async def test_a_text_over_novas_context_is_bedrocks_400_not_cut(nova: openai.AsyncOpenAI) -> None:
    # GIVEN a text over the model's 8K tokens (the emulator counts words) WHEN it is embedded
    with pytest.raises(openai.BadRequestError) as raised:
        await nova.embeddings.create(model="nova-embed", input="word " * 8193)
    # THEN Bedrock's ValidationException reaches the client as a 400 naming the text, rather than a vector of a part
    assert "ValidationException" in raised.value.message and "truncationMode" in raised.value.message


async def test_a_nova_answer_leaves_the_bots_cost_and_token_metrics(
    emulator: BedrockEmulator,
    settings: GatewaySettings,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN the operator's Nova bot at its own price per 1,000 tokens
    application = create_app(replace(settings, bots={**settings.bots, **load_bots(NOVA_BOTS_FILE)}))
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test") as client,
    ):
        capfd.readouterr()  # the start's output
        # WHEN two texts are embedded
        given = ["one two three", "four five"]
        response = await client.post("/v1/embeddings", json={"model": "nova-embed", "input": given}, headers=AUTH)
    assert response.status_code == 200
    # THEN one EMF record carries the estimated tokens and their cost at the bot's price, as for the other bots
    (record,) = emf_records(capfd.readouterr().out)
    tokens = estimated_tokens(given)
    assert record["bot"] == "nova-embed" and value(record, "InputTokens") == tokens == 7
    assert response.json()["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert math.isclose(value(record, "CostUSD"), tokens / 1000 * NOVA_PRICE)
    (usage,) = logged(caplog, "gateway usage")
    assert usage["bot"] == "nova-embed" and usage["input_tokens"] == tokens


async def test_models_lists_the_nova_bots_as_embedding_models(nova: openai.AsyncOpenAI) -> None:
    # GIVEN the test bot file's Nova bots WHEN the model list is read THEN they are listed with their modality
    models = {model.id: model for model in (await nova.models.list()).data}
    for bot in ("nova-embed", "nova-embed-query"):
        assert (models[bot].model_extra or {})["modality"] == "embedding"
