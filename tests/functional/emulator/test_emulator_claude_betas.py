"""The emulator's Converse is as strict as Bedrock about Claude's ``anthropic_beta`` (``local.emulator.claude_betas``),
read by boto3 over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from tests.functional.emulator.conftest import user

SONNET_45 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
EDITS = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}


def converse(runtime: BaseClient, model_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return runtime.converse(modelId=model_id, messages=[user("hi")], additionalModelRequestFields=fields)


def refused(runtime: BaseClient, model_id: str, fields: dict[str, Any]) -> str:
    with pytest.raises(ClientError) as error:
        converse(runtime, model_id, fields)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    return str(error.value.response["Error"]["Message"])


def test_a_beta_the_model_takes_is_answered(runtime: BaseClient) -> None:
    # GIVEN Claude Sonnet 4.5 and betas Bedrock lists for it WHEN asked THEN it answers
    answer = converse(
        runtime, SONNET_45, {"anthropic_beta": ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]}
    )
    assert answer["stopReason"] == "end_turn"


@pytest.mark.parametrize(
    ("model_id", "betas"),
    [
        (HAIKU_3, ["interleaved-thinking-2025-05-14"]),  # a Claude 4 beta on Claude 3 Haiku
        (SONNET_45, ["effort-2025-11-24"]),  # Opus 4.5's beta
        (SONNET_45, ["claude-code-20250219"]),  # Anthropic's API takes it; Bedrock lists it nowhere
        (SONNET_45, ["some-future-beta-2030-01-01"]),
        (SONNET_45, "interleaved-thinking-2025-05-14"),  # a string, not a list
        ("us.amazon.nova-pro-v1:0", ["interleaved-thinking-2025-05-14"]),  # not a Claude model
    ],
)
def test_a_beta_the_model_does_not_take_is_an_invalid_beta_flag(runtime: BaseClient, model_id: str, betas: Any) -> None:
    # GIVEN a beta Bedrock does not list for the model WHEN asked THEN Bedrock's ValidationException
    assert refused(runtime, model_id, {"anthropic_beta": betas}) == "invalid beta flag"


def test_context_management_needs_its_beta(runtime: BaseClient) -> None:
    # GIVEN context editing on Sonnet 4.5, without its beta and then with it
    message = refused(runtime, SONNET_45, {"context_management": EDITS})
    # THEN without the beta the field is unknown to the model; with it the model answers
    assert "context_management: Extra inputs are not permitted" in message
    answer = converse(
        runtime, SONNET_45, {"context_management": EDITS, "anthropic_beta": ["context-management-2025-06-27"]}
    )
    assert answer["stopReason"] == "end_turn"
