"""The smoke command's choices (cheapest allowed text model, cheapest priced text bot) and the one-line AWS setup
errors of ``cli.aws_errors``."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    UnauthorizedSSOTokenError,
)

from cli.aws_errors import NO_CREDENTIALS, NO_REGION, AwsSetupError, explain, names_model_access
from cli.smoke import SMOKE_INPUT_TOKENS, SMOKE_MAX_TOKENS, SMOKE_RECORDS, cheapest_text_bot, cheapest_text_model
from lambdas.gateway.config import parse_bots
from lambdas.shared.pricing import PriceTable


def prices(tmp_path: Path, models: dict[str, tuple[float, float]]) -> PriceTable:
    path = tmp_path / "prices.json"
    entries = ", ".join(f'"{m}": {{"input_per_1m": {i}, "output_per_1m": {o}}}' for m, (i, o) in models.items())
    path.write_text(f'{{"batch_discount": 0.5, "models": {{{entries}}}}}')
    return PriceTable.load(path)


def test_the_cheapest_text_model_is_computed_from_the_price_table(tmp_path: Path):
    # GIVEN three priced text models, an embedding model cheaper than all of them and a model without a price
    table = prices(
        tmp_path,
        {
            "anthropic.claude-3-haiku-20240307-v1:0": (0.25, 1.25),
            "amazon.nova-lite-v1:0": (0.06, 0.24),
            "meta.llama3-1-8b-instruct-v1:0": (0.22, 0.22),
            "amazon.titan-embed-text-v2:0": (0.02, 0.0),
        },
    )
    allowed = [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "mistral.mistral-small-2402-v1:0",
        "us.amazon.nova-lite-v1:0",
        "meta.llama3-1-8b-instruct-v1:0",
        "amazon.titan-embed-text-v2:0",
    ]
    # WHEN the smoke command picks its batch model
    model_id, cost = cheapest_text_model(allowed, table)
    # THEN it is the text model whose 100-record run costs least at batch prices (a profile id priced by its model)
    assert model_id == "us.amazon.nova-lite-v1:0"
    records = SMOKE_RECORDS
    assert cost == pytest.approx((records * SMOKE_INPUT_TOKENS * 0.03 + records * SMOKE_MAX_TOKENS * 0.12) / 1e6)


def test_a_price_change_changes_the_choice(tmp_path: Path):
    # GIVEN the same models, Llama now the cheapest
    table = prices(tmp_path, {"amazon.nova-lite-v1:0": (0.06, 0.24), "meta.llama3-1-8b-instruct-v1:0": (0.01, 0.01)})
    # WHEN the model is picked THEN the choice follows the table
    assert cheapest_text_model(["amazon.nova-lite-v1:0", "meta.llama3-1-8b-instruct-v1:0"], table)[0] == (
        "meta.llama3-1-8b-instruct-v1:0"
    )


def test_no_priced_text_model_is_a_clear_error(tmp_path: Path):
    # GIVEN only an embedding model and an unpriced text model
    table = prices(tmp_path, {"amazon.titan-embed-text-v2:0": (0.02, 0.0)})
    # WHEN the model is picked THEN the error says where to add a price or what to pass
    with pytest.raises(AwsSetupError, match=r"prices\.json.*--model-id"):
        cheapest_text_model(["amazon.titan-embed-text-v2:0", "amazon.nova-lite-v1:0"], table)


def test_the_cheapest_bot_is_a_priced_text_bot():
    # GIVEN a router without prices, an image bot with a low per-image price and two priced text bots
    bots = parse_bots(
        {
            "defaults": {"modality": "text"},
            "bots": {
                "router": {"model_id": "arn:aws:bedrock:us-east-1::default-prompt-router/anthropic.claude:1"},
                "titan-image": {
                    "model_id": "amazon.titan-image-generator-v2:0",
                    "modality": "image",
                    "image_format": "amazon",
                    "prices": {"per_image": 0.01},
                },
                "haiku": {
                    "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
                    "prices": {"input_per_1k": 0.00025, "output_per_1k": 0.00125},
                },
                "micro": {
                    "model_id": "us.amazon.nova-micro-v1:0",
                    "prices": {"input_per_1k": 0.000035, "output_per_1k": 0.00014},
                },
            },
        },
        "123456789012",
    )
    # WHEN the smoke command picks its bot THEN it is the cheaper text bot, priced per answer
    name, cost = cheapest_text_bot(bots)
    assert name == "micro"
    assert cost == pytest.approx((SMOKE_INPUT_TOKENS * 0.000035 + SMOKE_MAX_TOKENS * 0.00014) / 1000)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoCredentialsError(), NO_CREDENTIALS),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), NO_CREDENTIALS),
        (NoRegionError(), NO_REGION),
    ],
)
def test_missing_credentials_or_region_are_named_with_the_fix(error: Exception, expected: str):
    # GIVEN a botocore error of a missing setting WHEN explained THEN it is our line with the fix
    assert explain(error) == expected
    assert "\n" not in expected


@pytest.mark.parametrize(
    "code", ["ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"]
)
def test_expired_or_invalid_credentials_are_named_with_the_fix(code: str):
    # GIVEN a service's answer that the credentials are expired or unknown
    error = ClientError(
        {"Error": {"Code": code, "Message": "The security token included in the request is expired"}}, "X"
    )
    # WHEN explained THEN one line says so and how to refresh them
    line = explain(error)
    assert line is not None and "expired or invalid" in line and code in line and "aws sso login" in line


def test_an_expired_sso_session_is_named_with_the_fix():
    # GIVEN botocore's error for an expired SSO session WHEN explained THEN it says how to refresh
    line = explain(UnauthorizedSSOTokenError())
    assert line is not None and "aws sso login" in line


def test_other_errors_are_not_explained_away():
    # GIVEN an error that is no setup problem (a bug, or a service fault) WHEN explained THEN None: it is raised
    assert explain(ClientError({"Error": {"Code": "InternalServerException", "Message": "x"}}, "X")) is None
    assert explain(ValueError("x")) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AccessDeniedException: You don't have access to the model with the specified model ID.", True),
        ("Bedrock AccessDeniedException: You do not have access to the model", True),
        ("Model access is denied due to IAM user or service role is not authorized ...", True),
        ("ValidationException: Your account is not authorized to invoke this API operation.", True),
        ("ThrottlingException: Too many requests", False),
        (None, False),
    ],
)
def test_model_access_messages_are_recognised(text: str | None, expected: bool):
    # GIVEN an error text from Bedrock, a job or the gateway WHEN checked THEN only missing model access matches
    assert names_model_access(text) is expected
