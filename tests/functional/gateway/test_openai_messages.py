"""The fields of an OpenAI chat message and the types of its content parts (issue 12, item 6 at message level): each
is honoured or refused with a 400 whose ``param`` is its path; none is dropped in silence."""

from __future__ import annotations

import base64
from typing import Any, get_args, get_type_hints

import httpx
import openai
import pytest
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionContentPartParam,
    ChatCompletionContentPartRefusalParam,
    ChatCompletionDeveloperMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
)

from lambdas.gateway import openai_parameters
from lambdas.gateway.openai_chat import OpenAIMessage
from tests import openai_schema
from tests.functional.gateway.conftest import KEY

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
AUDIO = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(), "format": "wav"}}


async def post(client: httpx.AsyncClient, messages: list[dict[str, Any]], model: str = "nova-lite") -> httpx.Response:
    return await client.post("/v1/chat/completions", json={"model": model, "messages": messages}, headers=AUTH)


def refused_param(response: httpx.Response) -> str | None:
    assert response.status_code == 400, response.text
    return openai_schema.check_error(response.json()).param


def test_every_message_field_and_part_type_of_the_openai_package_has_a_rule() -> None:
    # GIVEN the message and content part types of the pinned openai package
    messages = (
        ChatCompletionSystemMessageParam,
        ChatCompletionDeveloperMessageParam,
        ChatCompletionUserMessageParam,
        ChatCompletionAssistantMessageParam,
        ChatCompletionToolMessageParam,
    )
    fields = {name for kind in messages for name in kind.__annotations__}
    part_types = [*get_args(ChatCompletionContentPartParam), ChatCompletionContentPartRefusalParam]
    parts = {get_args(get_type_hints(kind)["type"])[0] for kind in part_types}
    # WHEN they are looked up in the gateway's message rules
    ruled = openai_parameters.MESSAGE_FIELDS | set(openai_parameters.MESSAGE_REFUSED)
    # THEN each is honoured or refused (a newer SDK's new field fails here until it gets a rule)
    assert fields - ruled == set()
    assert parts - (openai_parameters.PART_TYPES | set(openai_parameters.PART_REFUSED)) == set()


@pytest.mark.parametrize("role", ["user", "system", "developer", "assistant"])
async def test_a_message_name_is_a_400_naming_it(client: httpx.AsyncClient, role: str) -> None:
    # GIVEN a message with a participant name (Converse messages have none)
    messages = [{"role": role, "content": "I am Ann", "name": "ann"}, {"role": "user", "content": "hi"}]
    # WHEN it is sent THEN it is a 400 naming the message's name and saying why
    response = await post(client, messages)
    assert refused_param(response) == "messages.0.name"
    assert "no participant name" in response.json()["error"]["message"]


async def test_a_null_name_asks_for_nothing_and_passes(client: httpx.AsyncClient) -> None:
    # GIVEN a message whose name is null (as SDKs dump unset fields) WHEN it is sent THEN it is answered
    response = await post(client, [{"role": "user", "content": "hi", "name": None}])
    assert response.status_code == 200, response.text


async def test_an_audio_part_is_a_400_naming_the_part(client: httpx.AsyncClient) -> None:
    # GIVEN a user message with an input_audio part
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is said?"}, AUDIO]}]
    # WHEN it is sent THEN it is a 400 naming the part and saying no bot reads audio
    response = await post(client, messages, model="claude-3-haiku")
    assert refused_param(response) == "messages.0.content.1"
    assert "reads audio" in response.json()["error"]["message"]


async def test_a_file_part_with_its_data_is_honoured(client: httpx.AsyncClient) -> None:
    # GIVEN a file part carrying a PDF (file_data) to a bot that reads documents
    part = {"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Summarise it"}, part]}]
    # WHEN it is sent THEN it is answered
    response = await post(client, messages, model="nova-lite")
    assert response.status_code == 200, response.text


async def test_a_file_part_by_id_is_a_400_naming_the_id(client: httpx.AsyncClient) -> None:
    # GIVEN a file part that names an uploaded file instead of carrying its data
    messages = [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc123"}}]}]
    # WHEN it is sent THEN it is a 400 naming the file id
    response = await post(client, messages)
    assert refused_param(response) == "messages.0.content.0.file.file_id"


async def test_an_assistant_refusal_is_honoured_as_what_it_said(client: httpx.AsyncClient) -> None:
    # GIVEN a conversation whose assistant turn was a refusal (the message field, and a refusal part)
    for assistant in (
        {"role": "assistant", "content": None, "refusal": "I cannot help with that."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot help with that."}]},
    ):
        messages = [{"role": "user", "content": "Do it"}, assistant, {"role": "user", "content": "Then say hi"}]
        # WHEN it goes on THEN it is answered
        response = await post(client, messages)
        assert response.status_code == 200, response.text


def test_the_refusal_is_the_assistant_turn_text() -> None:
    # GIVEN an assistant message with a refusal, as a field and as a part
    field = OpenAIMessage.model_validate({"role": "assistant", "content": None, "refusal": "No."})
    part = OpenAIMessage.model_validate({"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]})
    # WHEN they are translated THEN the refusal is the turn's text, as the assistant said it
    assert field.chat_message().text == "No." and part.chat_message().text == "No."


async def test_a_refusal_part_outside_an_assistant_message_is_a_400(client: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": [{"type": "refusal", "refusal": "No."}]}]
    assert refused_param(await post(client, messages)) == "messages.0.content.0"


@pytest.mark.parametrize(
    ("field", "value"),
    [("function_call", {"name": "get_weather", "arguments": "{}"}), ("audio", {"id": "audio_abc"})],
)
async def test_an_assistant_function_call_or_audio_is_a_400_naming_it(
    client: httpx.AsyncClient, field: str, value: dict[str, Any]
) -> None:
    # GIVEN an assistant message with the deprecated function_call, or an earlier audio answer
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y", field: value},
    ]
    messages.append({"role": "user", "content": "z"})
    # WHEN it is sent THEN it is a 400 naming the field
    assert refused_param(await post(client, messages)) == f"messages.1.{field}"


async def test_an_unknown_message_field_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    # GIVEN a message with a field no contract has (a typo) WHEN it is sent THEN it is a 400 naming it
    response = await post(client, [{"role": "user", "content": "hi", "contnet": "x"}])
    assert refused_param(response) == "messages.0.contnet"


async def test_an_answer_sent_back_as_the_sdk_dumps_it_is_accepted(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN an answer of the gateway, dumped whole by the openai SDK (null fields included) into the next request
    messages: list[Any] = [{"role": "user", "content": "Say hi"}]
    first = await sdk.chat.completions.create(model="nova-lite", messages=messages)
    messages += [first.choices[0].message.model_dump(), {"role": "user", "content": "Again"}]
    # WHEN the conversation goes on THEN it is answered (refusal, audio, function_call, annotations: null pass)
    second = await sdk.chat.completions.create(model="nova-lite", messages=messages)
    assert second.choices[0].message.content == "Again"
