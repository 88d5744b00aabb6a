"""Issue 12 items 1 and 2, as a client runs them: the official openai SDK over HTTP against the gateway that
``python -m cli gateway`` serves (uvicorn + emulator + moto S3) - embeddings as floats, as base64 the SDK decodes
itself, with dimensions, in lists longer than a model takes per call; images as presigned URLs and as base64 JSON; and
Nova Multimodal Embeddings from the bot file an operator writes with their own price."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest

from cli.gateway import RunningGateway, local_gateway

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with local_gateway(0, access_key="e2e-key-embeddings-0123456789abcd") as running:
        yield running


@pytest.fixture(scope="module")
def sdk(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0, timeout=60)


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_float_embeddings_with_dimensions_over_http(sdk: openai.OpenAI) -> None:
    # GIVEN the SDK over HTTP WHEN it asks Titan Text Embeddings V2 for 512-dimension float vectors of two texts
    answer = sdk.embeddings.create(
        model="titan-embed-v2", input=["a lighthouse", "a harbour"], dimensions=512, encoding_format="float"
    )
    # THEN two unit vectors of 512 values come back, in order, with their usage
    assert [item.index for item in answer.data] == [0, 1]
    assert all(len(item.embedding) == 512 and math.isclose(norm(item.embedding), 1.0) for item in answer.data)
    assert answer.data[0].embedding != answer.data[1].embedding
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 4 and answer.model == "titan-embed-v2"


def test_base64_embeddings_decode_with_the_sdk_over_http(sdk: openai.OpenAI) -> None:
    # GIVEN the float vector of a text
    text = "the sea at night"
    floats = sdk.embeddings.create(model="titan-embed-v2", input=text, encoding_format="float").data[0].embedding
    # WHEN the SDK asks without a format (it then asks for base64 and decodes it itself)
    decoded = sdk.embeddings.create(model="titan-embed-v2", input=text).data[0].embedding
    # THEN it decodes ours to the same vector (float32 precision)
    assert len(decoded) == len(floats) == 1024
    assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(decoded, floats, strict=True))
    # AND an explicit base64 answer is the little-endian float32 bytes of that vector, with dimensions applied
    raw = sdk.embeddings.create(model="titan-embed-v2", input=text, encoding_format="base64", dimensions=256)
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    values = struct.unpack("<256f", base64.b64decode(encoded))
    assert math.isclose(norm(list(values)), 1.0, rel_tol=1e-5)


def test_a_long_list_is_answered_whole_and_in_order_over_http(sdk: openai.OpenAI) -> None:
    # GIVEN 150 texts (over Cohere Embed v3's 96 per call), each embedded alone first
    texts = [f"passage {index} on tides" for index in range(150)]
    alone = {
        text: sdk.embeddings.create(model="cohere-embed-english", input=text, encoding_format="float").data[0]
        for text in texts[:3] + texts[-3:]
    }
    # WHEN all of them are embedded in one request
    answer = sdk.embeddings.create(model="cohere-embed-english", input=texts, encoding_format="float")
    # THEN every text has its vector, at its index
    assert [item.index for item in answer.data] == list(range(150))
    for index in (0, 1, 2, 147, 148, 149):
        assert answer.data[index].embedding == pytest.approx(alone[texts[index]].embedding)


def test_unsupported_dimensions_are_a_400_over_http(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="256, 384, 1024"):
        sdk.embeddings.create(model="titan-embed-multimodal", input="x", dimensions=512)


def test_images_as_urls_and_as_base64_over_http(sdk: openai.OpenAI) -> None:
    # GIVEN the SDK over HTTP WHEN Nova Canvas is asked for two images as URLs
    urls = sdk.images.generate(model="nova-canvas", prompt="a boat at dawn", n=2, size="1024x1024")
    # THEN both presigned URLs (the media bucket, as on the Poe route) serve PNGs
    assert urls.data is not None and len(urls.data) == 2
    assert all(image.url and httpx.get(image.url).content.startswith(PNG) for image in urls.data)
    # AND a Stability bot asked for base64 JSON at a 16:9 size answers the PNG itself
    inline = sdk.images.generate(
        model="stable-image-core", prompt="a boat at dawn", size="1792x1008", response_format="b64_json"
    )
    assert inline.data is not None and inline.data[0].b64_json
    assert base64.b64decode(inline.data[0].b64_json).startswith(PNG)


def test_an_unknown_size_names_the_accepted_ones_over_http(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="use one of 1024x1024"):
        sdk.images.generate(model="titan-image-v2", prompt="a boat", size="1536x1024")


# ---------------------------------------------------------------- Nova Multimodal Embeddings, with an operator's price

NOVA_BOTS_FILE = Path(__file__).resolve().parents[1] / "data" / "gateway_bots_nova_embeddings.json"


@pytest.fixture(scope="module")
def nova_sdk() -> Iterator[openai.OpenAI]:
    """The SDK over HTTP on a gateway started from the test bot file that adds the Nova Multimodal Embeddings bots (as
    an operator does, with their own price: none is published)."""
    with ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:  # the bot file is read once, at start: only the start sees it
            patch.setenv("GATEWAY_BOTS_FILE", str(NOVA_BOTS_FILE))
            running = stack.enter_context(local_gateway(0, access_key="e2e-key-nova-embeddings-0123456789ab"))
        yield openai.OpenAI(base_url=f"{running.url}/v1", api_key=running.access_key, max_retries=0, timeout=60)


def test_nova_embeddings_over_http(nova_sdk: openai.OpenAI) -> None:
    # GIVEN the SDK over HTTP WHEN it embeds a string THEN one unit vector of 3,072 values (the model's default)
    one = nova_sdk.embeddings.create(model="nova-embed", input="a lighthouse", encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 3072
    assert math.isclose(norm(one.data[0].embedding), 1.0)
    # WHEN it embeds a list of three, each text also embedded alone
    given = ["a lighthouse", "a harbour", "the sea at night"]
    alone = [nova_sdk.embeddings.create(model="nova-embed", input=text, encoding_format="float") for text in given]
    answer = nova_sdk.embeddings.create(model="nova-embed", input=given, encoding_format="float")
    # THEN the three vectors come back at their texts' indexes, each the one its text gets alone
    assert [item.index for item in answer.data] == [0, 1, 2]
    for item, single in zip(answer.data, alone, strict=True):
        assert item.embedding == pytest.approx(single.data[0].embedding)
    assert answer.data[0].embedding == pytest.approx(one.data[0].embedding)
    # AND the usage counts the three texts (estimated: the answer has no count), as the SDK types it
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == sum(-(-len(text) // 4) for text in given)


def test_nova_dimensions_and_base64_over_http(nova_sdk: openai.OpenAI) -> None:
    # GIVEN a text WHEN 256 float dimensions are asked for THEN a unit vector of 256 values comes back
    floats = nova_sdk.embeddings.create(model="nova-embed", input="the tide", dimensions=256, encoding_format="float")
    vector = floats.data[0].embedding
    assert len(vector) == 256 and math.isclose(norm(vector), 1.0)
    # AND as base64 it is the little-endian float32 bytes of that vector
    raw = nova_sdk.embeddings.create(model="nova-embed", input="the tide", dimensions=256, encoding_format="base64")
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    values = struct.unpack("<256f", base64.b64decode(encoded))
    assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(values, vector, strict=True))
    # AND the SDK's default (base64, decoded by the SDK itself) gives it too
    decoded = nova_sdk.embeddings.create(model="nova-embed", input="the tide", dimensions=256).data[0].embedding
    assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(decoded, vector, strict=True))


def test_nova_bad_dimensions_are_a_400_naming_the_four_over_http(nova_sdk: openai.OpenAI) -> None:
    # GIVEN a size the model does not make WHEN it is asked for THEN a 400 names the accepted sizes
    with pytest.raises(openai.BadRequestError, match="256, 384, 1024, 3072") as raised:
        nova_sdk.embeddings.create(model="nova-embed", input="x", dimensions=768)
    assert raised.value.code == "invalid_dimensions"
