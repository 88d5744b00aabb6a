"""Team keys enforced in one place every route passes through: an ASGI middleware (``KeyGuard``).

For a request whose bearer key has the team-key form (``lambdas.gateway.team_keys``), the middleware, before any
route runs: finds the key (a record cached for at most ``cache_seconds``), answers 401 when it is unknown, disabled or
expired, refuses a Poe bot the key may not use (403, ``/poe/<bot>``), and checks the key's rate limits and monthly
budget (429). It then runs the route with the key as the request's ``caller`` (a context variable): the routes'
bot check (``require_bot``) reads it, and every answer's usage (``lambdas.gateway.events.record_usage``) is charged
to it. The spend is written to the table before the response's last byte is sent, so a process that dies mid-answer
loses at most that answer's cost. Other bearer keys pass through to the routes' own check (the Secrets Manager keys).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lambdas.gateway.clients import AwsClients
from lambdas.gateway.correlation import ASGIApp, Message, Receive, Scope, Send
from lambdas.gateway.error_shapes import shape_for
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.key_store import Spend, admit, get_key, month_of, record_spend
from lambdas.gateway.metrics import BUDGET_USED_PERCENT, COST, INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS, emit_record
from lambdas.gateway.team_keys import TeamKey, TeamKeySettings, bot_refused, key_name_of, secret_matches, unknown_key
from lambdas.shared.observability import logger

Clock = Callable[[], datetime]
OPEN_PATHS = ("/health",)  # no key at all
ADMIN_PREFIX = "/admin/"  # the admin key (lambdas.gateway.routes_admin)
POE_PREFIX = "/poe/"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Caller:
    """The team key a request came with, and what its answers cost so far."""

    key: TeamKey
    spend: Spend = field(default_factory=Spend)

    def charge(self, bot: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        """One finished answer: counted for the table, and as per-key metrics (requests, tokens, cost)."""
        self.spend.add(bot, input_tokens + output_tokens, cost_usd)
        emit_record(
            [
                (REQUESTS, 1, "Count"),
                (COST, cost_usd, "Count"),
                (INPUT_TOKENS, input_tokens, "Count"),
                (OUTPUT_TOKENS, output_tokens, "Count"),
            ],
            key=self.key.name,
        )


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("gateway_caller", default=None)


def current_caller() -> Caller | None:
    return _CALLER.get()


def require_bot(bot: str) -> bool:
    """For a team key: True when it may use ``bot``, else the 403 (raised). False when the request has no team key
    (the caller checks its Secrets Manager key)."""
    caller = _CALLER.get()
    if caller is None:
        return False
    if not caller.key.may_use(bot):
        raise bot_refused(bot)
    return True


class TeamKeys:
    """The key service of one process: the table's client, the record cache and the clock (injected in tests)."""

    def __init__(self, settings: TeamKeySettings, clients: AwsClients, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clients = clients
        self.clock = clock
        self._cache: dict[str, tuple[TeamKey | None, float]] = {}  # name -> (record or None, read at: monotonic)
        self._admin_key: tuple[str | None, float] | None = None  # (the admin secret's value, read at: monotonic)
        self.monotonic: Callable[[], float] = time.monotonic

    @property
    def enabled(self) -> bool:
        return bool(self.settings.table)

    async def table(self) -> tuple[Any, str]:
        return await self.clients.client("dynamodb", self.settings.region), self.settings.table

    async def lookup(self, name: str) -> TeamKey | None:
        """The key record, from the cache while it is younger than ``cache_seconds`` (unknown names too)."""
        cached = self._cache.get(name)
        now = self.monotonic()
        if cached is not None and now - cached[1] < self.settings.cache_seconds:
            return cached[0]
        client, table = await self.table()
        key = await get_key(client, table, name)
        self._cache[name] = (key, now)
        return key

    def forget(self, name: str) -> None:
        """This process's admin changed the key: read it again on its next use."""
        self._cache.pop(name, None)

    async def authenticate(self, secret: str) -> TeamKey:
        """The usable key ``secret`` belongs to, or the 401."""
        name = key_name_of(secret)
        key = await self.lookup(name) if name else None
        if key is None or not secret_matches(secret, key.secret_sha256) or not key.usable(self.clock()):
            raise unknown_key()
        return key

    async def admit(self, key: TeamKey) -> None:
        client, table = await self.table()
        await admit(client, table, key, self.clock())

    async def settle(self, caller: Caller) -> None:
        """Write what the request's answers cost; never fails the answer (a failed write is logged)."""
        if not caller.spend.per_bot:
            return
        key, now = caller.key, self.clock()
        try:
            client, table = await self.table()
            spent = await record_spend(client, table, key, caller.spend, now)
        except Exception:
            logger.exception("key spend not recorded", key=key.name, bots=sorted(caller.spend.per_bot))
            return
        caller.spend = Spend()
        logger.info("key spend recorded", key=key.name, month=month_of(now), month_cost_usd=round(spent, 8))
        if key.monthly_budget_usd:
            emit_record([(BUDGET_USED_PERCENT, 100 * spent / key.monthly_budget_usd, "Percent")], key=key.name)

    async def admin_key(self) -> str | None:
        """The admin key: ``GATEWAY_ADMIN_KEY``, or the admin secret (on AWS), read again once it is older than
        ``cache_seconds``: a rotated admin key takes effect within 30 seconds, like a revoked team key."""
        if self.settings.admin_key or not self.settings.admin_key_secret_arn:
            return self.settings.admin_key or None
        now = self.monotonic()
        if self._admin_key is not None and now - self._admin_key[1] < self.settings.cache_seconds:
            return self._admin_key[0]
        arn = self.settings.admin_key_secret_arn
        secrets = await self.clients.client("secretsmanager", arn.split(":")[3])
        value = await secrets.get_secret_value(SecretId=arn)
        self._admin_key = (value["SecretString"].strip() or None, now)
        return self._admin_key[0]


def bearer_of(scope: Scope) -> str:
    """The caller's key: ``Authorization: Bearer`` or, as the Anthropic SDKs send it, ``x-api-key``."""
    headers = dict(scope.get("headers") or ())
    kind, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if kind.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get(b"x-api-key", b"").decode("latin-1").strip()


async def refuse(scope: Scope, send: Send, error: GatewayError) -> None:
    """The refusal as the route would answer it: the error shape of the path's API (``error_shapes.shape_for``)."""
    body = shape_for(str(scope.get("path", "")))(error)
    headers = [(b"content-type", b"application/json")]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class KeyGuard:
    """Pure ASGI middleware: authenticate a team key, check its limits, charge its answers (see the module)."""

    def __init__(self, app: ASGIApp, keys: TeamKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not self.keys.enabled or path in OPEN_PATHS or path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        secret = bearer_of(scope)
        if key_name_of(secret) is None:  # no team key: the routes check their Secrets Manager keys
            await self.app(scope, receive, send)
            return
        try:
            key = await self.keys.authenticate(secret)
            if path.startswith(POE_PREFIX) and not key.may_use(path[len(POE_PREFIX) :]):
                raise bot_refused(path[len(POE_PREFIX) :])
            await self.keys.admit(key)
        except GatewayError as error:
            logger.info("team key refused", key=key_name_of(secret), status=error.status, code=error.code)
            await refuse(scope, send, error)
            return
        caller = Caller(key)
        logger.thread_safe_append_keys(team_key=key.name)  # in every log line of the request: its key's name
        token = _CALLER.set(caller)

        async def send_settled(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self.keys.settle(caller)  # before the last byte: the answer is paid for once the client has it
            await send(message)

        try:
            await self.app(scope, receive, send_settled)
        finally:
            _CALLER.reset(token)
            if caller.spend.per_bot:  # the client left before the last byte: the answers it got are still charged
                await asyncio.shield(self.keys.settle(caller))
