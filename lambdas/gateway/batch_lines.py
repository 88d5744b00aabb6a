"""OpenAI Batch API lines <-> Bedrock batch records: pure, no I/O.

``prepare_line`` checks one line of a batch input file (``{"custom_id", "method", "url", "body"}``) with the same
machinery as the synchronous routes (the request models of ``lambdas.gateway.openai_chat`` and
``lambdas.gateway.embeddings``, the parameter checks of ``lambdas.gateway.openai_parameters`` and
``lambdas.gateway.parameters``, the Converse translation of ``lambdas.gateway.translate``) and turns it into the
prepared record the orchestrator runs: ``{"custom_id", "line", "model", "bedrock_model_id", "model_input"}`` where
``model_input`` is the record's ``modelInput`` (a Converse request body for a chat line, the embedding family's
InvokeModel body for an embeddings line). A line it cannot take is a ``LineError`` with OpenAI's batch error fields
(``code``, ``line``, ``message``, ``param``); the message names the line, the problem and the fix.

``output_line`` turns one row of the run's output Parquet back into a line of the OpenAI output file (``response``
with a ``chat.completion`` or an embeddings ``list`` as the synchronous route answers it) or of the error file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from lambdas.gateway import openai_parameters
from lambdas.gateway.attachments import Fetcher, read_attachments
from lambdas.gateway.bodies import MAX_JSON_DEPTH, too_deep
from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.embeddings import (
    CHARS_PER_TOKEN,
    OpenAIEmbeddingRequest,
    check_texts,
    embedding_settings,
    encode_base64,
)
from lambdas.gateway.error_shapes import invalid_body
from lambdas.gateway.errors import GatewayError, stop_outcome
from lambdas.gateway.openai_chat import OpenAIChatRequest
from lambdas.gateway.parameters import apply_text_parameters
from lambdas.gateway.response_format import ResponseFormat
from lambdas.gateway.structured import check_answer
from lambdas.gateway.structured import prepare as prepare_response_format
from lambdas.gateway.tokens import TokenCount, check_context
from lambdas.gateway.translate import ChatRequest, Usage, converse_request
from lambdas.shared.model_families import batch_model_problem, embedding_adapter_of

CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"
ENDPOINTS: dict[str, str] = {CHAT: "text", EMBEDDINGS: "embedding"}  # batch endpoint -> the bots' modality
MAX_LINES = 50_000  # OpenAI's limit of requests per batch input file
# The largest ``modelInput`` one record may carry: Bedrock documents no per-record size for batch jobs; we take the
# largest body its runtime accepts (botocore bedrock-runtime shape ``Body``: max 25,000,000 bytes).
MAX_RECORD_BYTES = 25_000_000


# The largest attachment one line may inline (as the synchronous route: GATEWAY_ATTACHMENT_MAX_BYTES, whose default
# follows Converse's document and image limits); a line's record is also bounded by MAX_RECORD_BYTES.
DEFAULT_ATTACHMENT_BYTES = GatewaySettings.attachment_max_bytes


def _record_json(value: Any) -> Any:
    """``json.dumps``' ``default``: the bytes of an image or document block as base64 text, as the Converse request
    body carries a blob (Bedrock API reference, ``ImageSource.bytes``: "Base64-encoded binary data object"), which a
    Converse batch record is (the on-demand runner decodes them back for the SDK: ``lambdas.on_demand.logic``)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def record_bytes(model_input: Mapping[str, Any]) -> bytes:
    """A record's ``modelInput`` as the JSON it is written as (blobs in base64)."""
    return json.dumps(model_input, ensure_ascii=False, separators=(",", ":"), default=_record_json).encode()


class InlineAttachments(Fetcher):
    """The synchronous route's attachment fetcher for batch lines: ``data:`` URLs decoded, nothing fetched (a batch
    is validated before it runs, not by downloading files; ``_chat_input`` refuses other URLs first)."""

    async def fetch(self, url: str, name: str) -> tuple[bytes, str]:
        if not url.startswith("data:"):
            raise AssertionError(f"batch lines fetch nothing, got a URL for '{name}'")  # _chat_input refused it
        return await super().fetch(url, name)


def _without_io(coroutine: Coroutine[Any, Any, ChatRequest]) -> ChatRequest:
    """The result of a coroutine that never waits (``read_attachments`` with ``InlineAttachments``: only ``data:``
    URLs, decoded in place), so that the synchronous route's code runs here without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("reading a batch line's attachments waited for I/O")


@dataclass(frozen=True)
class LineError:
    """One refused input line, as OpenAI's ``BatchError`` (``errors.data[]`` of a failed batch)."""

    code: str
    line: int
    message: str
    param: str | None = None

    def openai(self) -> dict[str, Any]:
        return {"code": self.code, "line": self.line, "message": self.message, "param": self.param}


@dataclass(frozen=True)
class PreparedLine:
    """One accepted line: the prepared record (contract: ``custom_id``, ``line``, ``model``, ``model_input``; every
    other key comes back as an input column of the output) and the bot it runs on."""

    custom_id: str
    line: int
    bot: BotConfig
    model_input: dict[str, Any]
    encoding_format: str | None = None  # embeddings lines: "float" or "base64", as the output must answer

    def record(self) -> dict[str, Any]:
        record = {
            "custom_id": self.custom_id,
            "line": self.line,
            "model": self.bot.name,
            "bedrock_model_id": self.bot.model_id,  # output_line reads the embedding family from it
            "model_input": self.model_input,
        }
        if self.encoding_format is not None:
            record["encoding_format"] = self.encoding_format
        return record

    def jsonl(self) -> bytes:
        """The prepared line; image and document bytes in base64 (``_record_json``)."""
        return record_bytes(self.record()) + b"\n"


@dataclass(frozen=True)
class BotLookup:
    """The bots a batch's key sees: ``configs`` by name, and ``may_use(name)``: whether the key may use that name
    (a team key: its bot list, whether the bot exists or not; a Secrets Manager key: the bot's own key)."""

    configs: Mapping[str, BotConfig]
    may_use: Callable[[str], bool] = field(default=lambda _: True)


class LineSplitter:
    """A JSONL file's lines from its bytes in any chunks (e.g. streamed from S3): ``feed`` each chunk, then ``end``;
    each gives ``(number, raw)`` for the non-blank lines completed so far, ``number`` counting every line from 1 (so
    a line error names the line an editor shows). A final line without a newline counts."""

    def __init__(self) -> None:
        self._rest = b""
        self._number = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        *complete, self._rest = (self._rest + chunk).split(b"\n")
        return self._numbered(complete)

    def end(self) -> list[tuple[int, bytes]]:
        rest, self._rest = self._rest, b""
        return self._numbered([rest]) if rest else []

    def _numbered(self, lines: list[bytes]) -> list[tuple[int, bytes]]:
        found = []
        for raw in lines:
            self._number += 1
            if raw.strip():
                found.append((self._number, raw.rstrip(b"\r")))
        return found


def _error(number: int, code: str, problem: str, fix: str, param: str | None = None) -> LineError:
    return LineError(code=code, line=number, message=f"Line {number}: {problem} {fix}", param=param)


def from_gateway(number: int, error: GatewayError, param_prefix: str = "body") -> LineError:
    """A synchronous route's 400 as the line's error: same code and message, the parameter under ``body``."""
    param = f"{param_prefix}.{error.param}" if error.param else param_prefix
    text = error.message.rstrip()
    text += "" if text.endswith((".", "!", "?")) else "."
    message = f"Line {number}: {text} Fix the line and upload the file again."
    return LineError(code=error.code or "invalid_request", line=number, message=message, param=param)


def context_error(line: PreparedLine, count: TokenCount) -> LineError | None:
    """The synchronous route's context check (``tokens.check_context``) of a chat line whose record counts ``count``
    tokens (``tokens.count_input_tokens``, as the route counts it): its ``context_length_exceeded`` as the line's
    error, or None when the prompt fits the bot's ``context_tokens``."""
    try:
        check_context(line.bot, count)
    except GatewayError as error:
        return from_gateway(line.line, error, "body.messages")
    return None


def prepare_line(
    raw: bytes,
    number: int,
    *,
    endpoint: str,
    bots: BotLookup,
    seen: set[str],
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_BYTES,
) -> PreparedLine | LineError:
    """One input line (``number`` counts from 1) checked and converted; ``seen`` collects the file's custom ids;
    ``attachment_max_bytes``: the largest inline attachment (the gateway's ``attachment_max_bytes``)."""
    if number > MAX_LINES:
        return _error(
            number,
            "too_many_lines",
            f"the file has more than {MAX_LINES:,} requests, the most one batch takes.",
            "Split it into several batches.",
        )
    if endpoint not in ENDPOINTS:
        return _error(
            number,
            "invalid_endpoint",
            f"the batch's endpoint {endpoint[:80]!r} is not one the gateway runs in batch.",
            f"Create the batch with one of {', '.join(ENDPOINTS)}.",
            "endpoint",
        )
    parsed = _parse(raw, number)
    if isinstance(parsed, LineError):
        return parsed
    custom_id = parsed.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _error(
            number,
            "missing_custom_id",
            "'custom_id' is missing or not a non-empty string.",
            "Give each line a unique 'custom_id' string: it is how you find the line's answer in the output file.",
            "custom_id",
        )
    if custom_id in seen:
        return _error(
            number,
            "duplicate_custom_id",
            f"'custom_id' {custom_id[:80]!r} is used by an earlier line.",
            "Give each line its own 'custom_id'.",
            "custom_id",
        )
    seen.add(custom_id)
    method = parsed.get("method")
    if method != "POST":
        return _error(
            number, "invalid_method", f"'method' is {str(method)[:20]!r}.", "Every batch line is a 'POST'.", "method"
        )
    url = parsed.get("url")
    if url != endpoint:
        known = url in ENDPOINTS
        return _error(
            number,
            "mismatched_url" if known else "invalid_url",
            f"'url' is {str(url)[:80]!r}, but this batch runs {endpoint}"
            + ("." if known else f" (the gateway runs {', '.join(ENDPOINTS)} in batch)."),
            f"Set 'url' to {endpoint!r}, or put the line in a batch for its endpoint.",
            "url",
        )
    body = parsed.get("body")
    if not isinstance(body, dict):
        return _error(
            number, "invalid_body", "'body' is not a JSON object.", "Send the request body as an object.", "body"
        )
    bot = _bot(body, number, endpoint, bots)
    if isinstance(bot, LineError):
        return bot
    encoding = None
    try:
        if endpoint == CHAT:
            model_input = _chat_input(body, bot, number, attachment_max_bytes)
        else:
            model_input = _embedding_input(body, bot, number)
            encoding = OpenAIEmbeddingRequest.model_validate(body).encoding_format
    except GatewayError as error:
        return from_gateway(number, error)
    except ValidationError as error:
        return from_gateway(number, invalid_body(error.errors()))
    if isinstance(model_input, LineError):
        return model_input
    size = len(record_bytes(model_input))
    if size > MAX_RECORD_BYTES:
        return _error(
            number,
            "record_too_large",
            f"the request becomes a Bedrock record of {size:,} bytes, over the {MAX_RECORD_BYTES:,} bytes one record "
            "may carry.",
            "Shorten its messages or input.",
            "body",
        )
    return PreparedLine(custom_id, number, bot, model_input, encoding)


def _parse(raw: bytes, number: int) -> dict[str, Any] | LineError:
    fix = "Each line must be one JSON object {custom_id, method, url, body}."
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _error(number, "invalid_json_line", "the line is not valid UTF-8.", fix)
    if too_deep(raw):
        return _error(number, "invalid_json_line", f"the JSON nests over {MAX_JSON_DEPTH} levels.", fix)
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return _error(number, "invalid_json_line", "the line is not valid JSON.", fix)
    if not isinstance(parsed, dict):
        return _error(number, "invalid_json_line", "the line is not a JSON object.", fix)
    return parsed


def _bot(body: Mapping[str, Any], number: int, endpoint: str, bots: BotLookup) -> BotConfig | LineError:
    """The line's bot: one the key may use (refused alike whether it exists or not), of the endpoint's modality."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        return _error(
            number, "missing_model", "'body.model' is missing.", "Name the bot to ask (GET /v1/models).", "body.model"
        )
    shown = name[:64]
    if not bots.may_use(name):
        return _error(
            number,
            "model_not_allowed",
            f"this key may not use the model {shown!r}.",
            "Use a bot listed by GET /v1/models for this key, or ask the gateway's operator for access.",
            "body.model",
        )
    bot = bots.configs.get(name)
    if bot is None:
        return _error(
            number,
            "model_not_found",
            f"the model {shown!r} does not exist.",
            "Use a bot listed by GET /v1/models.",
            "body.model",
        )
    modality = ENDPOINTS[endpoint]
    if bot.modality != modality:
        return _error(
            number,
            "wrong_endpoint",
            f"'{name}' is a {bot.modality} model; {endpoint} takes {modality} models.",
            "Use a bot of that kind (GET /v1/models shows each bot's modality).",
            "body.model",
        )
    if bot.is_router or batch_model_problem(bot.model_id):
        why = (
            "a prompt router picks a model per request, and a batch job runs one model"
            if bot.is_router
            else (f"its model {bot.model_id} does not run Bedrock batch inference jobs")
        )
        return _error(
            number,
            "model_not_batchable",
            f"bot '{name}' cannot run in batch: {why}.",
            "Use another bot, or ask it through the synchronous route.",
            "body.model",
        )
    if bot.guardrail is not None:
        return _error(
            number,
            "guardrail_not_supported",
            f"bot '{name}' answers through a Bedrock guardrail, which a batch record cannot apply.",
            "Ask it through the synchronous route, or use a bot without a guardrail.",
            "body.model",
        )
    return bot


def _chat_input(
    body: dict[str, Any], bot: BotConfig, number: int, attachment_max_bytes: int = DEFAULT_ATTACHMENT_BYTES
) -> dict[str, Any] | LineError:
    """The Converse request body of a chat line: the synchronous route's checks and translation (attachments
    included: ``attachments.read_attachments``), without what a batch record cannot carry (streaming, tools,
    attachments that need fetching, structured output through a tool)."""
    if body.get("stream"):
        return _error(
            number,
            "stream_not_supported",
            "'body.stream' is true: a batch answers in its output file, never as a stream.",
            "Remove 'stream' or set it to false.",
            "body.stream",
        )
    if body.get("tools"):
        return _error(
            number,
            "tools_not_supported",
            "'body.tools' is set, but Bedrock batch jobs of the Converse type take no tool configuration.",
            "Remove 'tools' and 'tool_choice' (ask with tools through the synchronous route).",
            "body.tools",
        )
    request = OpenAIChatRequest.model_validate(body)
    openai_parameters.check(body, bot.modality, bot.name)
    chat = request.chat()
    for index, message in enumerate(chat.messages):
        remote = next((a for a in message.attachments if not a.url.startswith("data:")), None)
        if remote is not None:
            return _error(
                number,
                "attachments_not_supported",
                f"message {index}'s attachment '{remote.name}' is a URL ({remote.url[:60]!r}), which a batch does not "
                "download.",
                "Inline the file as a base64 data: URL (data:<media type>;base64,<data>), or ask through the "
                "synchronous route.",
                f"body.messages[{index}]",
            )
    chat = apply_text_parameters(bot, prepare_response_format(bot, chat))
    chat = _without_io(read_attachments(bot, chat, InlineAttachments(attachment_max_bytes, timeout=0)))
    converse = converse_request(bot, chat)
    if "toolConfig" in converse:  # the bot gives the response_format through a forced tool call
        return _error(
            number,
            "tools_not_supported",
            f"bot '{bot.name}' gives this structured output through a forced tool call, which Bedrock batch jobs of "
            "the Converse type cannot make.",
            "Remove 'response_format', or use a bot with Bedrock's structured output (capabilities.structured_output).",
            "body.response_format",
        )
    converse.pop("modelId")  # the job names the model
    return converse


def _embedding_input(body: dict[str, Any], bot: BotConfig, number: int) -> dict[str, Any] | LineError:
    """The embedding family's InvokeModel body of an embeddings line (one record: the texts one call takes)."""
    adapter = embedding_adapter_of(bot.model_id)
    assert adapter is not None  # BotConfig checks that an embedding bot's model is one
    request = OpenAIEmbeddingRequest.model_validate(body)
    texts = request.texts()
    check_texts(bot, adapter, texts)
    if len(texts) > adapter.texts_per_call:
        return _error(
            number,
            "too_many_inputs",
            f"'body.input' has {len(texts)} texts; one batch line of {adapter.title} embeds at most "
            f"{adapter.texts_per_call}.",
            f"Split it into lines of at most {adapter.texts_per_call} text(s).",
            "body.input",
        )
    settings = embedding_settings(bot, adapter, request.dimensions)
    try:
        return adapter.build_texts_input(list(texts), settings)
    except ValueError as error:
        return _error(number, "invalid_input", f"{error}.", "Send one text per line.", "body.input")


# ---------------------------------------------------------------- output lines


def _hex(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _json(value: Any) -> Any:
    """A column holding JSON: a string (as the run writes it) or already parsed."""
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def output_line(
    row: Mapping[str, Any], *, endpoint: str, batch_id: str, created: int | None = None
) -> tuple[Literal["output", "error"], bytes]:
    """One output Parquet row as a line of the OpenAI output file or of the error file (``created``: the unix time
    the answers carry, e.g. the run's end, so writing the files twice gives the same bytes)."""
    custom_id = str(row.get("custom_id") or "")
    line_id = f"batch_req_{_hex(batch_id, custom_id)}"
    when = int(time.time()) if created is None else created
    model_output = _json(row.get("model_output"))
    code, message = row.get("error_code"), row.get("error_message")
    body: dict[str, Any] | None = None
    if code in (None, "") and isinstance(model_output, dict):
        try:
            if endpoint == CHAT:
                completion_id = f"chatcmpl-{_hex(batch_id, custom_id, 'c')}"
                completion = chat_completion(model_output, str(row.get("model") or ""), completion_id, when)
                check_structured(_json(row.get("model_input")), completion, model_output.get("stopReason"))
                body = completion
            else:
                body = embedding_list(model_output, row)
        except GatewayError as error:
            code, message = error.code or "invalid_output", error.message
        except ValueError as error:
            code, message = "invalid_output", f"The model's output could not be read: {error}"
    if body is None:
        if code in (None, ""):
            code, message = "missing_output", message or "The run wrote no output for this request; submit it again."
        failure = {"code": str(code), "message": str(message or "")}
        return "error", _dump({"id": line_id, "custom_id": custom_id, "response": None, "error": failure})
    response = {"status_code": 200, "request_id": f"req_{_hex(batch_id, custom_id, 'r')}", "body": body}
    return "output", _dump({"id": line_id, "custom_id": custom_id, "response": response, "error": None})


def _dump(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def chat_completion(output: Mapping[str, Any], model: str, completion_id: str, created: int) -> dict[str, Any]:
    """A Converse response (a record's ``modelOutput``) as the ``chat.completion`` the synchronous route answers:
    text, reasoning, finish_reason from ``stopReason`` (``errors.stop_outcome``), usage with cached tokens. A stop
    reason the route answers as an error (a blocked or malformed answer) raises that error."""
    message_out = (output.get("output") or {}).get("message")
    if not isinstance(message_out, Mapping) or not isinstance(message_out.get("content"), list):
        raise ValueError("modelOutput has no 'output.message.content' list")
    text: list[str] = []
    reasoning: list[str] = []
    for block in message_out["content"]:
        if not isinstance(block, Mapping):
            continue
        if isinstance(block.get("text"), str):
            text.append(block["text"])
        signed = (block.get("reasoningContent") or {}).get("reasoningText") or {}
        if isinstance(signed.get("text"), str):
            reasoning.append(signed["text"])
    outcome = stop_outcome(output.get("stopReason"))
    if outcome.openai_error is not None:
        raise outcome.openai_error
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text), "refusal": None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": outcome.finish_reason, "logprobs": None}],
        "usage": Usage.from_converse(output.get("usage")).openai(),
    }


def requested_format(model_input: Any) -> ResponseFormat | None:
    """The structured output a record asked Bedrock for (Converse ``outputConfig``, as ``ResponseFormat.output_config``
    writes it), or None."""
    text_format = (
        ((model_input or {}).get("outputConfig") or {}).get("textFormat") if isinstance(model_input, dict) else None
    )
    definition = ((text_format or {}).get("structure") or {}).get("jsonSchema")
    if not isinstance(definition, Mapping) or not isinstance(definition.get("schema"), str):
        return None
    schema = json.loads(definition["schema"])
    return ResponseFormat("json_schema", str(definition.get("name") or ""), schema, via="native")


def check_structured(model_input: Any, completion: Mapping[str, Any], stop_reason: Any) -> None:
    """The synchronous route's check of a structured-output answer (``structured.check_answer``): an answer that is
    not JSON matching the record's schema raises its 502 ``invalid_structured_output``."""
    fmt = requested_format(model_input)
    if fmt is not None:
        content = completion["choices"][0]["message"]["content"]
        check_answer(fmt, content or "", stop_reason if isinstance(stop_reason, str) else None)


def embedding_list(output: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """An embedding family's InvokeModel answer (a record's ``modelOutput``) as the embeddings ``list`` the
    synchronous route answers, vectors read by the family's adapter."""
    model_id = str(row.get("bedrock_model_id") or "")
    adapter = embedding_adapter_of(model_id)
    if adapter is None:
        raise ValueError(f"the record's model {model_id[:80]!r} is no embedding model of the registry")
    vectors = adapter.parse_vectors(dict(output))
    base64 = row.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "index": index, "embedding": encode_base64(vector) if base64 else vector}
        for index, vector in enumerate(vectors)
    ]
    counted = output.get("inputTextTokenCount")
    if isinstance(counted, int) and not isinstance(counted, bool) and counted >= 0:
        tokens = counted
    else:  # the estimate of the synchronous route when the model reports no count
        model_input = _json(row.get("model_input")) or {}
        texts = [model_input.get("inputText")] if isinstance(model_input, Mapping) else []
        texts += list(model_input.get("texts") or []) if isinstance(model_input, Mapping) else []
        tokens = sum(-(-len(text) // CHARS_PER_TOKEN) for text in texts if isinstance(text, str))
    return {
        "object": "list",
        "data": data,
        "model": str(row.get("model") or ""),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
