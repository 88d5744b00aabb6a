"""On AWS the access keys come from Secrets Manager (never the environment): read once at start-up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import boto3
import fastapi_poe as fp
import httpx
import pytest

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import moto_server, poe_messages

pytestmark = pytest.mark.anyio
SECRET_KEY = "secret-access-key-0123456789abcdef"


@pytest.fixture(scope="module")
def secrets_server() -> Iterator[str]:
    yield from moto_server()


async def test_keys_come_from_the_secret_and_the_environment_holds_none(
    emulator: BedrockEmulator, settings: GatewaySettings, secrets_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a secret holding the default key, and settings with no key of their own
    secrets = boto3.client("secretsmanager", endpoint_url=secrets_server, region_name="us-east-1")
    arn = secrets.create_secret(Name="gateway-keys", SecretString=json.dumps({"default": SECRET_KEY}))["ARN"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets_server)
    app = create_app(replace(settings, access_keys={}, access_keys_secret_arn=arn))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as session,
    ):
        # WHEN the Poe client uses the key from the secret THEN it is answered
        messages = await poe_messages(app, "claude-3-haiku", "hello from the secret", key=SECRET_KEY)
        assert "".join(m.text for m in messages if isinstance(m, fp.PartialResponse)) == "hello from the secret"
        # AND another key is refused
        refused = await session.post("/poe/claude-3-haiku", json={"type": "settings"},
                                         headers={"Authorization": "Bearer wrong"})  # fmt: skip
        assert refused.status_code == 401
