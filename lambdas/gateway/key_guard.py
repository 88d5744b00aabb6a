"""Team keys enforced in one place every route passes through: an ASGI middleware (``KeyGuard``).

For a request whose bearer key has the team-key form (``lambdas.gateway.team_keys``), the middleware, before any
route runs: finds the key (a record cached for at most ``cache_seconds``), answers 401 when it is unknown, disabled or
expired, refuses a Poe bot the key may not use (403, ``/poe/<bot>``), and admits the request on the slices of the
key's rate limits and monthly budget this process leased from the table (429 when a lease got nothing; no table call
while the slices last, see ``TeamKeys.admit``). It then runs the route with the key as the request's ``caller`` (a
context variable): the routes' bot check (``require_bot``) reads it, and every answer's usage
(``lambdas.gateway.events.record_usage``) is charged to it. The spend is written to the table before the
response's last byte is sent, so a process that dies mid-answer loses at most that answer's cost. Other bearer
keys pass through to the routes' own check (the Secrets Manager keys).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lambdas.gateway.clients import AwsClients
from lambdas.gateway.correlation import ASGIApp, Message, Receive, Scope, Send
from lambdas.gateway.error_shapes import shape_for
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.key_store import Spend, get_key, lease_budget, lease_rate, month_of, record_spend
from lambdas.gateway.metrics import BUDGET_USED_PERCENT, COST, INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS, emit_record
from lambdas.gateway.team_keys import (
    LEASE_SECONDS,
    SLICES_PER_BUDGET,
    Permit,
    TeamKey,
    TeamKeySettings,
    bot_refused,
    budget_held,
    key_name_of,
    over_budget,
    rate_limited,
    secret_matches,
    slice_of,
    unknown_key,
)
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


Refusal = Callable[[float], GatewayError]  # the 429 of a limit, its Retry-After counted from the epoch seconds given


def wait_until(retry_at: float, now: float) -> int:
    """A Retry-After: whole seconds from ``now`` to ``retry_at``, at least 1."""
    return max(1, math.ceil(retry_at - now - 1e-9))


def counted_down(limit: str, value: int, retry_at: float) -> tuple[Refusal, float]:
    return (lambda at: rate_limited(limit, value, wait_until(retry_at, at))), retry_at


def limits_unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The gateway could not check this access key's limits: its key table did not answer. Retry in a moment.",
        openai_type="service_unavailable",
        code="key_limits_unavailable",
        retry_after=1,
        should_retry=True,
        allow_retry=True,
    )


class Allowance:
    """What one process holds of one key's limits: a permit (leased slices) per limit, the bucket and month items
    as its last leases saw them, the refusal of its last lease (kept until the limit can admit again, at most
    ``LEASE_SECONDS``: a key over its limit costs no table call per request) and the lease in flight, if any."""

    def __init__(self, key: TeamKey) -> None:
        self.key = key
        self.requests, self.tokens, self.wallet = Permit(), Permit(), Permit()
        self.month = ""  # the month the wallet's slices are of
        self.bucket_item: dict[str, Any] = {}
        self.month_item: dict[str, Any] = {}
        self.refusal: tuple[Refusal, float] | None = None  # the last lease's refusal, kept until (epoch seconds)
        self.leasing: asyncio.Task[None] | None = None
        self.waiting = 0  # requests waiting for a lease: a requests slice is at least as large
        self.failed = False  # the last lease failed (the table did not answer)

    def limited(self) -> bool:
        key = self.key
        limits = (key.requests_per_minute, key.tokens_per_minute, key.monthly_budget_usd)
        return any(limit is not None for limit in limits)

    def admits(self, now: float, month: str) -> bool:
        key = self.key
        if key.requests_per_minute is not None and not self.requests.usable(now, 1):
            return False
        if key.tokens_per_minute is not None and not self.tokens.usable(now, 1e-9):
            return False
        budget_left = self.month == month and self.wallet.usable(now, 1e-12)
        return key.monthly_budget_usd is None or budget_left

    def low(self, now: float) -> bool:
        """A permit is half used or half through its time: lease its next slice in the background."""
        key = self.key
        return (
            (key.requests_per_minute is not None and self.requests.low(now, slice_of(key.requests_per_minute)))
            or (key.tokens_per_minute is not None and self.tokens.low(now, slice_of(key.tokens_per_minute)))
            or (key.monthly_budget_usd is not None and self.wallet.low(now, self.budget_slice()))
        )

    def needs_rate(self, now: float) -> bool:
        """A per-minute limit's permit cannot admit, or is low: its next slice is due."""
        key = self.key
        return any(
            limit is not None and (not permit.usable(now, at_least) or permit.low(now, slice_of(limit)))
            for limit, permit, at_least in (
                (key.requests_per_minute, self.requests, 1.0),
                (key.tokens_per_minute, self.tokens, 1e-9),
            )
        )

    def needs_budget(self, now: datetime) -> bool:
        moment, size = now.timestamp(), self.budget_slice()
        return self.key.monthly_budget_usd is not None and (
            self.month != month_of(now) or not self.wallet.usable(moment, 1e-12) or self.wallet.low(moment, size)
        )

    def budget_slice(self) -> float:
        return (self.key.monthly_budget_usd or 0.0) / SLICES_PER_BUDGET

    def refused(self, now: float) -> GatewayError | None:
        """The last lease's refusal while it holds (its Retry-After counted from ``now``)."""
        if self.refusal is None or now >= self.refusal[1]:
            self.refusal = None
            return None
        return self.refusal[0](now)


class TeamKeys:
    """The key service of one process: the table's client, the record cache and the clock (injected in tests)."""

    def __init__(self, settings: TeamKeySettings, clients: AwsClients, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clients = clients
        self.clock = clock
        self._cache: dict[str, tuple[TeamKey | None, float]] = {}  # name -> (record or None, read at: monotonic)
        self._admin_key: tuple[str | None, float] | None = None  # (the admin secret's value, read at: monotonic)
        self.monotonic: Callable[[], float] = time.monotonic
        self.process = uuid.uuid4().hex[:12]  # names this process's budget slices in the month's item
        self._allowances: dict[str, Allowance] = {}
        self._background: set[asyncio.Task[None]] = set()

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

    def allowance(self, key: TeamKey) -> Allowance:
        """The process's allowance of ``key``, with its current settings (limits changed by an admin apply as
        the record is read again; what was leased stays leased)."""
        allowance = self._allowances.get(key.name)
        if allowance is None:
            allowance = self._allowances[key.name] = Allowance(key)
        elif allowance.key != key:
            allowance.key, allowance.refusal = key, None
        return allowance

    async def admit(self, key: TeamKey) -> None:
        """Admit one request of ``key`` on the slices this process leased, or refuse it (429).

        The common case makes no table call: the request takes one from the process's slice of the key's
        requests per minute, and the process holds tokens and budget left. When a slice runs low, the next is
        leased in the background; when one is spent, the request waits for a lease (one conditional UpdateItem
        per limit kind); when that lease got nothing, the refusal is kept until the limit can admit again."""
        allowance = self.allowance(key)
        if not allowance.limited():
            return
        for _ in range(100):  # a lease's slice can be taken by the requests waiting with this one: lease again
            now = self.clock()
            moment = now.timestamp()
            refusal = allowance.refused(moment)
            if refusal is not None:
                raise refusal
            if allowance.admits(moment, month_of(now)):
                if key.requests_per_minute is not None:
                    allowance.requests.current.left -= 1
                if allowance.low(moment):
                    self._lease_in_background(allowance)
                return
            allowance.waiting += 1
            try:
                await self._lease(allowance)
            finally:
                allowance.waiting -= 1
            if allowance.failed:
                raise limits_unavailable()
        raise limits_unavailable()  # leases kept granting less than the requests waiting took: give up

    def _lease_in_background(self, allowance: Allowance) -> asyncio.Future[None]:
        """The key's lease in flight, or a new one (tracked, so that shutdown waits for it)."""
        if allowance.leasing is None or allowance.leasing.done():
            allowance.leasing = asyncio.ensure_future(self._leased(allowance))
            self._background.add(allowance.leasing)
            allowance.leasing.add_done_callback(self._background.discard)
        return allowance.leasing

    async def _lease(self, allowance: Allowance) -> None:
        """Wait for the lease in flight, or make one (a request that gives up waiting leaves it running)."""
        await asyncio.shield(self._lease_in_background(allowance))

    async def _leased(self, allowance: Allowance) -> None:
        """One lease of every limit of the key whose permit is low: the slices asked, the expired ones given back;
        a limit that granted nothing its request needs becomes the allowance's refusal. Never raises: a failed
        lease is logged and the request waits for the next one or is refused."""
        key, now = allowance.key, self.clock()
        moment = now.timestamp()
        try:
            client, table = await self.table()
            work: list[Any] = []
            if allowance.needs_rate(moment):
                work.append(self._lease_rate(allowance, client, table, moment))
            if allowance.needs_budget(now):
                work.append(self._lease_budget(allowance, client, table, now))
            refusals = [refusal for refusal in await asyncio.gather(*work) if refusal is not None]
        except Exception:  # LeaseConflict too: the requests waiting for it get the 503
            logger.exception("key slices not leased", key=key.name)
            allowance.failed = True
            return
        allowance.failed = False
        if refusals:  # the longest wait: the request needs every limit
            refusal, retry_at = max(refusals, key=lambda found: found[1])
            allowance.refusal = (refusal, moment + min(LEASE_SECONDS, max(0.0, retry_at - moment)))

    async def _lease_rate(
        self, allowance: Allowance, client: Any, table: str, moment: float
    ) -> tuple[Refusal, float] | None:
        key = allowance.key
        asks = {}
        for name, limit, permit in (
            ("requests", key.requests_per_minute, allowance.requests),
            ("tokens", key.tokens_per_minute, allowance.tokens),
        ):
            permit.roll(moment)
            wanted = slice_of(limit) if limit is not None and permit.following is None else 0
            if name == "requests" and wanted:
                wanted = max(wanted, allowance.waiting)  # one lease for every request waiting for it
            asks[name] = (wanted, permit.take_back())
        try:
            lease = await lease_rate(client, table, key, allowance.bucket_item, moment, **asks)
        except BaseException:
            allowance.requests.keep(asks["requests"][1])
            allowance.tokens.keep(asks["tokens"][1])
            raise
        allowance.bucket_item = lease.item
        allowance.requests.add(lease.requests, moment)
        allowance.tokens.add(lease.tokens, moment)
        for name, bucket, permit, at_least in (
            ("requests", lease.requests_bucket, allowance.requests, 1.0),
            ("tokens", lease.tokens_bucket, allowance.tokens, 1e-9),
        ):
            if bucket is not None and not permit.usable(moment, at_least):
                return counted_down(name, bucket.limit, moment + bucket.seconds_to(1, moment))
        return None

    async def _lease_budget(
        self, allowance: Allowance, client: Any, table: str, now: datetime
    ) -> tuple[Refusal, float] | None:
        key, moment, month = allowance.key, now.timestamp(), month_of(now)
        if allowance.month != month:  # a new month: last month's slices are of no use
            allowance.wallet, allowance.month, allowance.month_item = Permit(), month, {}
        wallet = allowance.wallet
        wallet.roll(moment)
        returned, since = wallet.take_back()
        try:
            lease = await lease_budget(
                client,
                table,
                key,
                self.process,
                allowance.month_item,
                now,
                asked=allowance.budget_slice(),
                held=wallet.held(),
                returned=returned,
            )
        except BaseException:
            wallet.keep((returned, since))
            raise
        allowance.month_item = lease.item
        wallet.add(lease.granted, moment)
        if wallet.usable(moment, 1e-12):
            return None
        spent = lease.spent
        if spent >= (key.monthly_budget_usd or 0.0):
            return (lambda at: over_budget(key, spent, datetime.fromtimestamp(at, UTC))), moment + LEASE_SECONDS
        others = [w.until for owner, w in lease.wallets.items() if owner != self.process and w.until > moment]
        retry_at = min(others, default=moment + LEASE_SECONDS)
        return (lambda at: budget_held(key, spent, datetime.fromtimestamp(at, UTC), wait_until(retry_at, at))), retry_at

    async def settle(self, caller: Caller) -> None:
        """Write what the request's answers cost (drawn from the process's budget slice; tokens beyond its tokens
        slice are owed to the key's bucket); never fails the answer (a failed write is logged)."""
        if not caller.spend.per_bot:
            return
        key, now = caller.key, self.clock()
        allowance = self.allowance(key) if caller.key.name in self._allowances else None
        drawn, owed = 0.0, 0
        if allowance is not None and key.monthly_budget_usd is not None and allowance.month == month_of(now):
            drawn = allowance.wallet.draw(caller.spend.cost_usd)  # (a slice of last month is not this month's)
        if allowance is not None and key.tokens_per_minute is not None:
            owed = caller.spend.tokens - int(allowance.tokens.draw(caller.spend.tokens))
        elif key.tokens_per_minute is not None:
            owed = caller.spend.tokens
        try:
            client, table = await self.table()
            spent = await record_spend(
                client, table, key, caller.spend, now, process=self.process, wallet_drawn=drawn, tokens_owed=owed
            )
        except Exception:
            logger.exception("key spend not recorded", key=key.name, bots=sorted(caller.spend.per_bot))
            return
        caller.spend = Spend()
        logger.info("key spend recorded", key=key.name, month=month_of(now), month_cost_usd=round(spent, 8))
        if key.monthly_budget_usd:
            emit_record([(BUDGET_USED_PERCENT, 100 * spent / key.monthly_budget_usd, "Percent")], key=key.name)
        if allowance is not None and allowance.low(now.timestamp()):
            self._lease_in_background(allowance)

    async def close(self) -> None:
        """Let the leases in flight finish (at shutdown, before the clients close)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

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
