"""Team keys on moto DynamoDB: the admin API, and each limit enforced on the Poe and the OpenAI routes (through the
official clients, in process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import boto3
import fastapi_poe as fp
import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway import key_guard
from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.key_guard import KeyGuard, TeamKeys, current_caller
from lambdas.gateway.key_store import lease_budget
from lambdas.gateway.team_keys import LEASE_SECONDS, usd
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, POE_URL, openai_client, poe_messages, poe_query
from tests.functional.gateway.keys.conftest import ADMIN, Clock, keyed_settings, new_key, with_clock
from tests.functional.gateway.test_guardrails import emf_records, emf_values, logged
from tests.poe_client import poe_responses_until_error

pytestmark = pytest.mark.anyio
ROUNDING = 5e-9  # the cost an answer shows is rounded to 8 decimals; the table keeps it whole
BOT = "claude-3-haiku"
OTHER_BOT = "nova-micro"


async def ask_openai(app: FastAPI, key: str, bot: str = BOT, text: str = "hello") -> Any:
    async with openai_client(app, key) as sdk:
        return await sdk.chat.completions.create(model=bot, messages=[{"role": "user", "content": text}])


async def ask_poe(app: FastAPI, key: str, bot: str = BOT) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        return await http.post(f"/poe/{bot}", json=poe_query("hello"), headers={"Authorization": f"Bearer {key}"})


# ---------------------------------------------------------------- the admin API


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/keys/team-a"),
        ("PATCH", "/admin/keys/team-a"),
        ("DELETE", "/admin/keys/team-a"),
        ("GET", "/admin/usage?key=team-a"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-admin-key", f"Bearer {KEY}"])
async def test_admin_routes_refuse_without_the_admin_key(
    keyed_app: FastAPI, method: str, path: str, authorization: str | None
) -> None:
    # GIVEN no key, a wrong key, or a bot access key
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=keyed_app), base_url="http://test") as http:
        # WHEN an admin route is called
        answer = await http.request(method, path, headers=headers, json={"name": "team-a"})
    # THEN it is refused
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"


async def test_admin_creates_shows_updates_lists_and_revokes_a_key(admin: httpx.AsyncClient) -> None:
    # WHEN the admin creates a key with every setting
    created = await admin.post(
        "/admin/keys",
        json={
            "name": "team-a",
            "bots": ["claude-*", "nova-micro"],
            "requests_per_minute": 10,
            "tokens_per_minute": 5000,
            "monthly_budget_usd": 25.5,
            "expires_at": "2027-01-01T00:00:00Z",
        },
    )
    # THEN 201 with the secret, shown this once, and the settings
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("gwk_team-a_") and len(body["key"]) == len("gwk_team-a_") + 43
    assert body["bots"] == ["claude-*", "nova-micro"] and body["monthly_budget_usd"] == 25.5
    assert body["expires_at"] == "2027-01-01T00:00:00Z" and body["enabled"] is True
    # AND neither the list nor the key's page shows the secret or its hash
    listed = (await admin.get("/admin/keys")).json()["keys"]
    shown = (await admin.get("/admin/keys/team-a")).json()
    for record in [*listed, shown]:
        assert "key" not in record and "secret_sha256" not in record
        assert body["key"] not in str(record)
    assert [record["name"] for record in listed] == ["team-a"]
    # WHEN the admin changes one limit and removes another
    patched = await admin.patch("/admin/keys/team-a", json={"requests_per_minute": 20, "tokens_per_minute": None})
    # THEN only those change
    assert patched.status_code == 200
    assert patched.json()["requests_per_minute"] == 20 and patched.json()["tokens_per_minute"] is None
    assert patched.json()["monthly_budget_usd"] == 25.5 and patched.json()["updated_at"]
    # WHEN the key is revoked THEN it is gone
    assert (await admin.delete("/admin/keys/team-a")).status_code == 204
    assert (await admin.get("/admin/keys/team-a")).status_code == 404
    assert (await admin.delete("/admin/keys/team-a")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "no spaces"}, "name"),
        ({"name": "team", "requests_per_minute": 0}, "requests_per_minute"),
        ({"name": "team", "monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"name": "team", "bots": ["a/b"]}, "bots"),
        ({"name": "team", "expires_at": "2027-01-01T00:00:00"}, "expires_at"),
        ({"name": "team", "budget": 5}, "budget"),
    ],
)
async def test_admin_rejects_bad_key_settings_naming_the_field(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    # WHEN a key is created with a bad value
    answer = await admin.post("/admin/keys", json=body)
    # THEN 422 names the field
    assert answer.status_code == 422
    assert field in answer.json()["error"]


async def test_a_key_name_is_taken_once(admin: httpx.AsyncClient) -> None:
    # GIVEN a key WHEN another is created with its name THEN 409
    await new_key(admin, "team-a")
    assert (await admin.post("/admin/keys", json={"name": "team-a"})).status_code == 409


# ---------------------------------------------------------------- keys on both routes


async def test_a_team_key_is_answered_on_both_routes_and_legacy_keys_keep_working(
    keyed_app: FastAPI, admin: httpx.AsyncClient
) -> None:
    # GIVEN a team key for every bot
    secret = await new_key(admin, "team-a")
    # WHEN it asks through the openai SDK and the Poe client THEN both are answered
    completion = await ask_openai(keyed_app, secret, text="hi openai")
    assert completion.choices[0].message.content == "hi openai"
    messages = await poe_messages(keyed_app, BOT, "hi poe", key=secret)
    assert "".join(m.text for m in messages if isinstance(m, fp.PartialResponse)) == "hi poe"
    # AND the Secrets Manager key still works beside it
    assert (await ask_openai(keyed_app, KEY, text="legacy")).choices[0].message.content == "legacy"


@pytest.mark.parametrize("secret_kind", ["unknown", "wrong secret", "disabled", "expired", "revoked"])
async def test_unusable_keys_get_401_on_both_routes(
    keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock, secret_kind: str
) -> None:
    # GIVEN a key that is unknown, whose secret is wrong, disabled, expired or revoked
    secret = await new_key(admin, "team-a", expires_at="2026-03-14T12:30:00Z")
    if secret_kind == "unknown":
        secret = secret.replace("team-a", "team-b")
    elif secret_kind == "wrong secret":
        secret = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    elif secret_kind == "disabled":
        assert (await admin.patch("/admin/keys/team-a", json={"enabled": False})).status_code == 200
    elif secret_kind == "expired":
        clock.advance(30 * 60)
    else:
        assert (await admin.delete("/admin/keys/team-a")).status_code == 204
    # WHEN it is used on the OpenAI route THEN 401
    with pytest.raises(openai.AuthenticationError):
        await ask_openai(keyed_app, secret)
    # AND on the Poe route
    answer = await ask_poe(keyed_app, secret)
    assert answer.status_code == 401 and answer.json()["code"] == "invalid_api_key"


async def test_a_key_limited_to_some_bots_gets_403_naming_the_bot(keyed_app: FastAPI, admin: httpx.AsyncClient) -> None:
    # GIVEN a key for claude bots only
    secret = await new_key(admin, "team-a", bots=["claude-*"])
    # WHEN it asks another bot, and a bot that does not exist, on both routes
    for bot in (OTHER_BOT, "no-such-bot"):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await ask_openai(keyed_app, secret, bot=bot)
        # THEN 403 names the bot asked for, and neither the key's bots nor whether the bot exists
        assert f"'{bot}'" in refused.value.message and "claude" not in refused.value.message
        poe = await ask_poe(keyed_app, secret, bot=bot)
        assert poe.status_code == 403 and f"'{bot}'" in poe.json()["error"]
    # AND the bot it may use answers, and the model list shows only its bots
    assert (await ask_openai(keyed_app, secret)).choices[0].message.content == "hello"
    async with openai_client(keyed_app, secret) as sdk:
        models = [model.id async for model in sdk.models.list()]
    assert models and all(name.startswith("claude-") for name in models)


async def test_requests_per_minute_on_both_routes_with_retry_after(
    keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock
) -> None:
    # GIVEN a key of 2 requests per minute
    secret = await new_key(admin, "team-a", requests_per_minute=2)
    # WHEN it asks twice THEN both are answered
    await ask_openai(keyed_app, secret)
    assert (await ask_poe(keyed_app, secret)).status_code == 200
    # WHEN it asks a third time at once THEN 429 on both routes, with Retry-After: the 30 s its bucket takes to hold
    # one request again (2 per 60 s)
    with pytest.raises(openai.RateLimitError) as limited:
        await ask_openai(keyed_app, secret)
    assert limited.value.response.headers["retry-after"] == "30"
    assert "2 requests per minute" in limited.value.message
    poe = await ask_poe(keyed_app, secret)
    assert poe.status_code == 429 and poe.headers["retry-after"] == "30"
    # WHEN 29 s have passed THEN it is still refused, 1 s to go
    clock.advance(29)
    poe = await ask_poe(keyed_app, secret)
    assert poe.status_code == 429 and poe.headers["retry-after"] == "1"
    # WHEN the Retry-After has passed THEN it is answered once, and not twice
    clock.advance(1)
    assert (await ask_openai(keyed_app, secret)).choices[0].message.content == "hello"
    assert (await ask_poe(keyed_app, secret)).status_code == 429


async def test_tokens_per_minute_on_both_routes(keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock) -> None:
    # GIVEN a key of 5 tokens per minute, and an answer that uses more
    secret = await new_key(admin, "team-a", tokens_per_minute=5)
    first = await ask_openai(keyed_app, secret, text="a question of several words")
    assert first.usage.total_tokens >= 5
    # WHEN it asks again in the same minute THEN 429 names the tokens limit, on both routes
    with pytest.raises(openai.RateLimitError) as limited:
        await ask_openai(keyed_app, secret)
    assert "5 tokens per minute" in limited.value.message
    assert (await ask_poe(keyed_app, secret)).status_code == 429
    # WHEN the next minute starts THEN it is answered
    clock.advance(60)
    assert (await ask_poe(keyed_app, secret)).status_code == 200


@pytest.mark.parametrize("route", ["openai", "poe"])
async def test_a_monthly_budget_refuses_after_it_is_spent_and_other_keys_go_on(
    keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock, route: str
) -> None:
    # GIVEN a key with a tiny budget and another without one
    tiny = await new_key(admin, "team-a", monthly_budget_usd=0.000001)
    other = await new_key(admin, "team-b")
    # WHEN the tiny key gets one answer (its budget not yet spent when asked)
    if route == "openai":
        await ask_openai(keyed_app, tiny)
    else:
        messages = await poe_messages(keyed_app, BOT, "hello", key=tiny)
        assert any(isinstance(m, fp.PartialResponse) and m.text == "hello" for m in messages)
    # THEN its next request is refused with 429 naming the budget and the month's spend
    usage = (await admin.get("/admin/usage", params={"key": "team-a", "month": "2026-03"})).json()
    spent = usage["cost_usd"]
    assert spent > 0.000001
    if route == "openai":
        with pytest.raises(openai.RateLimitError) as limited:
            await ask_openai(keyed_app, tiny)
        message = limited.value.message
    else:
        answer = await ask_poe(keyed_app, tiny)
        assert answer.status_code == 429
        message = answer.json()["error"]
    assert "monthly budget of $0.000001 " in message and usd(spent) in message and "2026-03" in message
    # AND the other key is unaffected
    assert (await ask_openai(keyed_app, other)).choices[0].message.content == "hello"
    # AND next month the tiny key is answered again
    clock.advance(20 * 86400)
    assert (await ask_openai(keyed_app, tiny)).choices[0].message.content == "hello"


async def test_usage_per_bot_and_in_total(keyed_app: FastAPI, admin: httpx.AsyncClient) -> None:
    # GIVEN a key that asked two bots, one of them twice
    secret = await new_key(admin, "team-a")
    answers = [await ask_openai(keyed_app, secret, bot=bot) for bot in (BOT, BOT, OTHER_BOT)]
    # WHEN the admin reads the month's usage
    usage = (await admin.get("/admin/usage", params={"key": "team-a"})).json()
    # THEN requests, tokens and cost add up per bot and in total
    assert usage["month"] == "2026-03" and usage["requests"] == 3
    assert usage["tokens"] == sum(answer.usage.total_tokens for answer in answers)
    assert usage["bots"][BOT]["requests"] == 2 and usage["bots"][OTHER_BOT]["requests"] == 1
    assert usage["cost_usd"] == pytest.approx(sum(bot["cost_usd"] for bot in usage["bots"].values()))
    shown = sum(a.model_extra["bedrock"]["cost_usd"] for a in answers)
    assert usage["cost_usd"] == pytest.approx(shown, abs=ROUNDING * len(answers))


async def test_concurrent_requests_overspend_at_most_one_answer_each(
    keyed_app: FastAPI, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key with a budget smaller than one answer
    secret = await new_key(admin, "team-a", monthly_budget_usd=0.000001)
    # WHEN 6 requests are sent at once (those admitted before any answer is charged all run)
    results = await asyncio.gather(
        *(ask_openai(keyed_app, secret, text=f"q{i}") for i in range(6)), return_exceptions=True
    )
    answers = [r for r in results if not isinstance(r, BaseException)]
    # THEN each request is answered or refused for the budget (none fails otherwise), at least the first is answered,
    # and the spend is exactly the answers given: at most one answer per request in flight over the budget
    assert all(isinstance(r, openai.RateLimitError) for r in results if isinstance(r, BaseException))
    usage = (await admin.get("/admin/usage", params={"key": "team-a"})).json()
    assert usage["requests"] == len(answers) >= 1
    shown = sum(a.model_extra["bedrock"]["cost_usd"] for a in answers)
    assert usage["cost_usd"] == pytest.approx(shown, abs=ROUNDING * len(answers))
    # AND every later request is refused
    with pytest.raises(openai.RateLimitError):
        await ask_openai(keyed_app, secret)


async def test_a_streamed_poe_answer_is_charged_once(keyed_app: FastAPI, admin: httpx.AsyncClient) -> None:
    # GIVEN a key WHEN the Poe client reads a whole streamed answer (error-free)
    secret = await new_key(admin, "team-a")
    received, error = await poe_responses_until_error(
        POE_URL, BOT, [fp.ProtocolMessage(role="user", content="stream me")], api_key=secret, app=keyed_app
    )
    # THEN the answer is charged once
    assert error is None and received
    usage = (await admin.get("/admin/usage", params={"key": "team-a"})).json()
    assert usage["requests"] == 1 and usage["bots"][BOT]["cost_usd"] > 0


async def test_a_revoked_key_works_until_the_cache_expires_then_stops(
    emulator: BedrockEmulator, settings: GatewaySettings, key_table: str, clock: Clock
) -> None:
    # GIVEN a gateway process that caches key records for 30 s, and a key it has used
    app = with_clock(create_app(keyed_settings(settings, key_table, cache_seconds=30)), clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=ADMIN) as http:
            secret = await new_key(http, "team-a")
            await ask_openai(app, secret)
            # WHEN another process revokes it (straight in the table)
            table = boto3.client("dynamodb", region_name="us-east-1")
            table.delete_item(TableName=key_table, Key={"pk": {"S": "key#team-a"}, "sk": {"S": "key"}})
            # THEN this process still answers within the cache's 30 s
            clock.advance(29)
            assert (await ask_openai(app, secret)).choices[0].message.content == "hello"
            # AND refuses once they have passed
            clock.advance(1)
            with pytest.raises(openai.AuthenticationError):
                await ask_openai(app, secret)


async def test_usage_metrics_and_logs_name_the_key_never_its_secret(
    keyed_app: FastAPI, admin: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a key with a budget WHEN it gets one answer
    secret = await new_key(admin, "team-a", monthly_budget_usd=1)
    capfd.readouterr()
    answer = await ask_openai(keyed_app, secret)
    captured = capfd.readouterr()
    printed = captured.out + captured.err  # EMF records and JSON log lines, wherever Powertools prints them
    # THEN one EMF record per answer carries Requests, CostUSD and the tokens under the key's name
    (record,) = [r for r in emf_records(printed) if r.get("key") == "team-a" and "Requests" in r]
    (definition,) = record["_aws"]["CloudWatchMetrics"]
    assert definition["Dimensions"] == [["key", "service"]]
    assert [m["Name"] for m in definition["Metrics"]] == ["Requests", "CostUSD", "InputTokens", "OutputTokens"]
    assert record["Requests"] == [1.0] and record["OutputTokens"] == [float(answer.usage.completion_tokens)]
    # AND the share of the budget spent is published after the spend is recorded
    ((percent, _),) = [(v, r) for v, r in emf_values(printed, "BudgetUsedPercent") if r["key"] == "team-a"]
    assert percent == pytest.approx(100 * record["CostUSD"][0] / 1)
    # AND the usage and spend log lines name the key
    (usage,) = logged(caplog, "gateway usage")
    (spend,) = logged(caplog, "key spend recorded")
    assert usage["team_key"] == "team-a" and spend["key"] == "team-a"
    # AND no output holds the secret
    assert secret not in printed and secret not in caplog.text


async def test_answers_finished_before_the_client_left_are_still_charged(
    keyed_app: FastAPI, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key, and a route that finishes an answer, starts streaming it, and is cut before its last byte
    secret = await new_key(admin, "team-a")
    keys: TeamKeys = keyed_app.state.team_keys

    async def cut_stream(scope: Any, receive: Any, send: Any) -> None:
        caller = current_caller()
        assert caller is not None
        caller.charge(BOT, 3, 4, 0.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ConnectionResetError("the client left")

    guard = KeyGuard(cut_stream, keys)
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "path": "/v1/chat/completions",
        "headers": [(b"authorization", f"Bearer {secret}".encode())],
    }
    # WHEN the request runs through the guard
    with pytest.raises(ConnectionResetError):
        await guard(scope, receive, send)
    # THEN the finished answer is charged all the same
    usage = (await admin.get("/admin/usage", params={"key": "team-a"})).json()
    assert (usage["requests"], usage["tokens"], usage["cost_usd"]) == (1, 7, 0.5)
    assert [m.get("more_body") for m in sent if m["type"] == "http.response.body"] == [True]


async def test_the_anthropic_route_takes_a_team_key_as_x_api_key_and_enforces_it(
    keyed_app: FastAPI, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key for claude bots only, sent as the Anthropic SDKs send keys (x-api-key)
    secret = await new_key(admin, "team-a", bots=["claude-*"])
    transport = httpx.ASGITransport(app=keyed_app)
    headers = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    body = {"max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        # WHEN it asks a claude bot THEN it is answered, and the answer is charged to the key
        answered = await http.post("/v1/messages", json={**body, "model": BOT})
        # WHEN it asks another bot THEN 403 in Anthropic's error shape, naming the bot
        refused = await http.post("/v1/messages", json={**body, "model": OTHER_BOT})
    assert answered.status_code == 200, answered.text
    usage = (await admin.get("/admin/usage", params={"key": "team-a"})).json()
    assert usage["requests"] == 1 and usage["bots"][BOT]["requests"] == 1
    assert refused.status_code == 403
    assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "permission_error"
    assert f"'{OTHER_BOT}'" in refused.json()["error"]["message"]


async def test_the_embeddings_and_images_routes_take_a_team_key_and_enforce_its_bots(
    keyed_app: FastAPI, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key for one embedding bot only
    secret = await new_key(admin, "team-a", bots=["titan-embed-v2"])
    transport = httpx.ASGITransport(app=keyed_app)
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        # WHEN it asks that bot for embeddings THEN it is answered
        answered = await http.post("/v1/embeddings", json={"model": "titan-embed-v2", "input": "a harbour"})
        # WHEN it asks another embedding bot, and an image bot THEN 403 naming the bot, before anything else
        other = await http.post("/v1/embeddings", json={"model": "cohere-embed-english", "input": "a harbour"})
        image = await http.post("/v1/images/generations", json={"model": "nova-canvas", "prompt": "a harbour"})
    assert answered.status_code == 200, answered.text
    assert len(answered.json()["data"][0]["embedding"]) == 1024
    assert other.status_code == 403 and "'cohere-embed-english'" in other.json()["error"]["message"]
    assert image.status_code == 403 and "'nova-canvas'" in image.json()["error"]["message"]


async def test_a_rotated_admin_key_takes_effect_within_the_cache_time(
    emulator: BedrockEmulator,
    settings: GatewaySettings,
    key_table: str,
    dynamodb_endpoint: str,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a gateway whose admin key is a Secrets Manager secret (as on AWS), cached for 30 s
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", dynamodb_endpoint)  # the moto server has every service
    secrets = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=dynamodb_endpoint)
    arn = secrets.create_secret(Name=f"admin-{key_table}", SecretString="old-admin-key-0123456789abcdef")["ARN"]
    keyed = keyed_settings(settings, key_table, cache_seconds=30)
    keyed = replace(keyed, team_keys=replace(keyed.team_keys, admin_key="", admin_key_secret_arn=arn))
    app = with_clock(create_app(keyed), clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):

        async def status(admin_key: str) -> int:
            return (await http.get("/admin/keys", headers={"Authorization": f"Bearer {admin_key}"})).status_code

        assert await status("old-admin-key-0123456789abcdef") == 200
        # WHEN the secret is rotated
        secrets.put_secret_value(SecretId=arn, SecretString="new-admin-key-0123456789abcdef")
        # THEN the old key still works within the 30 s the process trusts what it read
        clock.advance(29)
        assert await status("old-admin-key-0123456789abcdef") == 200
        assert await status("new-admin-key-0123456789abcdef") == 401
        # AND once they have passed, only the new key works
        clock.advance(1)
        assert await status("old-admin-key-0123456789abcdef") == 401
        assert await status("new-admin-key-0123456789abcdef") == 200


# ---------------------------------------------------------------- limits leased by slices


@asynccontextmanager
async def process(
    settings: GatewaySettings, key_table: str, clock: Clock, cache_seconds: float = 0
) -> AsyncIterator[FastAPI]:
    """Another gateway process on the same table (its own key cache, slices and process id), on the test's clock."""
    app = with_clock(create_app(keyed_settings(settings, key_table, cache_seconds=cache_seconds)), clock)
    async with app.router.lifespan_context(app):
        yield app


async def test_a_burst_at_a_minute_boundary_passes_the_limit_once(
    keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock
) -> None:
    # GIVEN a key of 4 requests per minute, idle, at 12:00:59.5
    secret = await new_key(admin, "team-a", requests_per_minute=4)
    clock.advance(54.5)
    # WHEN it sends 4 requests before the minute turns and 4 more half a second after it
    before = [(await ask_poe(keyed_app, secret)).status_code for _ in range(4)]
    clock.advance(1)
    after = [(await ask_poe(keyed_app, secret)).status_code for _ in range(4)]
    # THEN the first 4 are answered and the next 4 refused (fixed windows answered all 8)
    assert before == [200] * 4 and after == [429] * 4
    # AND one more is answered once its bucket holds one again (4 per 60 s: 15 s after the burst)
    clock.advance(14)
    assert (await ask_poe(keyed_app, secret)).status_code == 200


async def test_two_processes_share_one_keys_requests_per_minute(
    emulator: BedrockEmulator, settings: GatewaySettings, key_table: str, clock: Clock, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key of 4 requests per minute, and two gateway processes on the same table
    secret = await new_key(admin, "team-a", requests_per_minute=4)
    async with process(settings, key_table, clock) as first, process(settings, key_table, clock) as second:
        # WHEN each sends 4 requests, in turns
        answered = 0
        for _ in range(4):
            for app in (first, second):
                answered += (await ask_poe(app, secret)).status_code == 200
    # THEN 4 are answered in all, not 4 per process
    assert answered == 4


async def test_a_budget_spent_in_one_process_refuses_in_another(
    emulator: BedrockEmulator, settings: GatewaySettings, key_table: str, clock: Clock, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key with a budget smaller than one answer, and two gateway processes
    secret = await new_key(admin, "team-a", monthly_budget_usd=0.000001)
    async with process(settings, key_table, clock) as first, process(settings, key_table, clock) as second:
        # WHEN the first process answers once (the budget was not spent when it was asked)
        assert (await ask_poe(first, secret)).status_code == 200
        # THEN the second process refuses the key, naming the budget and the month's spend
        refused = await ask_poe(second, secret)
    assert refused.status_code == 429 and refused.json()["code"] == "monthly_budget_exceeded"
    assert "monthly budget of $0.000001 " in refused.json()["error"]


async def test_a_budget_slice_of_a_process_gone_comes_back_when_it_expires(
    keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock
) -> None:
    # GIVEN a key with a $1 budget, and a process that leased all of it and died before spending any
    await new_key(admin, "team-a", monthly_budget_usd=1)
    keys: TeamKeys = keyed_app.state.team_keys
    key = await keys.lookup("team-a")
    assert key is not None
    client, table = await keys.table()
    gone = await lease_budget(client, table, key, "gone", {}, clock(), asked=1.0, held=0.0, returned=0.0)
    assert gone.granted == pytest.approx(1.0)
    # WHEN another process leases a slice while the dead one's is still live
    alive = await lease_budget(client, table, key, "alive", {}, clock(), asked=0.05, held=0.0, returned=0.0)
    # THEN it gets nothing: the whole budget is held
    assert alive.granted == 0 and alive.spent == 0
    # WHEN the dead process's slice has expired
    clock.advance(LEASE_SECONDS)
    later = await lease_budget(client, table, key, "alive", alive.item, clock(), asked=0.05, held=0.0, returned=0.0)
    # THEN the budget is leased again
    assert later.granted == pytest.approx(0.05)


async def test_a_budget_held_by_another_process_is_a_429_that_says_when_to_retry(
    emulator: BedrockEmulator, settings: GatewaySettings, key_table: str, clock: Clock, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key with a $1 budget whose whole rest another process holds in a slice
    secret = await new_key(admin, "team-a", monthly_budget_usd=1)
    async with process(settings, key_table, clock) as other, process(settings, key_table, clock) as this:
        keys: TeamKeys = other.state.team_keys
        key = await keys.lookup("team-a")
        assert key is not None
        client, table = await keys.table()
        await lease_budget(client, table, key, keys.process, {}, clock(), asked=1.0, held=0.0, returned=0.0)
        clock.advance(2)
        # WHEN this process is asked THEN 429 says the rest is held and when its slice comes back (3 s)
        refused = await ask_poe(this, secret)
    assert refused.status_code == 429 and refused.json()["code"] == "monthly_budget_held"
    assert refused.headers["retry-after"] == "3"
    assert "held by its requests in other gateway processes" in refused.json()["error"]


async def test_the_request_path_makes_no_table_call_while_the_slices_last(
    keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a key with every limit, roomy, that has been used once (its record and first slices are in the process)
    secret = await new_key(admin, "team-a", requests_per_minute=600, tokens_per_minute=100_000, monthly_budget_usd=50)
    keys: TeamKeys = keyed_app.state.team_keys
    keys.settings = replace(keys.settings, cache_seconds=30)
    await ask_openai(keyed_app, secret)
    waits: list[str] = []
    leased = keys._lease

    async def spy(allowance: Any) -> None:
        waits.append(allowance.key.name)
        await leased(allowance)

    monkeypatch.setattr(keys, "_lease", spy)
    # WHEN it sends 40 requests, 0.1 s apart (more than one slice of 30 requests)
    for _ in range(40):
        clock.advance(0.1)
        await ask_openai(keyed_app, secret)
    # THEN no request waited for a lease: the next slices were leased in the background
    assert waits == []
    usage = (await admin.get("/admin/usage", params={"key": "team-a"})).json()
    assert usage["requests"] == 41


async def test_a_key_table_that_does_not_answer_is_a_503(
    keyed_app: FastAPI, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a key with a limit, and a table whose leases fail
    secret = await new_key(admin, "team-a", requests_per_minute=10)

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the table did not answer")

    monkeypatch.setattr(key_guard, "lease_rate", failing)
    # WHEN the key is used THEN 503 says so, and that a retry may work
    answer = await ask_poe(keyed_app, secret)
    assert answer.status_code == 503 and answer.json()["code"] == "key_limits_unavailable"
    assert answer.headers["retry-after"] == "1"


async def test_a_slice_leased_ahead_and_not_used_counts_again(
    keyed_app: FastAPI, admin: httpx.AsyncClient, clock: Clock
) -> None:
    # GIVEN a key of 2 requests per minute that sent one request: the process leased a second slice ahead of need
    secret = await new_key(admin, "team-a", requests_per_minute=2)
    assert (await ask_poe(keyed_app, secret)).status_code == 200
    # WHEN it sends its second request 20 s later (the slice leased ahead expired unused; the bucket has refilled
    # only two thirds of a request since)
    clock.advance(20)
    answer = await ask_poe(keyed_app, secret)
    # THEN it is answered: the unused slice was given back (lost, it would have cost the key this request)
    assert answer.status_code == 200
    # AND a third request now is refused: two in 20 s is all 2 per minute allows
    assert (await ask_poe(keyed_app, secret)).status_code == 429


async def test_concurrent_first_requests_of_a_small_limit_are_all_answered_within_it(
    keyed_app: FastAPI, admin: httpx.AsyncClient
) -> None:
    # GIVEN a key of 12 requests per minute (slices of 1), not yet used by this process
    secret = await new_key(admin, "team-a", requests_per_minute=12)
    # WHEN 16 requests arrive at once (all waiting for the process's first lease)
    statuses = await asyncio.gather(*(ask_poe(keyed_app, secret) for _ in range(16)))
    # THEN the 12 the bucket holds are answered (one lease for all those waiting) and the rest get 429, none a 503
    assert sorted(answer.status_code for answer in statuses) == [200] * 12 + [429] * 4
