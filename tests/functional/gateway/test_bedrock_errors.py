"""Every documented Bedrock runtime exception, injected by the emulator with its real HTTP status and wire format
(fault ``runtime_error=<Name>:<calls>``), as the Poe client library (fastapi_poe) and the openai SDK see it before
the answer starts. The table they follow: docs/bedrock-facts.md, "Runtime errors and how the gateway maps them"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import fastapi_poe as fp
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, openai_client, poe_messages

pytestmark = pytest.mark.anyio
ACCOUNT = "123456789012"  # the emulator's account, which an AccessDeniedException message names


@dataclass(frozen=True)
class Case:
    exception: str
    bot: str  # a text bot (ConverseStream); for exceptions Converse does not list, an image or video bot
    status: int  # the gateway's HTTP status on the OpenAI route
    retry: bool  # Poe allow_retry, x-should-retry
    retry_after: str | None  # Retry-After header
    says: str  # part of the message the user reads


CASES = [
    Case("ThrottlingException", "nova-lite", 429, True, "1", "retry in a moment"),
    Case("ServiceQuotaExceededException", "nova-canvas", 429, False, None, "'On-demand model inference tokens"),
    Case("ModelNotReadyException", "nova-lite", 503, True, "10", "not ready to serve requests yet"),
    Case("ModelTimeoutException", "nova-lite", 504, True, None, "shorten the conversation"),
    Case("ModelErrorException", "nova-lite", 502, True, None, "rephrase it if it fails again"),
    Case("InternalServerException", "nova-lite", 502, True, "1", "internal error"),
    Case("ServiceUnavailableException", "nova-lite", 503, True, "5", "unavailable right now"),
    Case("AccessDeniedException", "nova-lite", 502, False, None, "refused the gateway access to its model"),
    Case("ResourceNotFoundException", "nova-lite", 404, False, None, "must fix its model_id"),
    Case("ValidationException", "nova-lite", 400, False, None, "The request failed validation."),
    Case("ConflictException", "nova-reel", 409, False, None, "conflicts with an invocation in progress"),
]


@pytest.fixture
async def error_app(emulator: BedrockEmulator, settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    """The app with a media bucket named (media bots check one is configured; the fault strikes before S3)."""
    application = create_app(replace(settings, media_bucket="media-bucket-never-written"))
    async with application.router.lifespan_context(application):
        yield application


@pytest.mark.parametrize("case", CASES, ids=[case.exception for case in CASES])
async def test_the_poe_client_gets_each_bedrock_exception_with_its_retry_rule(
    error_app: FastAPI, emulator: BedrockEmulator, case: Case
) -> None:
    # GIVEN Bedrock answers the next calls with the exception (twice: fastapi_poe tries a retryable error again)
    emulator.state.faults["runtime_error"] = f"{case.exception}:2"
    # WHEN the Poe client library asks the bot
    with pytest.raises(fp.BotError) as raised:
        await poe_messages(error_app, case.bot, "a lighthouse at dusk")
    # THEN the error event allows a retry exactly when one can help, and says what the user can do
    assert isinstance(raised.value, fp.BotErrorNoRetry) is not case.retry
    assert case.exception in str(raised.value) and case.says in str(raised.value)
    assert ACCOUNT not in str(raised.value)


@pytest.mark.parametrize("case", CASES, ids=[case.exception for case in CASES])
async def test_the_openai_sdk_gets_each_bedrock_exception_as_its_status_with_retry_hints(
    error_app: FastAPI, emulator: BedrockEmulator, case: Case
) -> None:
    # GIVEN Bedrock answers the next call with the exception
    emulator.state.faults["runtime_error"] = f"{case.exception}:1"
    # WHEN the openai SDK asks the bot (streamed: the error comes before the stream starts)
    async with openai_client(error_app, KEY) as sdk:
        with pytest.raises(openai.APIStatusError) as raised:
            await sdk.chat.completions.create(
                model=case.bot, messages=[{"role": "user", "content": "a lighthouse at dusk"}], stream=True
            )
    # THEN the status, the retry hints and the message follow the mapping table
    response = raised.value.response
    assert response.status_code == case.status
    assert response.headers.get("retry-after") == case.retry_after
    assert response.headers["x-should-retry"] == ("true" if case.retry else "false")
    assert raised.value.code == case.exception and case.says in raised.value.message
    assert ACCOUNT not in response.text


async def test_the_operator_finds_the_denied_access_in_the_log(
    error_app: FastAPI, emulator: BedrockEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN Bedrock refuses the gateway's role access to the model
    emulator.state.faults["runtime_error"] = "AccessDeniedException:1"
    # WHEN a user asks
    async with openai_client(error_app, KEY) as sdk:
        with pytest.raises(openai.APIStatusError):
            await sdk.chat.completions.create(model="nova-lite", messages=[{"role": "user", "content": "hi"}])
    # THEN the log has Bedrock's full message (role, account) and the fix, which the user never saw
    logged = [vars(record) for record in caplog.records if "operator action needed" in record.getMessage()]
    assert len(logged) == 1 and f"arn:aws:sts::{ACCOUNT}" in str(logged[0]) and "Model access" in str(logged[0])
