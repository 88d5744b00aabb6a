"""Team keys end to end: ``python -m cli gateway`` (uvicorn, emulator, moto DynamoDB) over real HTTP, keys made with
``python -m cli keys``, used by the official openai and fastapi_poe clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import boto3
import fastapi_poe as fp
import httpx
import openai
import pytest

from cli.__main__ import main
from cli.gateway import RunningGateway, local_gateway, poe_query
from local.key_table import moto_server
from tests.poe_client import poe_responses, poe_responses_until_error

pytestmark = pytest.mark.slow
BOT = "claude-3-haiku"
OTHER_BOT = "nova-micro"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with local_gateway(0, access_key="e2e-key-0123456789abcdef0123456", admin_key="e2e-admin-0123456789abcdef") as gw:
        yield gw


def cli_keys(gateway: RunningGateway, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()  # what came before (the Poe client prints its failed tries)
    code = main(["keys", *args, "--url", gateway.url, "--admin-key", gateway.admin_key])
    return code, capsys.readouterr().out


def poe_refusal(gateway: RunningGateway, key: str, bot: str) -> httpx.Response:
    """The Poe client gets nothing but an error for ``bot`` (fastapi_poe does not show an error status's body), and
    the same query over plain HTTP gets the gateway's refusal (returned)."""
    messages = [fp.ProtocolMessage(role="user", content="hello team")]
    received, error = asyncio.run(poe_responses_until_error(f"{gateway.url}/poe/", bot, messages, api_key=key))
    assert error is not None and not [m for m in received if isinstance(m, fp.PartialResponse) and m.text]
    query = poe_query("hello team")
    return httpx.post(f"{gateway.url}/poe/{bot}", json=query, headers={"Authorization": f"Bearer {key}"})


def test_a_key_limited_to_one_bot_and_a_tiny_budget_is_refused_after_spending_it(
    gateway: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an admin who creates, with the CLI, a team key for one bot with a tiny budget and another for every bot
    code, out = cli_keys(gateway, capsys, "create", "team-tiny", "--bots", BOT, "--budget", "0.000001")
    assert code == 0
    tiny = json.loads(out)["key"]
    code, out = cli_keys(gateway, capsys, "create", "team-free")
    free = json.loads(out)["key"]
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=tiny, max_retries=0)
    # WHEN the tiny key asks another bot THEN it is refused with 403 naming it, on both routes
    with pytest.raises(openai.PermissionDeniedError, match=OTHER_BOT):
        sdk.chat.completions.create(model=OTHER_BOT, messages=[{"role": "user", "content": "hi"}])
    refused = poe_refusal(gateway, tiny, OTHER_BOT)
    assert refused.status_code == 403 and f"'{OTHER_BOT}'" in refused.json()["error"]
    # WHEN it asks its bot over HTTP THEN it is answered (nothing spent yet)
    answer = sdk.chat.completions.create(model=BOT, messages=[{"role": "user", "content": "hello team"}])
    assert answer.choices[0].message.content == "hello team"
    # WHEN it asks again, on the OpenAI route and on the Poe route
    with pytest.raises(openai.RateLimitError, match="monthly budget") as limited:
        sdk.chat.completions.create(model=BOT, messages=[{"role": "user", "content": "again"}])
    assert int(limited.value.response.headers["retry-after"]) > 0
    refused = poe_refusal(gateway, tiny, BOT)
    # THEN both refuse it: the budget is spent
    assert refused.status_code == 429 and "monthly budget" in refused.json()["error"]
    # AND the other key is unaffected, on both routes and any bot
    free_sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=free, max_retries=0)
    reply = free_sdk.chat.completions.create(model=OTHER_BOT, messages=[{"role": "user", "content": "still here"}])
    assert reply.choices[0].message.content == "still here"
    streamed = asyncio.run(
        poe_responses(
            f"{gateway.url}/poe/",
            BOT,
            [fp.ProtocolMessage(role="user", content="poe too")],
            api_key=free,
        )
    )
    assert "".join(m.text for m in streamed if isinstance(m, fp.PartialResponse)) == "poe too"
    # AND the CLI shows what the tiny key spent, per bot
    code, out = cli_keys(gateway, capsys, "usage", "team-tiny")
    usage = json.loads(out)
    assert code == 0 and usage["requests"] == 1 and list(usage["bots"]) == [BOT] and usage["cost_usd"] > 0.000001


def test_the_cli_manages_keys_and_a_revoked_key_stops(
    gateway: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a key made with the CLI and used once
    code, out = cli_keys(gateway, capsys, "create", "team-cli", "--rpm", "100", "--expires", "2099-01-01T00:00:00Z")
    secret = json.loads(out)["key"]
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    assert sdk.chat.completions.create(model=BOT, messages=[{"role": "user", "content": "x"}]).choices
    # WHEN the admin lists, shows and updates it THEN no secret is shown and the change is kept
    code, out = cli_keys(gateway, capsys, "list")
    assert code == 0 and "team-cli" in out and secret not in out and "secret_sha256" not in out
    code, out = cli_keys(gateway, capsys, "update", "team-cli", "--rpm", "none", "--budget", "5")
    assert code == 0 and json.loads(out)["requests_per_minute"] is None and json.loads(out)["monthly_budget_usd"] == 5
    code, out = cli_keys(gateway, capsys, "show", "team-cli")
    assert json.loads(out)["monthly_budget_usd"] == 5
    # WHEN it is revoked THEN the gateway refuses it (this process forgets it at once; others within 30 s)
    code, _ = cli_keys(gateway, capsys, "revoke", "team-cli")
    assert code == 0
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model=BOT, messages=[{"role": "user", "content": "x"}])
    # AND showing it again fails with the gateway's 404
    code, _ = cli_keys(gateway, capsys, "show", "team-cli")
    assert code == 1


def test_the_cli_refuses_a_wrong_admin_key(gateway: RunningGateway, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a wrong admin key WHEN the CLI lists keys THEN the gateway's 401 is reported and the exit code is 1
    code = main(["keys", "list", "--url", gateway.url, "--admin-key", "wrong"])
    assert code == 1 and "401" in capsys.readouterr().err


def test_the_cli_finds_a_deployed_gateway_and_its_admin_key_from_the_stack(
    gateway: RunningGateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a "deployed" gateway stack in a moto server: outputs ApiUrl and AdminKeySecretArn, the admin key in it
    with moto_server() as aws:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", aws)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", aws)
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="admin-key", SecretString=gateway.admin_key
        )
        template = {
            "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {"ApiUrl": {"Value": f"{gateway.url}/"}, "AdminKeySecretArn": {"Value": secret["ARN"]}},
        }
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="BedrockModelGateway", TemplateBody=json.dumps(template)
        )
        capsys.readouterr()
        # WHEN the CLI creates and lists keys with --target aws (no URL, no admin key given)
        created = main(["keys", "create", "team-aws", "--budget", "3", "--target", "aws"])
        listed = main(["keys", "list", "--target", "aws"])
        out = capsys.readouterr().out
    # THEN it reached the stack's gateway with the stack's admin key
    assert created == 0 and listed == 0
    assert '"name": "team-aws"' in out and '"monthly_budget_usd": 3.0' in out
