"""Issue 12 items 1 and 2, as a client runs them: the official openai SDK over HTTP against the gateway that
``python -m cli gateway`` serves (uvicorn + emulator + moto S3) - embeddings as floats, as base64 the SDK decodes
itself, with dimensions, in lists longer than a model takes per call; images as presigned URLs and as base64 JSON."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator

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
