"""The Bedrock emulator's runtime (``bedrock-runtime``), through real boto3 clients over HTTP, with moto S3.

Converse and ConverseStream (echo, usage, eventstream frames, reasoning, stop sequences, max tokens, prompt caching,
prompt routers), CountTokens, InvokeModel on image models (real PNGs, content filters), Nova Reel async invocations
(an MP4 in S3) and the runtime faults. The emulator serves ``bedrock`` and ``bedrock-runtime`` on one endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import zlib
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EventStreamError

from local.emulator import BedrockEmulator, EmulatorState, ManualClock
from local.emulator.faults import RUNTIME_EXCEPTIONS, parse_faults
from local.emulator.protocol import service_model
from local.emulator.runtime import RUNTIME_ERROR_MESSAGES
from tests.functional.conftest import BUCKET
from tests.functional.emulator.conftest import REGION, error_code, user

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET_37 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA_LITE = "us.amazon.nova-lite-v1:0"
ROUTER = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1"
PROMPT = "Tell me a short story about a lighthouse keeper"
FILTERED_PROMPT = "an nsfw picture of a cat"  # "nsfw" is the emulator's default blocked word
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- helpers


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"text": text}]}


def error_message(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Message"])


def http_status(error: pytest.ExceptionInfo[ClientError]) -> int:
    return int(error.value.response["ResponseMetadata"]["HTTPStatusCode"])


def stream_events(runtime: BaseClient, **request: Any) -> list[dict[str, Any]]:
    return list(runtime.converse_stream(**request)["stream"])


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)


def invoke_json(runtime: BaseClient, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = runtime.invoke_model(modelId=model_id, body=json.dumps(body), contentType="application/json")
    return dict(json.loads(answer["body"].read()))


def png_header(data: bytes) -> tuple[int, int]:
    """Check a PNG chunk by chunk (CRCs, IHDR, pixel data size); return its (width, height)."""
    assert data[:8] == PNG_SIGNATURE
    position, chunks = 8, dict[bytes, bytes]()
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, payload = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + payload
        position += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 2) and b"IEND" in chunks
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    return width, height


def mp4_boxes(data: bytes) -> dict[bytes, bytes]:
    """Top-level ISO BMFF boxes by type; their sizes must tile the file exactly."""
    boxes, position = dict[bytes, bytes](), 0
    while position < len(data):
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        assert size >= 8
        boxes[kind] = data[position + 8 : position + size]
        position += size
    assert position == len(data)
    return boxes


# ---------------------------------------------------------------- Converse


def test_converse_echoes_the_last_user_message_with_usage(runtime: BaseClient, emulator: BedrockEmulator) -> None:
    # GIVEN a conversation whose last user turn is PROMPT
    messages = [user("Hi"), assistant("Hello! How can I help?"), user(PROMPT)]
    # WHEN a plain bedrock-runtime client calls Converse
    answer = runtime.converse(modelId=HAIKU, messages=messages, system=[{"text": "Be brief."}])
    # THEN the answer echoes PROMPT and usage counts the words in and out
    assert answer["output"]["message"] == {"role": "assistant", "content": [{"text": PROMPT}]}
    assert answer["stopReason"] == "end_turn"
    prompt_words = 8 + len(PROMPT.split())  # "Hi", "Hello! How can I help?", "Be brief." and PROMPT
    assert answer["usage"] == {
        "inputTokens": prompt_words,
        "outputTokens": len(PROMPT.split()),
        "totalTokens": prompt_words + len(PROMPT.split()),
    }
    assert answer["metrics"]["latencyMs"] >= 1 and "trace" not in answer
    assert emulator.calls() == {"Converse": 1}


@pytest.mark.parametrize(
    ("messages", "extra", "message"),
    [
        ([assistant("hi"), user("x")], {}, "A conversation must start with a user message."),
        ([user("a"), user("b")], {}, "A conversation must alternate between user and assistant roles."),
        (
            [user("a"), {"role": "assistant", "content": []}],
            {},
            "The content field in the Message object at messages.1",
        ),
        ([user("  ")], {}, "The text field in the ContentBlock object at messages.0.content.0 is blank."),
        ([user("a")], {"inferenceConfig": {"temperature": 1.5}}, "at 'inferenceConfig.temperature' failed to satisfy"),
        ([user("a")], {"inferenceConfig": {"topP": 1.5}}, "at 'inferenceConfig.topP' failed to satisfy"),
        ([user("a")], {"modelId": "acme.unknown-model-v1:0"}, "The provided model identifier is invalid."),
        ([user("a")], {"modelId": "amazon.titan-embed-text-v2:0"}, "doesn't support the model that you provided"),
    ],
)
def test_converse_rejects_requests_the_service_rejects(
    runtime: BaseClient, messages: list[dict[str, Any]], extra: dict[str, Any], message: str
) -> None:
    # GIVEN a request the real service refuses (roles, empty content, ranges, model id)
    request = {"modelId": HAIKU, "messages": messages, **extra}
    # WHEN it is sent to Converse and to ConverseStream
    for call in (runtime.converse, runtime.converse_stream):
        with pytest.raises(ClientError) as error:
            call(**request)
        # THEN both answer a 400 ValidationException in the service's words
        assert error_code(error) == "ValidationException" and http_status(error) == 400
        assert message in error_message(error)


def test_converse_stops_at_a_stop_sequence_and_at_max_tokens(runtime: BaseClient) -> None:
    # GIVEN a prompt containing "keeper" and a prompt longer than maxTokens words
    # WHEN Converse answers with the stop sequence "keeper", and with maxTokens 3
    stopped = runtime.converse(
        modelId=HAIKU,
        messages=[user(PROMPT)],
        inferenceConfig={"stopSequences": ["keeper"]},
        additionalModelResponseFieldPaths=["/stop_sequence"],
    )
    truncated = runtime.converse(modelId=HAIKU, messages=[user(PROMPT)], inferenceConfig={"maxTokens": 3})
    # THEN the first stops just before the stop sequence, the second after three words
    assert stopped["output"]["message"]["content"] == [{"text": "Tell me a short story about a lighthouse "}]
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["additionalModelResponseFields"] == {"stop_sequence": "keeper"}
    assert truncated["output"]["message"]["content"] == [{"text": "Tell me a"}]
    assert (truncated["stopReason"], truncated["usage"]["outputTokens"]) == ("max_tokens", 3)


def test_converse_stream_stops_like_converse(runtime: BaseClient) -> None:
    # GIVEN maxTokens 4 WHEN the answer streams
    events = stream_events(runtime, modelId=HAIKU, messages=[user(PROMPT)], inferenceConfig={"maxTokens": 4})
    # THEN the streamed text is the first four words and messageStop says max_tokens
    assert streamed_text(events) == "Tell me a short"
    assert events[-2] == {"messageStop": {"stopReason": "max_tokens"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 4


# ---------------------------------------------------------------- ConverseStream


def test_converse_stream_sends_the_real_event_sequence(runtime: BaseClient) -> None:
    # GIVEN a prompt of several words
    # WHEN ConverseStream answers it
    events = stream_events(runtime, modelId=HAIKU, messages=[user(PROMPT)])
    # THEN messageStart comes first, one text delta per word, then the stops, and metadata (with usage) last
    kinds = [next(iter(event)) for event in events]
    words = len(PROMPT.split())
    assert kinds == ["messageStart", *["contentBlockDelta"] * words, "contentBlockStop", "messageStop", "metadata"]
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert streamed_text(events) == PROMPT
    assert {e["contentBlockDelta"]["contentBlockIndex"] for e in events if "contentBlockDelta" in e} == {0}
    assert events[-3] == {"contentBlockStop": {"contentBlockIndex": 0}}
    metadata = events[-1]["metadata"]
    assert metadata["usage"] == {"inputTokens": words, "outputTokens": words, "totalTokens": 2 * words}
    assert metadata["metrics"]["latencyMs"] >= 1


def test_converse_stream_delivers_each_delta_before_the_next_is_produced(
    runtime: BaseClient, emulator: BedrockEmulator
) -> None:
    # GIVEN the emulator may produce a text delta only after the client has received the previous one
    log: list[str] = []
    allowed = threading.Semaphore(0)

    def gate(event_type: str) -> None:
        if event_type == "contentBlockDelta":
            log.append("produced" if allowed.acquire(timeout=5) else "timed out")

    emulator.runtime.before_stream_event = gate
    # WHEN the client reads the stream, releasing the emulator after each delta it receives
    allowed.release()
    for event in runtime.converse_stream(modelId=HAIKU, messages=[user("one two three four")])["stream"]:
        if "contentBlockDelta" in event:
            log.append("received")
            allowed.release()
    # THEN deltas arrived one by one, as they were produced (a buffered answer would have deadlocked the gate)
    assert log == ["produced", "received"] * 4


def _without_latency(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with metadata's latencyMs (the stream's own duration) left out."""
    return [{**e, "metadata": {**e["metadata"], "metrics": {}}} if "metadata" in e else e for e in events]


def test_a_paced_stream_carries_the_same_events_from_one_thread_for_all_streams(
    runtime: BaseClient, emulator: BedrockEmulator
) -> None:
    # GIVEN an unpaced stream's events, then text frames paced (as the gateway benchmark runs the emulator), and a
    # hook noting the thread that produces each frame
    request = {"modelId": HAIKU, "messages": [user(PROMPT)]}
    unpaced = stream_events(runtime, **request)
    threads: list[str] = []
    emulator.runtime.before_stream_event = lambda _event: threads.append(threading.current_thread().name)
    emulator.runtime.stream_delay_seconds = 0.001
    # WHEN two paced streams run at once from two threads, then a third on a connection the first two used
    results: list[list[dict[str, Any]]] = []
    readers = [threading.Thread(target=lambda: results.append(stream_events(runtime, **request))) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    results.append(stream_events(runtime, **request))
    # THEN each paced stream has the unpaced one's events (latency apart), and one thread produced every frame
    assert [_without_latency(events) for events in results] == [_without_latency(unpaced)] * 3
    assert set(threads) == {"bedrock-emulator-pacer"} and len(threads) == 3 * len(unpaced)


def test_a_paced_stream_parses_in_aiobotocore_and_ends_with_its_fault(emulator: BedrockEmulator) -> None:
    # GIVEN paced text frames and a stream fault after two text deltas
    from aiobotocore.session import get_session

    emulator.runtime.stream_delay_seconds = 0.001
    emulator.state.faults.update(parse_faults("stream_error_after=2"))

    async def read() -> tuple[list[dict[str, Any]], str]:
        session = get_session()
        async with session.create_client(
            "bedrock-runtime", endpoint_url=emulator.endpoint_url, region_name=REGION
        ) as c:
            response = await c.converse_stream(modelId=HAIKU, messages=[user(PROMPT)])
            events: list[dict[str, Any]] = []
            try:
                async for event in response["stream"]:
                    events.append(event)
            except EventStreamError as error:
                return events, error.response["Error"]["Code"]
            return events, ""

    # WHEN aiobotocore reads the stream
    events, code = asyncio.run(read())
    # THEN it parsed messageStart and the two text deltas, then the fault's exception frame
    assert [next(iter(event)) for event in events] == ["messageStart", "contentBlockDelta", "contentBlockDelta"]
    assert code == "modelStreamErrorException"


def test_reasoning_request_adds_a_reasoning_block(runtime: BaseClient) -> None:
    # GIVEN Claude extended thinking (and, for Nova, a reasoningConfig)
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    # WHEN Converse and ConverseStream answer
    answer = runtime.converse(
        modelId=SONNET_37,
        messages=[user(PROMPT)],
        inferenceConfig={"maxTokens": 2048},
        additionalModelRequestFields=thinking,
    )
    events = stream_events(
        runtime,
        modelId=NOVA_LITE,
        messages=[user(PROMPT)],
        additionalModelRequestFields={"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}},
    )
    # THEN a reasoningContent block (text + signature) comes before the echoed text
    reasoning, text = answer["output"]["message"]["content"]
    assert (
        reasoning["reasoningContent"]["reasoningText"]["text"]
        and reasoning["reasoningContent"]["reasoningText"]["signature"]
    )
    assert text == {"text": PROMPT}
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    thoughts = [d["delta"]["reasoningContent"] for d in deltas if "reasoningContent" in d["delta"]]
    assert all(d["contentBlockIndex"] == 0 for d in deltas if "reasoningContent" in d["delta"])
    assert "".join(t.get("text", "") for t in thoughts) and "signature" in thoughts[-1]
    assert {"contentBlockStop": {"contentBlockIndex": 0}} in events
    assert {d["contentBlockIndex"] for d in deltas if "text" in d["delta"]} == {1}
    assert streamed_text(events) == PROMPT
    # AND reasoning tokens are billed as output
    assert answer["usage"]["outputTokens"] > len(PROMPT.split())


def test_claude_thinking_budget_below_minimum_is_rejected(runtime: BaseClient) -> None:
    # GIVEN a Claude thinking budget under 1,024 tokens WHEN Converse is called
    with pytest.raises(ClientError) as error:
        runtime.converse(
            modelId=SONNET_37,
            messages=[user("hi")],
            additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 100}},
        )
    # THEN the model's validation error comes back
    assert error_code(error) == "ValidationException" and "budget_tokens" in error_message(error)


# ---------------------------------------------------------------- prompt caching


# 1,112 words: over the minimum tokens per cache checkpoint of Claude 3.7 Sonnet (1,024) and Nova (1,000)
CATALOGUE = " ".join(f"book{number}" for number in range(1100))
LIBRARIAN = f"You are a librarian who knows every book in the catalogue. Catalogue: {CATALOGUE}"


def cached_request(question: str, model_id: str = SONNET_37) -> dict[str, Any]:
    system = [{"text": LIBRARIAN}, {"cachePoint": {"type": "default"}}]
    return {"modelId": model_id, "system": system, "messages": [user(question)]}


def test_a_repeated_prefix_is_written_then_read_from_the_cache(runtime: BaseClient, clock: ManualClock) -> None:
    # GIVEN a system prompt ending with a cache point
    prefix = len(LIBRARIAN.split())
    # WHEN two requests share that prefix, the second one streamed
    first = runtime.converse(**cached_request("Where is Moby Dick?"))
    events = stream_events(runtime, **cached_request("And where is Emma?"))
    # THEN the first writes the prefix, the second reads it; inputTokens excludes cached tokens
    assert first["usage"] == {
        "inputTokens": 4,
        "outputTokens": 4,
        "totalTokens": prefix + 8,
        "cacheReadInputTokens": 0,
        "cacheWriteInputTokens": prefix,
        "cacheDetails": [{"ttl": "5m", "inputTokens": prefix}],
    }
    second = events[-1]["metadata"]["usage"]
    assert (second["cacheReadInputTokens"], second["cacheWriteInputTokens"], second["inputTokens"]) == (prefix, 0, 4)
    # AND after the 5-minute TTL the prefix is written again
    clock.advance(301)
    third = runtime.converse(**cached_request("Where is Ulysses?"))
    assert (third["usage"]["cacheReadInputTokens"], third["usage"]["cacheWriteInputTokens"]) == (0, prefix)


def test_the_cache_is_per_model_and_refused_by_models_without_caching(runtime: BaseClient) -> None:
    # GIVEN a prefix cached for Claude 3.7 Sonnet
    runtime.converse(**cached_request("Where is Moby Dick?"))
    # WHEN Nova Lite sends the same prefix, and Claude 3 Haiku (no prompt caching) does
    nova = runtime.converse(**cached_request("Where is Moby Dick?", model_id=NOVA_LITE))["usage"]
    with pytest.raises(ClientError) as error:
        runtime.converse(**cached_request("Where is Moby Dick?", model_id=HAIKU))
    # THEN Nova writes its own entry, and Haiku gets the service's prompt-caching error
    assert (nova["cacheReadInputTokens"], nova["cacheWriteInputTokens"]) == (0, len(LIBRARIAN.split()))
    assert error_code(error) == "ValidationException" and "did not allow prompt caching" in error_message(error)


# ---------------------------------------------------------------- prompt routers


def test_the_default_prompt_router_picks_a_model_by_prompt_size(runtime: BaseClient) -> None:
    # GIVEN the default Claude prompt router, a short prompt and a long one
    long_prompt = " ".join(f"word{i}" for i in range(40))
    # WHEN Converse answers the short one and ConverseStream the long one
    short = runtime.converse(modelId=ROUTER, messages=[user("hello there")])
    events = stream_events(runtime, modelId=ROUTER, messages=[user(long_prompt)])
    # THEN each trace names the model the router invoked: the small one for the short prompt
    profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    assert short["trace"]["promptRouter"]["invokedModelId"] == profile + "us.anthropic.claude-3-haiku-20240307-v1:0"
    assert events[-1]["metadata"]["trace"] == {
        "promptRouter": {"invokedModelId": profile + "us.anthropic.claude-3-5-sonnet-20240620-v1:0"}
    }
    assert short["output"]["message"]["content"] == [{"text": "hello there"}]


def test_custom_prompt_routers_must_exist(runtime: BaseClient, emulator: BedrockEmulator) -> None:
    # GIVEN a registered custom router and an unknown one
    known = "arn:aws:bedrock:us-east-1:123456789012:prompt-router/abcd1234efgh"
    emulator.add_prompt_router(known, ["us.amazon.nova-micro-v1:0", "us.amazon.nova-pro-v1:0"])
    # WHEN each is used as modelId
    answer = runtime.converse(modelId=known, messages=[user("hi")])
    with pytest.raises(ClientError) as error:
        runtime.converse(modelId=known.replace("abcd1234efgh", "zzzz9999zzzz"), messages=[user("hi")])
    # THEN the registered one routes, the unknown one is a ResourceNotFoundException
    assert answer["trace"]["promptRouter"]["invokedModelId"].endswith("inference-profile/us.amazon.nova-micro-v1:0")
    assert error_code(error) == "ResourceNotFoundException" and http_status(error) == 404


# ---------------------------------------------------------------- CountTokens


def test_count_tokens_matches_the_usage_of_the_same_input(runtime: BaseClient) -> None:
    # GIVEN a conversation with a system prompt, answered by Converse
    messages = [user("Hi"), assistant("Hello! How can I help?"), user(PROMPT)]
    system = [{"text": "Be brief."}]
    usage = runtime.converse(modelId=HAIKU, messages=messages, system=system)["usage"]
    # WHEN the same input is counted as Converse input, and as the InvokeModel body of Anthropic's format
    converse = runtime.count_tokens(modelId=HAIKU, input={"converse": {"messages": messages, "system": system}})
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [{"role": m["role"], "content": m["content"][0]["text"]} for m in messages],
    }
    invoke = runtime.count_tokens(modelId=HAIKU, input={"invokeModel": {"body": json.dumps(body).encode()}})
    # THEN both counts equal the input tokens Converse billed
    assert converse["inputTokens"] == invoke["inputTokens"] == usage["inputTokens"]


def test_count_tokens_with_a_cache_point_counts_every_input_token(runtime: BaseClient) -> None:
    # GIVEN a cached request answered once (prefix written)
    request = cached_request("Where is Moby Dick?", model_id="anthropic.claude-3-7-sonnet-20250219-v1:0")
    usage = runtime.converse(**request)["usage"]
    # WHEN its input is counted
    count = runtime.count_tokens(
        modelId=request["modelId"], input={"converse": {"system": request["system"], "messages": request["messages"]}}
    )
    # THEN the count is input + cache read + cache write
    assert count["inputTokens"] == usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheWriteInputTokens"]


@pytest.mark.parametrize(
    ("model_id", "message"),
    [
        ("amazon.nova-lite-v1:0", "The provided model doesn't support counting tokens."),
        ("us.anthropic.claude-3-haiku-20240307-v1:0", "The provided model doesn't support counting tokens."),
        (ROUTER, "The provided model doesn't support counting tokens."),
        ("acme.unknown-model-v1:0", "The provided model identifier is invalid."),
    ],
)
def test_count_tokens_serves_bare_claude_ids_only(runtime: BaseClient, model_id: str, message: str) -> None:
    # GIVEN a Nova id, an inference profile, a router or an unknown id WHEN tokens are counted
    with pytest.raises(ClientError) as error:
        runtime.count_tokens(modelId=model_id, input={"converse": {"messages": [user("hi")]}})
    # THEN the service's ValidationException comes back
    assert error_code(error) == "ValidationException" and error_message(error) == message


# ---------------------------------------------------------------- InvokeModel: images


AMAZON_IMAGE_REQUEST = {
    "taskType": "TEXT_IMAGE",
    "textToImageParams": {"text": "a lighthouse at dusk"},
    "imageGenerationConfig": {"width": 1280, "height": 720, "quality": "standard", "seed": 42, "numberOfImages": 2},
}


@pytest.mark.parametrize(
    ("model_id", "width", "height", "shape"),
    [("amazon.nova-canvas-v1:0", 1280, 720, (64, 36)), ("amazon.titan-image-generator-v2:0", 1173, 640, (64, 35))],
)
def test_amazon_image_models_return_decodable_pngs(
    runtime: BaseClient, model_id: str, width: int, height: int, shape: tuple[int, int]
) -> None:
    # GIVEN a TEXT_IMAGE request for two 16:9 images of a size the model takes
    config = {**AMAZON_IMAGE_REQUEST["imageGenerationConfig"], "width": width, "height": height}  # type: ignore[dict-item]
    request = {**AMAZON_IMAGE_REQUEST, "imageGenerationConfig": config}
    # WHEN the image model is invoked twice with it
    first = invoke_json(runtime, model_id, request)
    again = invoke_json(runtime, model_id, request)
    # THEN it returns two valid PNGs (tiny, with the requested 16:9 shape), the same on every call
    assert set(first) == {"images"} and len(first["images"]) == 2
    images = [base64.b64decode(image) for image in first["images"]]
    assert [png_header(image) for image in images] == [shape, shape]
    assert images[0] != images[1] and first == again


@pytest.mark.parametrize(
    ("model_id", "aspect_ratio", "size"),
    [
        ("stability.sd3-5-large-v1:0", "1:1", (64, 64)),
        ("stability.stable-image-core-v1:1", "16:9", (64, 37)),
        ("stability.stable-image-ultra-v1:1", "9:16", (37, 64)),
    ],
)
def test_stability_models_return_a_png_and_finish_reasons(
    runtime: BaseClient, model_id: str, aspect_ratio: str, size: tuple[int, int]
) -> None:
    # GIVEN a Stability text-to-image request with an aspect ratio and a seed
    body = {"prompt": "a lighthouse at dusk", "aspect_ratio": aspect_ratio, "negative_prompt": "fog", "seed": 7}
    # WHEN the model is invoked
    answer = invoke_json(runtime, model_id, body)
    # THEN it answers Stability's shape with one valid PNG of that shape
    assert answer["seeds"] == [7] and answer["finish_reasons"] == [None]
    assert png_header(base64.b64decode(answer["images"][0])) == size


@pytest.mark.parametrize("model_id", ["amazon.nova-canvas-v1:0", "amazon.titan-image-generator-v2:0"])
def test_amazon_image_models_refuse_a_filtered_prompt(runtime: BaseClient, model_id: str) -> None:
    # GIVEN a prompt with a blocked word
    request = {**AMAZON_IMAGE_REQUEST, "textToImageParams": {"text": FILTERED_PROMPT}, "imageGenerationConfig": {}}
    # WHEN a Nova Canvas or Titan model is invoked
    with pytest.raises(ClientError) as error:
        invoke_json(runtime, model_id, request)
    # THEN the content filter's ValidationException comes back
    assert error_code(error) == "ValidationException"
    assert error_message(error).startswith("This request has been blocked by our content filters.")


def test_stability_reports_a_filtered_prompt_in_finish_reasons(runtime: BaseClient, emulator: BedrockEmulator) -> None:
    # GIVEN a configured blocked word in the prompt
    emulator.runtime.blocked_words = ["gore"]
    # WHEN Stable Image Core is invoked
    answer = invoke_json(runtime, "stability.stable-image-core-v1:1", {"prompt": "lots of GORE", "seed": 3})
    # THEN the call succeeds with a filter reason and no image
    assert answer == {"seeds": [3], "finish_reasons": ["Filter reason: prompt"], "images": []}


def test_image_requests_are_checked(runtime: BaseClient) -> None:
    # GIVEN a width that is not a multiple of 16, and a Stability aspect ratio that does not exist
    bad_width = {**AMAZON_IMAGE_REQUEST, "imageGenerationConfig": {"width": 1000, "height": 1024}}
    # WHEN they are sent THEN each is a ValidationException naming the field
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("amazon.nova-canvas-v1:0", bad_width, "width"),
        ("stability.sd3-5-large-v1:0", {"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio"),
        ("amazon.nova-canvas-v1:0", {"textToImageParams": {"text": "x"}}, "taskType"),
    ]
    for model_id, body, field in cases:
        with pytest.raises(ClientError) as error:
            invoke_json(runtime, model_id, body)
        assert error_code(error) == "ValidationException" and field in error_message(error)


@pytest.mark.parametrize(
    ("model_id", "width", "height", "accepted"),
    [
        # Titan Image Generator: only the sizes of its table
        ("amazon.titan-image-generator-v2:0", 1173, 640, True),
        ("amazon.titan-image-generator-v2:0", 320, 704, True),
        ("amazon.titan-image-generator-v2:0", 1280, 720, False),  # 16:9 on Nova Canvas, not in Titan's table
        ("amazon.titan-image-generator-v1", 1024, 768, False),
        # Nova Canvas: sides 320-4096 in multiples of 16, ratio 1:4 to 4:1, under 4,194,304 pixels
        ("amazon.nova-canvas-v1:0", 1280, 720, True),
        ("amazon.nova-canvas-v1:0", 320, 1280, True),  # 1:4
        ("amazon.nova-canvas-v1:0", 3840, 960, True),  # 4:1 and 3,686,400 pixels
        ("amazon.nova-canvas-v1:0", 1173, 640, False),  # not a multiple of 16
        ("amazon.nova-canvas-v1:0", 304, 1024, False),  # a side under 320
        ("amazon.nova-canvas-v1:0", 4112, 1024, False),  # a side over 4096
        ("amazon.nova-canvas-v1:0", 320, 1296, False),  # taller than 1:4
        ("amazon.nova-canvas-v1:0", 2048, 2048, False),  # 4,194,304 pixels: the limit itself (stricter reading)
    ],
)
def test_amazon_image_models_take_only_their_documented_sizes(
    runtime: BaseClient, model_id: str, width: int, height: int, accepted: bool
) -> None:
    # GIVEN a TEXT_IMAGE request of one size
    request = {**AMAZON_IMAGE_REQUEST, "imageGenerationConfig": {"width": width, "height": height}}
    # WHEN the model is invoked
    # THEN a documented size gets an image, any other a ValidationException naming the size or the side
    if accepted:
        assert len(invoke_json(runtime, model_id, request)["images"]) == 1
        return
    with pytest.raises(ClientError) as error:
        invoke_json(runtime, model_id, request)
    assert error_code(error) == "ValidationException"
    assert (
        f"{width}x{height}" in error_message(error)
        or "width" in error_message(error)
        or "height" in error_message(error)
    )


def test_text_models_via_invoke_model_report_token_headers(runtime: BaseClient) -> None:
    # GIVEN an Anthropic Messages body
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    # WHEN InvokeModel answers it
    answer = runtime.invoke_model(modelId=HAIKU, body=json.dumps(body))
    # THEN the body is Anthropic's and the token counts are in the headers
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert json.loads(answer["body"].read())["content"] == [{"type": "text", "text": PROMPT}]
    assert headers["x-amzn-bedrock-input-token-count"] == headers["x-amzn-bedrock-output-token-count"] == "9"
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 1


# ---------------------------------------------------------------- async invoke: Nova Reel


def start_video(runtime: BaseClient, text: str = "waves on a beach", **extra: Any) -> str:
    return str(
        runtime.start_async_invoke(
            modelId="amazon.nova-reel-v1:0",
            modelInput={
                "taskType": "TEXT_VIDEO",
                "textToVideoParams": {"text": text},
                "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720", "seed": 1},
            },
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/videos"}},
            **extra,
        )["invocationArn"]
    )


def test_a_video_invocation_progresses_and_writes_an_mp4(
    runtime: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN a Nova Reel invocation just started (each status step lasts 1 s)
    arn = start_video(runtime, clientRequestToken="video-token-1")
    invocation_id = arn.rsplit("/", 1)[-1]
    # WHEN the clock moves on
    seen = [runtime.get_async_invoke(invocationArn=arn)["status"]]
    clock.advance(1)
    seen.append(runtime.get_async_invoke(invocationArn=arn)["status"])
    clock.advance(1)
    final = runtime.get_async_invoke(invocationArn=arn)
    # THEN it is InProgress, then Completed with an end time
    assert seen + [final["status"]] == ["InProgress", "InProgress", "Completed"]
    assert final["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-reel-v1:0"
    assert final["endTime"] > final["submitTime"] and "failureMessage" not in final
    # AND the invocation's folder <s3Uri>/<invocationId>/ holds the documented files, and GetAsyncInvoke names it
    folder = f"videos/{invocation_id}"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{folder}/")["Contents"]
    assert sorted(item["Key"] for item in listed) == [
        f"{folder}/generation-status.json",
        f"{folder}/manifest.json",
        f"{folder}/output.mp4",
    ]
    assert final["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == f"s3://{BUCKET}/{folder}"
    # AND output.mp4 is a valid 6-second MP4
    video = s3.get_object(Bucket=BUCKET, Key=f"{folder}/output.mp4")["Body"].read()
    boxes = mp4_boxes(video)
    assert list(boxes) == [b"ftyp", b"moov", b"mdat"] and boxes[b"ftyp"][:4] == b"isom"
    mvhd = mp4_boxes(boxes[b"moov"])[b"mvhd"]
    timescale, duration = struct.unpack(">II", mvhd[12:20])
    assert duration / timescale == 6
    # AND a retry with the same clientRequestToken returns the same invocation
    assert start_video(runtime, clientRequestToken="video-token-1") == arn


def test_list_async_invokes_filters_and_pages(runtime: BaseClient, clock: ManualClock) -> None:
    # GIVEN three invocations, the first one finished
    first = start_video(runtime)
    clock.advance(2)
    others = [start_video(runtime), start_video(runtime)]
    # WHEN they are listed by status, and two at a time
    done = runtime.list_async_invokes(statusEquals="Completed")["asyncInvokeSummaries"]
    page = runtime.list_async_invokes(maxResults=2, sortOrder="Ascending")
    rest = runtime.list_async_invokes(maxResults=2, sortOrder="Ascending", nextToken=page["nextToken"])
    # THEN the filter and the pages follow submission time
    assert [item["invocationArn"] for item in done] == [first]
    listed = [item["invocationArn"] for item in page["asyncInvokeSummaries"] + rest["asyncInvokeSummaries"]]
    assert listed == [first, *others] and "nextToken" not in rest


def test_video_requests_are_checked_and_filtered(runtime: BaseClient) -> None:
    # GIVEN a blocked word in the prompt, and an image model
    # WHEN async invocations are started
    with pytest.raises(ClientError) as filtered:
        start_video(runtime, text=FILTERED_PROMPT)
    with pytest.raises(ClientError) as wrong_model:
        runtime.start_async_invoke(
            modelId="amazon.nova-canvas-v1:0",
            modelInput={"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "x"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/videos"}},
        )
    # THEN both are ValidationExceptions, the first in the content filter's words
    assert error_code(filtered) == error_code(wrong_model) == "ValidationException"
    assert "blocked by our content filters" in error_message(filtered)


# ---------------------------------------------------------------- runtime faults


def test_runtime_throttle_and_model_error_hit_the_next_calls(
    runtime: BaseClient, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN one throttled call and one model error to inject
    state.faults.update(parse_faults("runtime_throttle=1,model_error=1"))
    # WHEN three Converse calls are made
    codes = []
    for _ in range(3):
        try:
            runtime.converse(modelId=HAIKU, messages=[user("hi")])
            codes.append(("ok", 200))
        except ClientError as error:
            codes.append((error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]))
    # THEN the first is throttled (429), the second a model error (424), the third is served
    assert codes == [("ThrottlingException", 429), ("ModelErrorException", 424), ("ok", 200)]
    assert emulator.faults_injected() == {"runtime_throttle": 1, "model_error": 1}


@pytest.mark.parametrize(
    ("exception", "status"),
    [
        ("ModelNotReadyException", 429),
        ("ModelTimeoutException", 408),
        ("AccessDeniedException", 403),
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
    ],
)
def test_runtime_error_injects_any_listed_exception_with_its_modelled_status(
    runtime: BaseClient, state: EmulatorState, emulator: BedrockEmulator, exception: str, status: int
) -> None:
    # GIVEN one call to fail with the exception (status per botocore's error shape)
    state.faults.update(parse_faults(f"runtime_error={exception}:1"))
    # WHEN ConverseStream is called twice
    with pytest.raises(ClientError) as error:
        runtime.converse_stream(modelId=HAIKU, messages=[user("hi")])
    stream = runtime.converse_stream(modelId=HAIKU, messages=[user("hi")])["stream"]
    # THEN botocore raises the modelled exception class with the status, and the next call is served
    assert type(error.value).__name__ == exception
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert "emulated fault runtime_error" in error_message(error)
    assert any("messageStop" in event for event in stream)
    assert emulator.faults_injected() == {"runtime_error": 1}


def test_runtime_error_skips_operations_that_do_not_list_the_exception(
    runtime: BaseClient, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN a ServiceQuotaExceededException to inject, which InvokeModel lists and Converse does not
    state.faults["runtime_error"] = "ServiceQuotaExceededException:1"
    # WHEN Converse, then an image InvokeModel, are called
    served = runtime.converse(modelId=HAIKU, messages=[user("hi")])
    with pytest.raises(ClientError) as error:
        invoke_json(runtime, "amazon.nova-canvas-v1:0", AMAZON_IMAGE_REQUEST)
    # THEN Converse is served and InvokeModel gets the HTTP 400 quota error naming the quota
    assert served["stopReason"] == "end_turn"
    assert error_code(error) == "ServiceQuotaExceededException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "service quota 'On-demand model inference tokens per day" in error_message(error)


def test_runtime_exceptions_are_those_botocore_lists_for_the_inference_operations() -> None:
    # GIVEN botocore's bedrock-runtime model WHEN the errors of the faulted operations are collected
    model = service_model("bedrock-runtime")
    operations = ("Converse", "ConverseStream", "CountTokens", "InvokeModel", "StartAsyncInvoke")
    listed = {shape.name for name in operations for shape in model.operation_model(name).error_shapes}
    # THEN runtime_error takes exactly those, and the emulator has a message for each
    assert set(RUNTIME_EXCEPTIONS) == listed == set(RUNTIME_ERROR_MESSAGES)


def test_model_error_also_hits_streams_and_image_calls(runtime: BaseClient, state: EmulatorState) -> None:
    # GIVEN two model errors to inject
    state.faults["model_error"] = 2
    # WHEN a stream and an image invocation are made
    with pytest.raises(ClientError) as stream_error:
        runtime.converse_stream(modelId=HAIKU, messages=[user("hi")])
    with pytest.raises(ClientError) as image_error:
        invoke_json(runtime, "amazon.nova-canvas-v1:0", AMAZON_IMAGE_REQUEST)
    # THEN both fail before any answer with ModelErrorException
    assert error_code(stream_error) == error_code(image_error) == "ModelErrorException"


def test_stream_error_after_breaks_the_stream_mid_way(
    runtime: BaseClient, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN streams break after two text deltas
    state.faults["stream_error_after"] = 2
    # WHEN a five-word answer is streamed
    received: list[str] = []
    stream = runtime.converse_stream(modelId=HAIKU, messages=[user("one two three four five")])["stream"]
    with pytest.raises(EventStreamError) as error:
        for event in stream:
            if "contentBlockDelta" in event:
                received.append(event["contentBlockDelta"]["delta"]["text"])
    # THEN the client got two deltas, then botocore raised the in-stream modelStreamErrorException
    assert received == ["one", " two"]
    assert error.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert emulator.faults_injected() == {"stream_error_after": 1}


def test_video_failed_ends_the_invocation_failed_without_output(
    runtime: BaseClient, state: EmulatorState, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN the next video invocation fails
    state.faults["video_failed"] = 1
    # WHEN two invocations run to their end
    failed, completed = start_video(runtime), start_video(runtime)
    clock.advance(2)
    # THEN the first is Failed with a message and wrote nothing, the second Completed
    answer = runtime.get_async_invoke(invocationArn=failed)
    assert answer["status"] == "Failed" and "video_failed" in answer["failureMessage"]
    assert runtime.get_async_invoke(invocationArn=completed)["status"] == "Completed"
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="videos/").get("Contents", [])]
    assert {key.rsplit("/", 2)[1] for key in keys} == {completed.rsplit("/", 1)[-1]}
    assert f"videos/{completed.rsplit('/', 1)[-1]}/output.mp4" in keys
