"""Fixtures and helpers for the team-key tests: a moto DynamoDB server with a fresh key table per test, the app on
it with an admin key and a clock the test moves (never the wall clock: a minute window must not turn mid-test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.key_guard import TeamKeys
from lambdas.gateway.team_keys import TeamKeySettings
from local.emulator.server import BedrockEmulator
from local.key_table import create_key_table, moto_server

ADMIN_KEY = "admin-key-0123456789abcdef0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
START = datetime(2026, 3, 14, 12, 0, 5, tzinfo=UTC)  # 5 s into a minute, mid-month


class Clock:
    """The gateway's wall clock (windows, months, expiry) and its monotonic one (the record cache), moved by tests."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self.elapsed = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.elapsed += seconds


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def key_table(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    return create_key_table(dynamodb_endpoint, table=f"keys-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def keyed_settings(settings: GatewaySettings, table: str, cache_seconds: float = 0) -> GatewaySettings:
    return replace(settings, team_keys=TeamKeySettings(table=table, admin_key=ADMIN_KEY, cache_seconds=cache_seconds))


def with_clock(app: FastAPI, clock: Clock) -> FastAPI:
    keys: TeamKeys = app.state.team_keys
    keys.clock = clock
    keys.monotonic = clock.monotonic
    return app


@pytest.fixture
async def keyed_app(
    emulator: BedrockEmulator, settings: GatewaySettings, key_table: str, clock: Clock
) -> AsyncIterator[FastAPI]:
    """The app with team keys on (no record cache), the shipped bots and the Secrets Manager-style keys of
    ``settings``."""
    application = with_clock(create_app(keyed_settings(settings, key_table)), clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def admin(keyed_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app that sends the admin key."""
    transport = httpx.ASGITransport(app=keyed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=ADMIN) as http:
        yield http


async def new_key(admin: httpx.AsyncClient, name: str, **limits: Any) -> str:
    """Create a key through the admin API; its secret."""
    created = await admin.post("/admin/keys", json={"name": name, **limits})
    assert created.status_code == 201, created.text
    return str(created.json()["key"])
