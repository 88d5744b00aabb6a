"""The admin API: team keys and their usage, guarded by the admin key (``Authorization: Bearer <admin key>``).

    POST   /admin/keys                 {"name", "bots", "requests_per_minute", "tokens_per_minute",
                                        "monthly_budget_usd", "expires_at", "enabled"} -> 201 {..., "key": <secret>}
    GET    /admin/keys                 every key, never a secret
    GET    /admin/keys/{name}
    PATCH  /admin/keys/{name}          only the fields sent; null removes a limit
    DELETE /admin/keys/{name}          revoke -> 204
    GET    /admin/usage?key=<name>&month=YYYY-MM   requests, tokens and cost_usd, per bot and in total

The routes parse and authorize; ``lambdas.gateway.key_store`` does the work. Errors have the Poe route's shape
(``{"error": message, "code": code}``).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from lambdas.gateway.bodies import read_json
from lambdas.gateway.error_shapes import validation_failed
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.key_guard import TeamKeys
from lambdas.gateway.key_store import create_key, delete_key, get_key, list_keys, no_such_key, replace_key, usage
from lambdas.gateway.team_keys import KEY_NAME, KeyLimits, NewKey, TeamKey, month_of, new_secret, secret_hash
from lambdas.shared.observability import logger

router = APIRouter(prefix="/admin")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


async def _service(request: Request) -> TeamKeys:
    """The key service, once the caller proved to hold the admin key (constant-time comparison)."""
    keys: TeamKeys = request.app.state.team_keys
    expected = await keys.admin_key()
    kind, _, given = request.headers.get("authorization", "").partition(" ")
    if expected is None:
        raise GatewayError(
            401,
            "The admin API is off: set GATEWAY_ADMIN_KEY (locally) or deploy the stack, whose admin key is a secret.",
            code="unauthorized",
        )
    if kind.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise GatewayError(401, "Invalid or missing admin key.", code="unauthorized")
    if not keys.enabled:
        raise GatewayError(503, "Team keys are off: the gateway has no key table (GATEWAY_KEYS_TABLE).", code="off")
    return keys


async def _body(request: Request, model: type[BaseModel]) -> Any:
    settings = request.app.state.settings
    try:
        return model.model_validate(await read_json(request, settings.max_body_bytes, settings.body_timeout))
    except ValidationError as error:
        raise validation_failed(error) from None


def _name(name: str) -> str:
    if not KEY_NAME.match(name):
        raise GatewayError(
            400, "A key name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.", code="name"
        )
    return name


@router.post("/keys", status_code=201)
async def create(request: Request) -> JSONResponse:
    keys = await _service(request)
    spec: NewKey = await _body(request, NewKey)
    secret = new_secret(spec.name)
    key = TeamKey(
        name=spec.name,
        secret_sha256=secret_hash(secret),
        bots=None if spec.bots is None else tuple(spec.bots),
        requests_per_minute=spec.requests_per_minute,
        tokens_per_minute=spec.tokens_per_minute,
        monthly_budget_usd=spec.monthly_budget_usd,
        expires_at=spec.expires_at,
        enabled=spec.enabled,
        created_at=keys.clock(),
    )
    client, table = await keys.table()
    await create_key(client, table, key)
    keys.forget(key.name)
    logger.info("team key created", team_key=key.name)
    return JSONResponse({**key.public(), "key": secret}, status_code=201)  # the secret, shown this once


@router.get("/keys")
async def list_all(request: Request) -> dict[str, Any]:
    keys = await _service(request)
    client, table = await keys.table()
    return {"keys": [key.public() for key in await list_keys(client, table)]}


@router.get("/keys/{name}")
async def show(name: str, request: Request) -> dict[str, Any]:
    keys = await _service(request)
    client, table = await keys.table()
    key = await get_key(client, table, _name(name))
    if key is None:
        raise no_such_key(name)
    return key.public()


@router.patch("/keys/{name}")
async def update(name: str, request: Request) -> dict[str, Any]:
    keys = await _service(request)
    changes: KeyLimits = await _body(request, KeyLimits)
    client, table = await keys.table()
    key = await get_key(client, table, _name(name))
    if key is None:
        raise no_such_key(name)
    fields = {field: getattr(changes, field) for field in changes.model_fields_set}
    if "bots" in fields and fields["bots"] is not None:
        fields["bots"] = tuple(fields["bots"])
    updated = replace(key, **fields, updated_at=keys.clock())
    await replace_key(client, table, updated)
    keys.forget(name)
    logger.info("team key updated", team_key=name, fields=sorted(fields))
    return updated.public()


@router.delete("/keys/{name}", status_code=204)
async def revoke(name: str, request: Request) -> Response:
    keys = await _service(request)
    client, table = await keys.table()
    await delete_key(client, table, _name(name))
    keys.forget(name)
    logger.info("team key revoked", team_key=name)
    return Response(status_code=204)


@router.get("/usage")
async def month_usage(request: Request, key: str = "", month: str = "") -> dict[str, Any]:
    keys = await _service(request)
    if not key:
        raise GatewayError(400, "Name the key: GET /admin/usage?key=<name>&month=YYYY-MM.", code="key")
    month = month or month_of(keys.clock())
    if not MONTH.match(month):
        raise GatewayError(400, f"month must be YYYY-MM (e.g. 2026-01), got '{month[:20]}'.", code="month")
    client, table = await keys.table()
    return await usage(client, table, _name(key), month)
