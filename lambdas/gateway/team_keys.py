"""Team keys as data: what a key is, how its secret is made and checked, and what its limits refuse. No I/O here
(``lambdas.gateway.key_store`` reads and writes the table, ``lambdas.gateway.key_guard`` enforces on every route).

A key's secret is ``gwk_<name>_<43 characters>``: 32 random bytes (``secrets.token_urlsafe``) after the key's name.
The table keeps only the SHA-256 of the whole secret. A fast unsalted hash is enough for a secret of 256 random bits:
salts and slow hashes protect guessable passwords, and no dictionary or brute force reaches 2**256. The name in the
secret finds the record with one read; the hashes are then compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from lambdas.gateway.errors import GatewayError

KEY_PREFIX = "gwk_"
SECRET_BYTES = 32
SECRET_CHARS = 43  # base64url of 32 bytes, unpadded
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BOT_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,128}$")  # a bot name, or an fnmatch pattern of bot names
MAX_CACHE_SECONDS = 30.0  # the docs promise that a revoked or disabled key stops working within 30 seconds
UNKNOWN_KEY = "Invalid, disabled or expired access key."


@dataclass(frozen=True)
class TeamKeySettings:
    """Where the keys live (``GATEWAY_KEYS_TABLE``; empty: team keys are off, the Secrets Manager keys work alone),
    the admin key (``GATEWAY_ADMIN_KEY`` locally, the ``GATEWAY_ADMIN_KEY_SECRET_ARN`` secret on AWS) and how long a
    process trusts a key record it read (``GATEWAY_KEY_CACHE_SECONDS``, at most 30)."""

    table: str = ""
    region: str = "us-east-1"
    admin_key: str = ""
    admin_key_secret_arn: str = ""
    cache_seconds: float = MAX_CACHE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TeamKeySettings:
        env = os.environ if env is None else env
        raw = env.get("GATEWAY_KEY_CACHE_SECONDS", str(MAX_CACHE_SECONDS))
        try:
            cache_seconds = float(raw)
        except ValueError:
            cache_seconds = -1.0
        if not 0 <= cache_seconds <= MAX_CACHE_SECONDS:
            raise ValueError(
                f"GATEWAY_KEY_CACHE_SECONDS must be a number of seconds from 0 to {MAX_CACHE_SECONDS:g}, got {raw!r}; "
                "a revoked key must stop working within 30 seconds"
            )
        return cls(
            table=env.get("GATEWAY_KEYS_TABLE", ""),
            region=env.get("GATEWAY_KEYS_REGION") or env.get("AWS_REGION") or "us-east-1",
            admin_key=env.get("GATEWAY_ADMIN_KEY", ""),
            admin_key_secret_arn=env.get("GATEWAY_ADMIN_KEY_SECRET_ARN", ""),
            cache_seconds=cache_seconds,
        )


# ---------------------------------------------------------------- secrets


def new_secret(name: str) -> str:
    return f"{KEY_PREFIX}{name}_{secrets.token_urlsafe(SECRET_BYTES)}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_name_of(secret: str) -> str | None:
    """The key name a team-key secret carries, or None when ``secret`` has not the team-key form."""
    if not secret.startswith(KEY_PREFIX) or len(secret) < len(KEY_PREFIX) + SECRET_CHARS + 2:
        return None
    name, separator = secret[len(KEY_PREFIX) : -SECRET_CHARS - 1], secret[-SECRET_CHARS - 1]
    return name if separator == "_" and KEY_NAME.match(name) else None


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of the secret's hash with the stored one."""
    return hmac.compare_digest(secret_hash(secret).encode(), stored_hash.encode())


# ---------------------------------------------------------------- the admin API's bodies


def _check_bots(bots: list[str] | None) -> list[str] | None:
    if bots is None:
        return None
    for bot in bots:
        if not BOT_PATTERN.match(bot):
            raise ValueError(
                f"bots: {bot!r} is neither a bot name nor a pattern (letters, digits, '.', '_', '-', and the "
                "wildcards '*', '?', '[...]'); fix it"
            )
    return list(dict.fromkeys(bots))


class KeyLimits(BaseModel):
    """The settings of a key an admin may change (``PATCH``: only the fields sent; ``null`` removes a limit)."""

    model_config = ConfigDict(extra="forbid")

    bots: list[str] | None = None  # names or fnmatch patterns; None: every bot
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    expires_at: AwareDatetime | None = None
    enabled: bool = True

    @field_validator("bots")
    @classmethod
    def _valid_bots(cls, value: list[str] | None) -> list[str] | None:
        return _check_bots(value)


class NewKey(KeyLimits):
    name: str = Field(pattern=KEY_NAME.pattern)


# ---------------------------------------------------------------- a key


@dataclass(frozen=True)
class TeamKey:
    name: str
    secret_sha256: str
    bots: tuple[str, ...] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    monthly_budget_usd: float | None = None
    expires_at: datetime | None = None
    enabled: bool = True
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime | None = None

    def may_use(self, bot: str) -> bool:
        return self.bots is None or any(fnmatchcase(bot, pattern) for pattern in self.bots)

    def usable(self, now: datetime) -> bool:
        return self.enabled and (self.expires_at is None or now < self.expires_at)

    def public(self) -> dict[str, Any]:
        """What the admin API shows of a key: everything but the secret's hash."""
        return {
            "name": self.name,
            "bots": None if self.bots is None else list(self.bots),
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "monthly_budget_usd": self.monthly_budget_usd,
            "expires_at": _iso(self.expires_at),
            "enabled": self.enabled,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- token buckets and slices

LEASE_SECONDS = 5.0  # a slice a process leased is used within this time; what is left then goes back to the table
SLICES_PER_LIMIT = 20  # a slice of a rate limit: 1/20 of a minute's allowance (3 s at the full rate), at least 1
SLICES_PER_BUDGET = 20  # a slice of a monthly budget: 1/20 of it


def month_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def seconds_to_next_month(now: datetime) -> int:
    now = now.astimezone(UTC)
    start = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return max(1, math.ceil((start - now).total_seconds()))


def slice_of(limit: float) -> int:
    """The requests or tokens a process leases at once for a per-minute ``limit``."""
    return max(1, math.ceil(limit / SLICES_PER_LIMIT))


@dataclass(frozen=True)
class Bucket:
    """One per-minute limit as a token bucket: it holds at most ``limit`` (a minute's allowance, the largest burst)
    and refills at ``limit`` per 60 seconds, continuously. ``level`` is what it held at ``at`` (epoch seconds);
    answers' tokens beyond what was leased for them make it negative, down to ``1 - limit``, so a key in debt waits
    at most a minute. ``full_at``: the last moment it held its limit (see ``lease_from``)."""

    limit: int
    level: float
    at: float
    full_at: float = 0.0

    def level_at(self, now: float) -> float:
        return min(float(self.limit), self.level + self.limit * max(0.0, now - self.at) / 60)

    def full_until(self, now: float) -> float:
        """The last moment, up to ``now``, at which the bucket held its limit."""
        return now if self.level_at(now) >= self.limit - 1e-9 else self.full_at

    def seconds_to(self, level: float, now: float) -> int:
        """Whole seconds until the bucket holds ``level`` (at least 1: a Retry-After)."""
        missing = level - self.level_at(now)
        return max(1, math.ceil(missing * 60 / self.limit - 1e-9))


def lease_from(
    bucket: Bucket,
    now: float,
    asked: int,
    returned: float = 0.0,
    owed: float = 0.0,
    leased_at: float = math.inf,
) -> tuple[Bucket, int]:
    """Give back ``returned`` (slices leased at ``leased_at`` or later, not used in time), take ``owed`` (answers'
    tokens beyond their slices) and lease up to ``asked`` whole units while the bucket holds at least 1: the bucket
    after, and what was leased.

    Units given back count again only if the bucket has not been full since they were leased: had they never been
    leased, a full bucket would have dropped them (it holds at most its limit), so crediting them then would let a
    burst pass the limit. Either way the bucket is what it would be had the unused units never left it."""
    full = bucket.full_until(now)
    level = bucket.level_at(now)
    if returned > 0 and leased_at >= full:  # full at the moment of the lease: before it
        level = min(float(bucket.limit), level + returned)
    if level >= bucket.limit - 1e-9:
        full = now
    level = max(1.0 - bucket.limit, level - owed)
    whole = math.floor(level + 1e-9)  # a bucket refilled to 1 in float steps may hold 0.9999999999999
    granted = max(0, min(asked, whole))
    return Bucket(bucket.limit, level - granted, now, full), granted


@dataclass(frozen=True)
class Wallet:
    """A process's slice of a key's monthly budget, as the month's item records it: the dollars not yet spent and
    the time (epoch seconds) after which the process no longer admits on it."""

    left: float
    until: float


def budget_available(budget: float, spent: float, wallets: Mapping[str, Wallet], me: str, now: float) -> float:
    """What is left of ``budget`` for process ``me`` to lease: the month's spend and the unspent slices other
    processes may still admit on (expired ones no longer count) are taken out."""
    held = sum(max(0.0, w.left) for owner, w in wallets.items() if owner != me and w.until > now)
    return budget - spent - held


# ---------------------------------------------------------------- a process's slices


@dataclass
class Slice:
    """Units a process leased: usable until ``until`` (epoch seconds), ``LEASE_SECONDS`` after they were leased."""

    left: float = 0.0
    until: float = 0.0

    @property
    def leased_at(self) -> float:
        return self.until - LEASE_SECONDS

    def usable(self, now: float, at_least: float) -> bool:
        return self.left >= at_least and now < self.until


@dataclass
class Permit:
    """What one process holds of one limit of a key: the slice it admits on and the next one, leased in the
    background before the first runs out. A slice not used in time is kept in ``expired`` (with the time the
    earliest of them was leased) until the next lease gives it back."""

    current: Slice = field(default_factory=Slice)
    following: Slice | None = None
    expired: float = 0.0
    expired_since: float = math.inf

    def set_aside(self, piece: Slice) -> None:
        if piece.left > 0:
            self.expired += piece.left
            self.expired_since = min(self.expired_since, piece.leased_at)
            piece.left = 0.0

    def roll(self, now: float) -> None:
        """Set aside a slice whose time is over; move to the next one when the current is spent or over."""
        if self.current.until <= now:
            self.set_aside(self.current)
        if self.following is not None and (self.current.left <= 0 or self.current.until <= now):
            if self.following.until > now:
                self.current = self.following
            else:
                self.set_aside(self.following)
            self.following = None

    def usable(self, now: float, at_least: float) -> bool:
        self.roll(now)
        return self.current.usable(now, at_least)

    def low(self, now: float, size: float) -> bool:
        """Time to lease the next slice: none is waiting, and the current is half spent or half through."""
        return self.following is None and (self.current.left < size / 2 or self.current.until - now < LEASE_SECONDS / 2)

    def add(self, granted: float, now: float) -> None:
        if granted <= 0:
            return
        fresh = Slice(granted, now + LEASE_SECONDS)
        if self.current.usable(now, 1e-12):
            self.following = fresh
        else:
            self.set_aside(self.current)
            self.current = fresh

    def take_back(self) -> tuple[float, float]:
        """The expired units to give back with the next lease and when the earliest was leased (cleared: put them
        back with ``keep`` if the lease fails)."""
        back = (self.expired, self.expired_since)
        self.expired, self.expired_since = 0.0, math.inf
        return back

    def keep(self, back: tuple[float, float]) -> None:
        self.expired += back[0]
        self.expired_since = min(self.expired_since, back[1])

    def draw(self, amount: float) -> float:
        """Spend up to ``amount`` from the slices (the current first); what was drawn."""
        drawn = 0.0
        for piece in (self.current, self.following):
            if piece is not None and piece.left > 0 and drawn < amount:
                taken = min(piece.left, amount - drawn)
                piece.left -= taken
                drawn += taken
        return drawn

    def held(self) -> float:
        return max(0.0, self.current.left) + (max(0.0, self.following.left) if self.following else 0.0)


# ---------------------------------------------------------------- refusals


def unknown_key() -> GatewayError:
    return GatewayError(401, UNKNOWN_KEY, openai_type="authentication_error", code="invalid_api_key")


def bot_refused(bot: str) -> GatewayError:
    """403 naming the bot asked for, never the bots the key may use (nor whether this one exists)."""
    shown = f"'{bot}'" if KEY_NAME.match(bot) else "(an invalid name)"
    return GatewayError(
        403,
        f"This access key may not use the bot {shown}. Ask the gateway's admin to add it to the key's bots.",
        openai_type="permission_error",
        code="bot_not_allowed",
    )


def rate_limited(limit: str, value: int, wait: int) -> GatewayError:
    """429 for a per-minute limit; ``wait``: the seconds until its bucket holds enough again (Retry-After)."""
    return GatewayError(
        429,
        f"This access key is over its limit of {value} {limit} per minute: retry in {wait} s.",
        openai_type="rate_limit_error",
        code=f"{limit}_per_minute_exceeded",
        retry_after=wait,
        should_retry=True,
        allow_retry=True,
    )


def usd(amount: float) -> str:
    """Dollars with cents, and the digits beyond them that are not zero (``$50.00``, ``$0.0000015``)."""
    text = f"{amount:.8f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def over_budget(key: TeamKey, spent: float, now: datetime) -> GatewayError:
    assert key.monthly_budget_usd is not None
    return GatewayError(
        429,
        f"This access key has spent {usd(spent)} of its monthly budget of {usd(key.monthly_budget_usd)} in "
        f"{month_of(now)} (UTC). It resets on the 1st; ask the gateway's admin to raise the budget.",
        openai_type="insufficient_quota",
        code="monthly_budget_exceeded",
        retry_after=seconds_to_next_month(now),
        should_retry=False,
    )


def budget_held(key: TeamKey, spent: float, now: datetime, wait: int) -> GatewayError:
    """429 when the month's spend is under the budget but the rest is leased by other gateway processes' requests
    (their slices come back within ``LEASE_SECONDS``)."""
    assert key.monthly_budget_usd is not None
    return GatewayError(
        429,
        f"This access key has spent {usd(spent)} of its monthly budget of {usd(key.monthly_budget_usd)} in "
        f"{month_of(now)} (UTC) and the rest is held by its requests in other gateway processes: retry in {wait} s.",
        openai_type="rate_limit_error",
        code="monthly_budget_held",
        retry_after=wait,
        should_retry=True,
        allow_retry=True,
    )
