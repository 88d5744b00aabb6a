"""OpenAI's chat completions request body, shared by ``POST /v1/chat/completions`` (``lambdas.gateway.app``) and the
batch input lines (``lambdas.gateway.batch_lines``): the same model, the same checks, the same ``ChatRequest``.

Pure: no I/O and no FastAPI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lambdas.gateway.errors import GatewayError
from lambdas.gateway.parameters import IMAGE_PARAMETERS
from lambdas.gateway.structured import parse_response_format
from lambdas.gateway.tools import ToolCall, ToolResult, content_text, parse_tool_calls, parse_tool_choice, parse_tools
from lambdas.gateway.translate import Attachment, ChatMessage, ChatRequest, Role, parse_thinking_blocks

# OpenAI extra body fields read as parameters (lambdas.gateway.parameters); ``n`` is the number of images.
OPENAI_PARAMETERS = (*IMAGE_PARAMETERS, "thinking_budget")
# OpenAI message roles (``tool`` aside) -> chat roles; ``developer`` is OpenAI's current name for the system role
OPENAI_ROLES: dict[str, Role] = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OpenAIMessage(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[Any] | None = None  # assistant: the calls it made
    tool_call_id: str | None = None  # tool: the call this message answers
    thinking_blocks: list[Any] | None = None  # assistant: its signed reasoning, as the answer gave it (LiteLLM's)
    refusal: str | None = None  # assistant: what it refused with; its text (openai_parameters.MESSAGE_FIELDS)

    def chat_message(self, index: int = 0) -> ChatMessage:
        """A tool message is a user message holding a tool result; ``developer`` (OpenAI's current name for the
        system role) and ``system`` messages are system instructions; any other role is a 400 naming it."""
        if self.role == "tool":
            if not self.tool_call_id:
                raise GatewayError(
                    400,
                    "A 'tool' message needs the 'tool_call_id' it answers.",
                    code="invalid_tools",
                    param=f"messages.{index}.tool_call_id",
                )
            return ChatMessage("user", "", tool_results=(ToolResult(self.tool_call_id, content_text(self.content)),))
        role = OPENAI_ROLES.get(self.role)
        if role is None:
            raise GatewayError(
                400,
                f"messages[{index}].role {self.role!r} is not supported: use one of {', '.join(OPENAI_ROLES)} or "
                "'tool' (the deprecated 'function' role: send 'tool' messages instead).",
                code="invalid_role",
                param=f"messages.{index}.role",
            )
        calls: tuple[ToolCall, ...] = parse_tool_calls(self.tool_calls) if role == "assistant" else ()
        thinking = parse_thinking_blocks(self.thinking_blocks) if role == "assistant" else ()
        return ChatMessage(role, self.text(), self.attachments(), tool_calls=calls, thinking=thinking)

    def text(self) -> str:
        """The text parts (and an assistant's refusal parts and ``refusal``: what it said), one per line."""
        parts = self.content if isinstance(self.content, list) else [{"type": "text", "text": self.content or ""}]
        texts = [str(part.get(part["type"]) or "") for part in parts if part.get("type") in ("text", "refusal")]
        if self.refusal and self.role == "assistant":
            texts.append(self.refusal)
        return "\n".join(text for text in texts if text)

    def attachments(self) -> tuple[Attachment, ...]:
        """``image_url`` parts ({"url": data: or http(s) URL}) and ``file`` parts ({"file_data": data: URL})."""
        files: list[Attachment] = []
        for index, part in enumerate(self.content if isinstance(self.content, list) else []):
            kind = part.get("type")
            if kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str) or not url:
                    raise GatewayError(400, f"content[{index}].image_url needs a 'url'.", code="invalid_content")
                files.append(Attachment(url=url, name=f"image{index}"))
            elif kind == "file":
                given = part.get("file")
                file: dict[str, Any] = given if isinstance(given, dict) else {}
                data = file.get("file_data")
                if not isinstance(data, str) or not data:
                    raise GatewayError(
                        400, f"content[{index}].file needs 'file_data' (a data: URL).", code="invalid_content"
                    )
                url = data if data.startswith("data:") else f"data:application/octet-stream;base64,{data}"
                files.append(Attachment(url=url, name=str(file.get("filename") or f"file{index}")))
            elif kind not in ("text", "refusal", None):
                raise GatewayError(400, f"Content parts of type '{kind}' are not supported.", code="invalid_content")
        return tuple(files)


class StreamOptions(_Body):
    include_usage: bool = False


class OpenAIChatRequest(_Body):
    model_config = ConfigDict(extra="allow")  # extra body fields: OPENAI_PARAMETERS are read, the rest ignored

    model: str
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool | None = None  # null: not streamed, as in OpenAI's specification
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)  # image bots: the number of images
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning_effort: str | None = None  # reasoning bots: a thinking budget (lambdas.gateway.parameters)
    response_format: dict[str, Any] | None = None  # structured output (lambdas.gateway.structured)
    user: str | None = None  # logged as the request's end user, with safety_identifier
    safety_identifier: str | None = None

    def chat(self) -> ChatRequest:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        messages = tuple(message.chat_message(index) for index, message in enumerate(self.messages))
        tools = parse_tools(self.tools)
        extra = self.model_extra or {}
        parameters = {name: extra[name] for name in OPENAI_PARAMETERS if name in extra}
        if self.n is not None:
            parameters["number_of_images"] = self.n
        return ChatRequest(
            messages=messages,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop_sequences=tuple(stops),
            parameters=parameters,
            reasoning_effort=self.reasoning_effort,
            tools=tools,
            tool_choice=parse_tool_choice(self.tool_choice, tools),
            response_format=parse_response_format(self.response_format),
        )
