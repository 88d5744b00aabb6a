"""Batch input lines -> prepared records, and output rows -> OpenAI output lines (``lambdas.gateway.batch_lines``):
one test per validation rule, the records checked by the emulator's batch record checks, the answers by the pinned
openai package's types."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from openai.types import BatchError, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from lambdas.gateway.batch_lines import (
    CHAT,
    EMBEDDINGS,
    MAX_LINES,
    MAX_RECORD_BYTES,
    BotLookup,
    LineError,
    LineSplitter,
    PreparedLine,
    context_error,
    output_line,
    prepare_line,
)
from lambdas.gateway.config import load_bots
from lambdas.gateway.tokens import TokenCount, estimate_tokens
from local.emulator.families import RecordError, invoke_converse, invoke_titan_embed_v2
from local.emulator.media import png

ROOT = Path(__file__).resolve().parents[3]
BOTS = load_bots()
ALL = BotLookup(BOTS)


def chat_line(custom_id: str = "req-1", **body: Any) -> dict[str, Any]:
    fields = {"model": "claude-3-haiku", "messages": [{"role": "user", "content": "Hello"}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": fields}


def embed_line(custom_id: str = "emb-1", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": EMBEDDINGS, "body": {"model": "titan-embed-v2", **body}}


def prepare(
    line: dict[str, Any] | bytes,
    number: int = 1,
    *,
    endpoint: str = CHAT,
    bots: BotLookup = ALL,
    seen: set[str] | None = None,
) -> PreparedLine | LineError:
    raw = line if isinstance(line, bytes) else json.dumps(line).encode()
    return prepare_line(raw, number, endpoint=endpoint, bots=bots, seen=set() if seen is None else seen)


def refused(result: PreparedLine | LineError, code: str) -> LineError:
    assert isinstance(result, LineError), result
    assert result.code == code, result
    BatchError.model_validate(result.openai())  # OpenAI's batch error fields
    assert result.message.startswith(f"Line {result.line}: ")
    return result


# ---------------------------------------------------------------- accepted lines


def test_a_chat_line_becomes_a_converse_record_the_emulator_accepts() -> None:
    # GIVEN a chat line with a system message, max_tokens, temperature and a stop sequence
    line = chat_line(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=100,
        temperature=0.3,
        stop=["END"],
    )
    # WHEN it is prepared
    prepared = prepare(line, 7)
    # THEN the record is the Converse request body without the model id, as the contract's prepared line
    assert isinstance(prepared, PreparedLine)
    record = json.loads(prepared.jsonl())
    assert record == {
        "custom_id": "req-1",
        "line": 7,
        "model": "claude-3-haiku",
        "bedrock_model_id": BOTS["claude-3-haiku"].model_id,
        "model_input": {
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.3, "stopSequences": ["END"]},
            "system": [{"text": "Be brief."}],
        },
    }
    # AND the emulator's Converse batch record checks answer it
    assert invoke_converse(BOTS["claude-3-haiku"].model_id, record["model_input"]).output["stopReason"] == "end_turn"


def test_an_embeddings_line_becomes_the_familys_invoke_model_body() -> None:
    # GIVEN an embeddings line for Titan Text Embeddings V2 with dimensions and base64 output
    prepared = prepare(embed_line(input="some text", dimensions=256, encoding_format="base64"), endpoint=EMBEDDINGS)
    # THEN the record is Titan's body, which the emulator embeds, and the encoding is kept for the output
    assert isinstance(prepared, PreparedLine)
    assert prepared.model_input["inputText"] == "some text" and prepared.model_input["dimensions"] == 256
    assert prepared.record()["encoding_format"] == "base64"
    assert len(invoke_titan_embed_v2(BOTS["titan-embed-v2"].model_id, prepared.model_input).output["embedding"]) == 256


# ---------------------------------------------------------------- one test per rule


def test_a_line_that_is_not_a_json_object_is_refused() -> None:
    # GIVEN / WHEN a line of broken JSON, and one holding a JSON array
    # THEN each is invalid_json_line naming the line
    assert refused(prepare(b"{not json", 3), "invalid_json_line").line == 3
    refused(prepare(b"[1, 2]"), "invalid_json_line")


def test_a_missing_custom_id_is_refused() -> None:
    # GIVEN a line without custom_id
    line = chat_line()
    del line["custom_id"]
    # THEN it is missing_custom_id, param custom_id
    assert refused(prepare(line), "missing_custom_id").param == "custom_id"


def test_a_duplicate_custom_id_is_refused_on_its_second_line() -> None:
    # GIVEN two lines with one custom_id
    seen: set[str] = set()
    first = prepare(chat_line("same"), 1, seen=seen)
    second = prepare(chat_line("same"), 2, seen=seen)
    # THEN the first is prepared and the second refused, naming the id
    assert isinstance(first, PreparedLine)
    assert "'same'" in refused(second, "duplicate_custom_id").message


def test_a_method_other_than_post_is_refused() -> None:
    assert refused(prepare(chat_line() | {"method": "GET"}), "invalid_method").param == "method"


def test_an_unknown_url_is_refused() -> None:
    assert refused(prepare(chat_line() | {"url": "/v1/completions"}), "invalid_url").param == "url"


def test_a_url_of_another_endpoint_than_the_batchs_is_refused() -> None:
    # GIVEN an embeddings line in a chat batch
    error = refused(prepare(embed_line(input="x"), endpoint=CHAT), "mismatched_url")
    # THEN the message names the batch's endpoint
    assert CHAT in error.message


def test_an_unknown_model_is_refused() -> None:
    error = refused(prepare(chat_line(model="no-such-bot")), "model_not_found")
    assert error.param == "body.model"


def test_a_model_the_key_may_not_use_is_refused_without_naming_other_bots() -> None:
    # GIVEN a key that may use nova-lite only
    only_nova = BotLookup(BOTS, may_use=lambda name: name == "nova-lite")
    # WHEN a line asks for an existing bot and for a missing one
    existing = refused(prepare(chat_line(model="claude-3-haiku"), bots=only_nova), "model_not_allowed")
    missing = refused(prepare(chat_line(model="no-such-bot"), bots=only_nova), "model_not_allowed")
    # THEN both get the same refusal, which names no other bot
    assert existing.message.replace("claude-3-haiku", "X") == missing.message.replace("no-such-bot", "X")
    assert "nova-lite" not in existing.message


def test_a_model_of_another_modality_is_refused() -> None:
    assert refused(prepare(chat_line(model="titan-embed-v2")), "wrong_endpoint").param == "body.model"


def test_a_model_without_batch_inference_is_refused() -> None:
    # GIVEN Cohere Embed v3 (on-demand only) and a prompt router
    refused(prepare(embed_line(model="cohere-embed-english", input="x"), endpoint=EMBEDDINGS), "model_not_batchable")
    refused(prepare(chat_line(model="router-claude")), "model_not_batchable")
    # AND an operator's Nova Multimodal Embeddings bot (not on Bedrock's batch models page)
    nova = BotLookup({**BOTS, **load_bots(ROOT / "tests" / "data" / "gateway_bots_nova_embeddings.json")})
    line = embed_line(model="nova-embed", input="x")
    error = refused(prepare(line, endpoint=EMBEDDINGS, bots=nova), "model_not_batchable")
    assert "amazon.nova-2-multimodal-embeddings-v1:0 does not run Bedrock batch inference jobs" in error.message


def test_a_body_the_synchronous_route_refuses_is_refused_with_its_message() -> None:
    # GIVEN a parameter Bedrock cannot honour, and a temperature out of range
    penalty = refused(prepare(chat_line(frequency_penalty=1.0)), "unsupported_parameter")
    hot = refused(prepare(chat_line(temperature=5)), "invalid_body")
    # THEN the param is under body and the message is the route's
    assert penalty.param == "body.frequency_penalty" and "frequency penalty" in penalty.message
    assert hot.param == "body.temperature"


def test_stream_true_is_refused() -> None:
    assert refused(prepare(chat_line(stream=True)), "stream_not_supported").param == "body.stream"


def test_tools_are_refused_naming_the_fix() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    error = refused(prepare(chat_line(tools=tools)), "tools_not_supported")
    assert "Remove 'tools'" in error.message


def test_structured_output_through_a_forced_tool_is_refused() -> None:
    # GIVEN a bot that gives structured output through a forced tool (Claude 3 Haiku)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    refused(prepare(chat_line(response_format=schema)), "tools_not_supported")


PNG = png(4, 4, (10, 200, 30))
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_line(url: str, model: str = "claude-3-haiku") -> dict[str, Any]:
    content = [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": url}}]
    return chat_line(model=model, messages=[{"role": "user", "content": content}])


def test_an_inline_image_becomes_the_converse_image_block_with_base64_bytes() -> None:
    # GIVEN a chat line with an image as a base64 data: URL, for a bot that reads images
    prepared = prepare(image_line(data_url("image/png", PNG)))
    # WHEN it is prepared / THEN the record holds the synchronous route's blocks (the image before the text, as the
    # route orders them), the image's bytes in base64 text
    assert isinstance(prepared, PreparedLine)
    record = json.loads(prepared.jsonl())["model_input"]
    image, text = record["messages"][0]["content"]
    assert text == {"text": "what is it?"}
    assert image == {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}}
    # AND the prepared model input keeps the bytes (for CountTokens, as the synchronous route sends them)
    assert prepared.model_input["messages"][0]["content"][0]["image"]["source"]["bytes"] == PNG
    # AND the emulator's Converse batch record checks answer it
    assert invoke_converse(BOTS["claude-3-haiku"].model_id, record).output["stopReason"] == "end_turn"


def test_an_inline_pdf_becomes_a_document_block() -> None:
    # GIVEN a file part holding a PDF, for a bot that reads documents
    part = {"type": "file", "file": {"filename": "report.pdf", "file_data": data_url("application/pdf", PDF)}}
    line = chat_line(model="claude-3.5-sonnet-v2", messages=[{"role": "user", "content": [part]}])
    # WHEN it is prepared / THEN the record has the route's document block, which the emulator accepts
    prepared = prepare(line)
    assert isinstance(prepared, PreparedLine)
    record = json.loads(prepared.jsonl())["model_input"]
    (document,) = [block["document"] for block in record["messages"][0]["content"] if "document" in block]
    assert document["format"] == "pdf" and base64.b64decode(document["source"]["bytes"]) == PDF
    assert invoke_converse(BOTS["claude-3.5-sonnet-v2"].model_id, record).output["stopReason"] == "end_turn"


def test_a_remote_attachment_url_is_refused_naming_the_data_url_fix() -> None:
    # GIVEN an image part with an https URL (a batch is validated without downloading anything)
    error = refused(prepare(image_line("https://example.com/a.png"), 3), "attachments_not_supported")
    # THEN the line is named with the URL and the fix: inline it
    assert error.line == 3 and error.param == "body.messages[0]"
    assert "https://example.com/a.png" in error.message and "base64 data: URL" in error.message


def test_the_emulator_refuses_more_than_20_images_in_one_message() -> None:
    # GIVEN a Converse batch record with 21 images in its user message
    image = {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG).decode()}}}
    record = {"messages": [{"role": "user", "content": [{"text": "hi"}, *[image] * 21]}]}
    # WHEN the emulator answers it / THEN it is a record error naming the limit
    with pytest.raises(RecordError, match="more than 20 image blocks"):
        invoke_converse(BOTS["claude-3-haiku"].model_id, record)


def test_an_inline_image_for_a_bot_that_reads_none_is_refused_as_the_synchronous_route_refuses_it() -> None:
    # GIVEN / WHEN an inline image for Claude 3.5 Haiku (text only on Bedrock)
    error = refused(prepare(image_line(data_url("image/png", PNG), model="claude-3.5-haiku")), "unsupported_attachment")
    # THEN the route's message says what the bot takes
    assert "cannot read images" in error.message and error.param == "body"


def test_an_inline_attachment_over_the_limit_is_refused() -> None:
    # GIVEN an inline image over the gateway's attachment limit
    raw = json.dumps(image_line(data_url("image/png", PNG))).encode()
    # WHEN it is prepared with a limit below its size / THEN it is the route's attachment_too_large
    line = prepare_line(raw, 1, endpoint=CHAT, bots=ALL, seen=set(), attachment_max_bytes=len(PNG) - 1)
    refused(line, "attachment_too_large")


def test_an_inline_attachment_that_is_not_base64_is_refused() -> None:
    refused(prepare(image_line("data:image/png;base64,***")), "unsupported_attachment")


@pytest.mark.parametrize(
    ("image", "detail"),
    [
        ({"format": "png", "source": {"bytes": "not base64!"}}, "expected base64 text"),
        ({"source": {"bytes": base64.b64encode(PNG).decode()}}, "required key [format] not found"),
        ({"format": "tiff", "source": {"bytes": base64.b64encode(PNG).decode()}}, "tiff is not a valid enum value"),
        ({"format": "png", "source": {}}, "expected exactly one member"),
        ({"format": "png", "source": {"bytes": base64.b64encode(b"x" * 3_750_001).decode()}}, "3,750,001 bytes"),
    ],
)
def test_the_emulator_refuses_a_converse_record_whose_image_block_is_malformed(
    image: dict[str, Any], detail: str
) -> None:
    # GIVEN a Converse batch record whose image block breaks the Converse request body's rules
    record = {"messages": [{"role": "user", "content": [{"text": "hi"}, {"image": image}]}]}
    # WHEN the emulator answers it / THEN it is a record error naming the member
    with pytest.raises(RecordError, match=r"#/messages/0/content/1/image"):
        invoke_converse(BOTS["claude-3-haiku"].model_id, record)
    with pytest.raises(RecordError) as raised:
        invoke_converse(BOTS["claude-3-haiku"].model_id, record)
    assert detail in str(raised.value)


def test_a_chat_line_over_its_bots_context_is_refused_as_the_synchronous_route_refuses_it() -> None:
    # GIVEN a prepared chat line whose bot takes 50 tokens of context, and its record's estimate (the count the
    # synchronous route takes for a bot without CountTokens)
    small = BOTS["claude-3-haiku"].model_copy(update={"context_tokens": 50})
    prepared = prepare(
        chat_line(messages=[{"role": "user", "content": "word " * 100}]), 4, bots=BotLookup({**BOTS, small.name: small})
    )
    assert isinstance(prepared, PreparedLine)
    count = TokenCount(estimate_tokens(prepared.model_input), "estimate")
    # WHEN its context is checked
    error = refused(context_error(prepared, count) or prepared, "context_length_exceeded")
    # THEN the line's error is the route's (code and message), naming line 4, the limit and the fix
    assert error.line == 4 and error.param == "body.messages"
    assert f"about {count.tokens:,} tokens, over this bot's limit of 50" in error.message
    assert error.message.endswith("Fix the line and upload the file again.")
    # AND the same line within the limit passes
    assert context_error(prepared, TokenCount(50, "count_tokens")) is None


def test_more_than_50000_lines_are_refused() -> None:
    # GIVEN / WHEN line 50,001
    error = refused(prepare(chat_line(), MAX_LINES + 1), "too_many_lines")
    # THEN it names the limit and the fix
    assert "50,000" in error.message and "Split" in error.message


def test_a_line_over_the_record_size_is_refused() -> None:
    # GIVEN a message over the largest record
    huge = "x" * (MAX_RECORD_BYTES + 1)
    refused(prepare(chat_line(messages=[{"role": "user", "content": huge}])), "record_too_large")


def test_an_embeddings_line_with_more_texts_than_one_record_takes_is_refused() -> None:
    error = refused(prepare(embed_line(input=["a", "b"]), endpoint=EMBEDDINGS), "too_many_inputs")
    assert error.param == "body.input"


# ---------------------------------------------------------------- output lines


def converse_output(text: str = "Hi there", stop: str = "end_turn") -> str:
    return json.dumps(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop,
            "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13, "cacheReadInputTokens": 4},
        }
    )


def test_an_answered_chat_row_is_a_chat_completion() -> None:
    # GIVEN an output row with a Converse answer
    row = {"custom_id": "req-1", "line": 1, "model": "claude-3-haiku", "model_output": converse_output()}
    # WHEN it becomes an output line
    kind, raw = output_line(row, endpoint=CHAT, batch_id="batch_1", created=1_700_000_000)
    line = json.loads(raw)
    # THEN it is an output line whose body is a valid chat.completion with the bot name, finish reason and usage
    assert kind == "output" and raw.endswith(b"\n") and line["error"] is None
    assert line["custom_id"] == "req-1" and line["id"].startswith("batch_req_")
    assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
    completion = ChatCompletion.model_validate(line["response"]["body"])
    assert completion.model == "claude-3-haiku" and completion.choices[0].message.content == "Hi there"
    assert completion.choices[0].finish_reason == "stop" and completion.created == 1_700_000_000
    assert completion.usage is not None and completion.usage.prompt_tokens == 14
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    # AND writing it twice gives the same bytes
    assert output_line(row, endpoint=CHAT, batch_id="batch_1", created=1_700_000_000)[1] == raw


def test_a_row_cut_by_max_tokens_finishes_with_length() -> None:
    row = {"custom_id": "a", "model": "m", "model_output": converse_output(stop="max_tokens")}
    body = json.loads(output_line(row, endpoint=CHAT, batch_id="b", created=0)[1])["response"]["body"]
    assert body["choices"][0]["finish_reason"] == "length"


def test_a_failed_row_is_an_error_line() -> None:
    # GIVEN a row the model refused
    row = {"custom_id": "req-2", "model": "m", "model_output": None, "error_code": "400", "error_message": "bad"}
    kind, raw = output_line(row, endpoint=CHAT, batch_id="batch_1", created=0)
    # THEN it is an error line with OpenAI's fields
    line = json.loads(raw)
    assert kind == "error"
    assert line == {
        "id": line["id"],
        "custom_id": "req-2",
        "response": None,
        "error": {"code": "400", "message": "bad"},
    }


def test_a_blocked_answer_is_an_error_line_as_the_synchronous_route_answers_it() -> None:
    row = {"custom_id": "a", "model": "m", "model_output": converse_output(stop="malformed_model_output")}
    kind, raw = output_line(row, endpoint=CHAT, batch_id="b", created=0)
    assert kind == "error" and json.loads(raw)["error"]["code"] == "malformed_model_output"


def test_an_embedding_row_is_an_embeddings_list() -> None:
    # GIVEN an output row of a Titan embedding record
    prepared = prepare(embed_line(input="hello"), endpoint=EMBEDDINGS)
    assert isinstance(prepared, PreparedLine)
    answer = invoke_titan_embed_v2(prepared.bot.model_id, prepared.model_input).output
    row = prepared.record() | {"model_input": json.dumps(prepared.model_input), "model_output": json.dumps(answer)}
    # WHEN it becomes an output line
    kind, raw = output_line(row, endpoint=EMBEDDINGS, batch_id="batch_2", created=0)
    # THEN the body is a valid embeddings list with the vector and the usage Titan reported
    body = json.loads(raw)["response"]["body"]
    response = CreateEmbeddingResponse.model_validate(body)
    assert kind == "output" and response.model == "titan-embed-v2"
    assert response.data[0].embedding == answer["embedding"]
    assert response.usage.prompt_tokens == answer["inputTextTokenCount"]


# ---------------------------------------------------------------- structured output (Bedrock's own)


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}


def test_structured_output_of_a_bot_with_bedrocks_own_goes_into_the_record() -> None:
    # GIVEN a json_schema response_format for a bot with Bedrock's structured output
    prepared = prepare(chat_line(model="claude-haiku-4.5", response_format=JSON_SCHEMA))
    # THEN the record carries outputConfig (batch jobs take it) and no toolConfig
    assert isinstance(prepared, PreparedLine)
    assert "toolConfig" not in prepared.model_input
    assert json.loads(prepared.model_input["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]) == SCHEMA


@pytest.mark.parametrize(("answer", "kind"), [('{"city": "Lyon"}', "output"), ('{"town": "Lyon"}', "error")])
def test_a_structured_answer_is_checked_against_the_records_schema(answer: str, kind: str) -> None:
    # GIVEN the record of a structured-output line and the model's answer
    prepared = prepare(chat_line(model="claude-haiku-4.5", response_format=JSON_SCHEMA))
    assert isinstance(prepared, PreparedLine)
    row = prepared.record() | {"model_input": json.dumps(prepared.model_input), "model_output": converse_output(answer)}
    # WHEN it becomes an output line
    written, raw = output_line(row, endpoint=CHAT, batch_id="b", created=0)
    # THEN an answer matching the schema is an output line, one breaking it the route's invalid_structured_output
    assert written == kind
    if kind == "error":
        assert json.loads(raw)["error"]["code"] == "invalid_structured_output"


def test_the_splitter_numbers_every_line_and_skips_blank_ones() -> None:
    # GIVEN a file with a blank line, a CRLF line and no final newline, cut into chunks mid-line
    data = b'{"a": 1}\n\n{"b": 2}\r\n{"c": 3}'
    splitter = LineSplitter()
    # WHEN it is fed chunk by chunk
    found = [line for chunk in (data[:5], data[5:14], data[14:]) for line in splitter.feed(chunk)] + splitter.end()
    # THEN each non-blank line comes once, whole, with the number an editor shows
    assert found == [(1, b'{"a": 1}'), (3, b'{"b": 2}'), (4, b'{"c": 3}')]


def test_tool_choice_none_and_a_past_tool_loop_need_no_tool_configuration() -> None:
    # GIVEN a line with tool_choice "none" whose history holds a tool call and its result, and no tools
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    prepared = prepare(chat_line(messages=messages, tool_choice="none"))
    # THEN it is prepared without toolConfig (the history goes as text), and the emulator answers the record
    assert isinstance(prepared, PreparedLine) and "toolConfig" not in prepared.model_input
    invoke_converse(prepared.bot.model_id, prepared.model_input)
