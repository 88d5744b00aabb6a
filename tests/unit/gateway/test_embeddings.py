"""Embedding bots without AWS: request mapping per family, splitting and reassembly order, base64 encoding, token
counts, and the bot-file checks of embedding bots."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from lambdas.gateway.config import BotConfigError, GatewaySettings, parse_bots
from lambdas.gateway.embeddings import (
    EMBED_CONCURRENCY,
    EmbeddingBot,
    EmbeddingRequest,
    batches,
    check_texts,
    embedding_settings,
    encode_base64,
    input_tokens,
)
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.translate import PriceBook
from lambdas.shared.model_families import (
    CohereEmbed,
    InferenceSettings,
    NovaMultimodalEmbeddings,
    embedding_adapter_of,
)

ROOT = Path(__file__).resolve().parents[3]
NOVA_MME = "amazon.nova-2-multimodal-embeddings-v1:0"
NOVA_BOTS_FILE = ROOT / "tests" / "data" / "gateway_bots_nova_embeddings.json"
OPERATOR_PRICE = {"input_per_1k": 0.5}  # an operator's price (none is published): a test value


def bot(**fields: Any) -> Any:
    return parse_bots({"bots": {"e": {"modality": "embedding", **fields}}})["e"]


def test_batches_split_at_the_limit_and_join_back_in_order() -> None:
    # GIVEN 200 texts and Cohere's 96 per call WHEN they are split
    texts = [f"t{index}" for index in range(200)]
    calls = batches(texts, 96)
    # THEN the calls hold 96, 96 and 8 texts, and joined they are the texts in their order
    assert [len(call) for call in calls] == [96, 96, 8]
    assert [text for call in calls for text in call] == texts
    # AND one text per call (Titan) keeps the order too
    assert batches(texts[:3], 1) == [["t0"], ["t1"], ["t2"]]


def test_each_family_maps_texts_to_its_own_request_body() -> None:
    # GIVEN the three embedding families WHEN a call's body is built
    titan = embedding_adapter_of("amazon.titan-embed-text-v2:0")
    multimodal = embedding_adapter_of("amazon.titan-embed-image-v1")
    cohere = embedding_adapter_of("cohere.embed-multilingual-v3")
    assert titan is not None and multimodal is not None and cohere is not None
    # THEN Titan V2 takes inputText and dimensions, G1 embeddingConfig, Cohere the texts and input_type
    assert titan.build_texts_input(["a"], InferenceSettings(dimensions=256)) == {"inputText": "a", "dimensions": 256}
    assert multimodal.build_texts_input(["a"], InferenceSettings(dimensions=384)) == {
        "inputText": "a",
        "embeddingConfig": {"outputEmbeddingLength": 384},
    }
    assert cohere.build_texts_input(["a", "b"], InferenceSettings(input_type="search_query")) == {
        "texts": ["a", "b"],
        "input_type": "search_query",
    }
    # AND a Titan call is one text, a Cohere call at most 96
    with pytest.raises(ValueError, match="1 text"):
        titan.build_texts_input(["a", "b"], InferenceSettings())
    with pytest.raises(ValueError, match="1 to 96"):
        cohere.build_texts_input(["a"] * 97, InferenceSettings())


def test_cohere_answers_are_read_in_order_whatever_their_shape() -> None:
    # GIVEN Cohere's two answer shapes (a list of vectors, or vectors by embedding type)
    adapter = CohereEmbed()
    plain = {"embeddings": [[1.0], [2.0]]}
    typed = {"embeddings": {"float": [[1.0], [2.0]]}}
    # WHEN they are read THEN the vectors keep the order of the texts
    assert adapter.parse_vectors(plain) == adapter.parse_vectors(typed) == [[1.0], [2.0]]


def test_base64_is_little_endian_float32() -> None:
    # GIVEN a vector WHEN it is encoded as OpenAI's base64
    encoded = encode_base64([1.0, -2.5, 0.25])
    # THEN it is the little-endian float32 bytes of the values
    assert base64.b64decode(encoded) == struct.pack("<3f", 1.0, -2.5, 0.25)
    assert base64.b64decode(encoded)[:4] == b"\x00\x00\x80\x3f"


def test_dimensions_are_checked_against_the_model() -> None:
    # GIVEN Titan Text Embeddings V2 and Cohere Embed v3 bots
    titan = bot(model_id="amazon.titan-embed-text-v2:0")
    cohere = bot(model_id="cohere.embed-english-v3", embedding={"input_type": "classification"})
    titan_adapter, cohere_adapter = embedding_adapter_of(titan.model_id), embedding_adapter_of(cohere.model_id)
    assert titan_adapter is not None and cohere_adapter is not None
    # WHEN sizes are asked for THEN Titan takes its sizes, names them when refusing one
    assert embedding_settings(titan, titan_adapter, 512).dimensions == 512
    with pytest.raises(GatewayError, match=r"use one of 256, 512, 1024") as raised:
        embedding_settings(titan, titan_adapter, 1536)
    assert raised.value.status == 400
    # AND Cohere (one fixed size) refuses any, while its bot's input_type reaches the request
    with pytest.raises(GatewayError, match="remove 'dimensions'"):
        embedding_settings(cohere, cohere_adapter, 1024)
    assert embedding_settings(cohere, cohere_adapter, None).input_type == "classification"


def test_texts_are_checked_before_any_call() -> None:
    # GIVEN a Cohere bot (2,048 characters per text) limited to 3 texts per request
    config = bot(model_id="cohere.embed-english-v3", embedding={"max_inputs": 3})
    adapter = embedding_adapter_of(config.model_id)
    assert adapter is not None
    check_texts(config, adapter, ["a", "b", "c"])
    # WHEN a request breaks a limit THEN the 400 names the input and the limit
    for texts, message in [
        ([], "'input' is empty"),
        (["a"] * 4, "embeds at most 3 per request"),
        (["a", ""], "'input[1]' is an empty string"),
        (["x" * 2049], "'input[0]' has 2049 characters"),
    ]:
        with pytest.raises(GatewayError, match=re.escape(message)):
            check_texts(config, adapter, texts)


def test_input_tokens_come_from_the_answer_then_the_header_then_an_estimate() -> None:
    # GIVEN Titan's count in the answer THEN it is used
    assert input_tokens({"inputTextTokenCount": 7}, {}, ["x"]) == 7
    # GIVEN no count in the answer but Bedrock's header THEN the header is used
    headers = {"ResponseMetadata": {"HTTPHeaders": {"x-amzn-bedrock-input-token-count": "12"}}}
    assert input_tokens({"embeddings": []}, headers, ["x"]) == 12
    # GIVEN neither THEN one token per 4 characters, rounded up per text
    assert input_tokens({}, {}, ["abcde", "abc"]) == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_id": "amazon.nova-micro-v1:0"}, "embedding bots need an embedding model"),
        (
            {"model_id": "amazon.titan-embed-text-v2:0", "embedding": {"input_type": "search_query"}},
            "Cohere Embed only",
        ),
        ({"model_id": "cohere.embed-english-v3", "embedding": {"input_type": "images"}}, "use one of search_document"),
        ({"model_id": "cohere.embed-english-v3", "embedding": {"max_inputs": 0}}, "max_inputs"),
    ],
)
def test_bad_embedding_bots_stop_the_start_naming_the_field(fields: dict[str, Any], message: str) -> None:
    # GIVEN an embedding bot the gateway cannot serve WHEN the bot file is read THEN the error names bot and fix
    with pytest.raises(BotConfigError, match=message) as raised:
        bot(**fields)
    assert "bot 'e'" in str(raised.value)


def test_embedding_options_belong_to_embedding_bots_only() -> None:
    # GIVEN a text bot with embedding options WHEN it is read THEN it is refused
    with pytest.raises(BotConfigError, match="embedding applies to embedding bots only"):
        parse_bots({"bots": {"t": {"model_id": "amazon.nova-micro-v1:0", "embedding": {"max_inputs": 2}}}})


class SlowFirstRuntime:
    """A bedrock-runtime stand-in for Titan: the earlier a text comes, the later its answer (each call yields to the
    loop more times), so answers complete in reverse order; it records the calls in flight."""

    def __init__(self, count: int) -> None:
        self.count, self.in_flight, self.peak = count, 0, 0
        self.finished: list[str] = []

    async def invoke_model(self, *, modelId: str, body: str, contentType: str, accept: str) -> dict[str, Any]:
        text = json.loads(body)["inputText"]
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        for _ in range(self.count - int(text.split()[1])):
            await asyncio.sleep(0)
        self.in_flight -= 1
        self.finished.append(text)
        answer = {"embedding": [float(text.split()[1])], "inputTextTokenCount": 2}
        return {"body": FakeBody(json.dumps(answer).encode())}


class FakeBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


class FakeClients:
    def __init__(self, runtime: SlowFirstRuntime) -> None:
        self.runtime = runtime

    async def bedrock_runtime(self, region: str) -> SlowFirstRuntime:
        return self.runtime


def test_answers_completing_out_of_order_are_reassembled_in_order_with_bounded_concurrency() -> None:
    # GIVEN 12 texts for a Titan bot whose answers complete in reverse order
    config = bot(model_id="amazon.titan-embed-text-v2:0")
    runtime = SlowFirstRuntime(12)
    embedder = EmbeddingBot(config, FakeClients(runtime), PriceBook([config]), GatewaySettings(bots={"e": config}))  # type: ignore[arg-type]
    texts = tuple(f"text {index}" for index in range(12))
    # WHEN they are embedded
    result = asyncio.run(embedder.embed(EmbeddingRequest(texts)))
    # THEN the calls did finish out of order, at most EMBED_CONCURRENCY at once
    assert runtime.finished != list(texts) and runtime.peak == EMBED_CONCURRENCY
    # AND each vector is at its text's index, and the tokens add up
    assert result.vectors == [[float(index)] for index in range(12)]
    assert result.input_tokens == 24


# ---------------------------------------------------------------- Amazon Nova Multimodal Embeddings


def test_nova_multimodal_embeddings_sends_one_text_with_its_purpose_and_dimension() -> None:
    # GIVEN the registry's adapter of Nova Multimodal Embeddings
    adapter = embedding_adapter_of(f"us.{NOVA_MME}")
    assert isinstance(adapter, NovaMultimodalEmbeddings) and adapter.texts_per_call == 1
    # WHEN a call's body is built without settings THEN it is the documented synchronous request: the text not cut
    # (truncationMode NONE), the generic index purpose and the model's default size, always sent
    assert adapter.build_texts_input(["a lighthouse"], InferenceSettings()) == {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 3072,
            "text": {"truncationMode": "NONE", "value": "a lighthouse"},
        },
    }
    # AND a bot's purpose and a request's dimensions take their places
    body = adapter.build_texts_input(["q"], InferenceSettings(dimensions=256, embedding_purpose="TEXT_RETRIEVAL"))
    assert body["singleEmbeddingParams"]["embeddingPurpose"] == "TEXT_RETRIEVAL"
    assert body["singleEmbeddingParams"]["embeddingDimension"] == 256
    # AND a call is one text; the answer's one vector is read from embeddings[0].embedding
    with pytest.raises(ValueError, match="1 text"):
        adapter.build_texts_input(["a", "b"], InferenceSettings())
    answer = {"embeddings": [{"embeddingType": "TEXT", "embedding": [0.5, -1]}]}
    assert adapter.parse_vectors(answer) == [[0.5, -1.0]]


def test_nova_dimensions_are_its_four_sizes() -> None:
    # GIVEN a Nova Multimodal Embeddings bot
    config = bot(model_id=NOVA_MME, prices=OPERATOR_PRICE)
    adapter = embedding_adapter_of(config.model_id)
    assert adapter is not None
    # WHEN each documented size is asked for THEN it passes
    assert [embedding_settings(config, adapter, size).dimensions for size in (256, 384, 1024, 3072)] == [
        256,
        384,
        1024,
        3072,
    ]
    # AND any other size is a 400 naming the four
    for size in (512, 1536, 4096):
        with pytest.raises(GatewayError, match=r"'dimensions' = \d+ is not accepted .*use one of 256, 384, 1024, 3072"):
            embedding_settings(config, adapter, size)


class RecordingRuntime:
    """A bedrock-runtime stand-in for Nova Multimodal Embeddings: records each body, answers the documented shape
    (no token count, no token-count header) with a vector naming the text's number."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def invoke_model(self, *, modelId: str, body: str, contentType: str, accept: str) -> dict[str, Any]:
        request = json.loads(body)
        self.bodies.append(request)
        number = float(request["singleEmbeddingParams"]["text"]["value"].split()[1])
        answer = {"embeddings": [{"embeddingType": "TEXT", "embedding": [number]}]}
        return {"body": FakeBody(json.dumps(answer).encode())}


def test_a_nova_bot_sends_its_embedding_purpose_with_each_text() -> None:
    # GIVEN a Nova bot configured for search queries
    config = bot(model_id=NOVA_MME, embedding={"embedding_purpose": "GENERIC_RETRIEVAL"}, prices=OPERATOR_PRICE)
    runtime = RecordingRuntime()
    embedder = EmbeddingBot(config, FakeClients(runtime), PriceBook([config]), GatewaySettings(bots={"e": config}))  # type: ignore[arg-type]
    texts = ("text 0 abc", "text 1 abcdef", "text 2 ab")
    # WHEN three texts are embedded at 384 dimensions
    result = asyncio.run(embedder.embed(EmbeddingRequest(texts, 384)))
    # THEN each text was its own call, with the bot's purpose and the size asked for
    assert sorted(body["singleEmbeddingParams"]["text"]["value"] for body in runtime.bodies) == list(texts)
    assert {body["singleEmbeddingParams"]["embeddingPurpose"] for body in runtime.bodies} == {"GENERIC_RETRIEVAL"}
    assert {body["singleEmbeddingParams"]["embeddingDimension"] for body in runtime.bodies} == {384}
    # AND the vectors are in the order of the texts; with no count in the answer, tokens are estimated (4 characters
    # a token, per text) and priced at the bot's own price
    assert result.vectors == [[0.0], [1.0], [2.0]]
    assert result.input_tokens == 3 + 4 + 3
    assert result.cost_usd == pytest.approx(10 / 1000 * 0.5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_id": NOVA_MME}, "bot 'e' calls 'amazon.nova-2-multimodal-embeddings-v1:0', whose price"),
        ({"model_id": f"eu.{NOVA_MME}", "prices": {"input_per_1k": 0}}, "set bots.e.prices.input_per_1k"),
        (
            {"model_id": NOVA_MME, "prices": OPERATOR_PRICE, "embedding": {"embedding_purpose": "SEARCH"}},
            "use one of GENERIC_INDEX, GENERIC_RETRIEVAL",
        ),
        (
            {"model_id": NOVA_MME, "prices": OPERATOR_PRICE, "embedding": {"input_type": "search_query"}},
            "embedding.input_type applies to Cohere Embed only",
        ),
        (
            {"model_id": "cohere.embed-english-v3", "embedding": {"embedding_purpose": "GENERIC_INDEX"}},
            "embedding.embedding_purpose applies to Nova Multimodal Embeddings only",
        ),
    ],
)
def test_bad_nova_bots_stop_the_start_naming_the_bot_the_model_and_the_fix(
    fields: dict[str, Any], message: str
) -> None:
    # GIVEN a Nova Multimodal Embeddings bot without its own price, or with an option it does not take
    # WHEN the bot file is read THEN the start stops, naming the bot, what is wrong and the fix
    with pytest.raises(BotConfigError, match=re.escape(message)) as raised:
        bot(**fields)
    assert "bot 'e'" in str(raised.value)


def test_a_nova_bot_without_its_price_names_the_pricing_page_and_the_region() -> None:
    # GIVEN a Nova bot in eu-west-1 without prices WHEN read THEN the fix says which price to look up, where
    with pytest.raises(BotConfigError) as raised:
        bot(model_id=NOVA_MME, region="eu-west-1")
    assert "Amazon Bedrock pricing page lists for the model in eu-west-1" in str(raised.value)
    assert "not in lambdas/shared/prices.json" in str(raised.value)


def test_the_documented_nova_bot_is_the_tested_one() -> None:
    # GIVEN the bot entry the docs tell operators to add, and the tests' bot file
    page = (ROOT / "docs" / "gateway" / "embeddings-images.md").read_text()
    block = page.split('```json\n"nova-embed": ', 1)[1].split("```", 1)[0]
    fixture = json.loads(NOVA_BOTS_FILE.read_text())["bots"]["nova-embed"]
    # WHEN the documented entry gets the test's price in place of the placeholder
    documented = json.loads(
        block.replace("<USD per 1,000 input tokens>", json.dumps(fixture["prices"]["input_per_1k"]))
    )
    # THEN it is the entry the tests serve, and it loads (with the price) but not without it
    assert documented == fixture
    assert (
        parse_bots({"bots": {"nova-embed": documented}})["nova-embed"].embeddings.embedding_purpose == "GENERIC_INDEX"
    )
    with pytest.raises(BotConfigError, match="nova-embed"):
        parse_bots({"bots": {"nova-embed": {**documented, "prices": {}}}})
