"""Team keys without I/O: secrets and their hashes, the constant-time comparison, bot patterns, windows and
refusals on an injected clock, settings."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from lambdas.gateway import team_keys
from lambdas.gateway.key_store import from_item, to_item
from lambdas.gateway.team_keys import (
    NewKey,
    TeamKey,
    TeamKeySettings,
    bot_refused,
    key_name_of,
    minute_of,
    month_of,
    new_secret,
    over_budget,
    rate_limited,
    seconds_to_next_minute,
    seconds_to_next_month,
    secret_hash,
    secret_matches,
    usd,
)

NOW = datetime(2026, 3, 14, 12, 0, 5, tzinfo=UTC)


def test_a_secret_carries_its_key_name_and_256_random_bits() -> None:
    # GIVEN two secrets of one key
    first, second = new_secret("team-a"), new_secret("team-a")
    # THEN each names the key, they differ, and the random part is 32 bytes in base64url
    assert key_name_of(first) == key_name_of(second) == "team-a"
    assert first != second and len(first) == len("gwk_team-a_") + 43
    # AND names with the separator inside still parse (the random part has a fixed length)
    assert key_name_of(new_secret("a_b.c-d")) == "a_b.c-d"


@pytest.mark.parametrize(
    "given", ["", "sk-legacy-key", "gwk_", "gwk_team_short", "gwk__" + "A" * 43, "gwk_bad name_" + "A" * 43]
)
def test_other_bearer_keys_are_not_team_keys(given: str) -> None:
    # GIVEN a bearer value that is not a team key's form THEN no key name is read from it
    assert key_name_of(given) is None


def test_the_table_keeps_the_sha256_and_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a secret and its stored hash
    secret = new_secret("team-a")
    stored = secret_hash(secret)
    assert stored == hashlib.sha256(secret.encode()).hexdigest() and secret not in stored
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(team_keys.hmac, "compare_digest", spy)
    # WHEN the right and a wrong secret are checked
    assert secret_matches(secret, stored)
    assert not secret_matches(secret[:-1] + ("B" if secret[-1] != "B" else "C"), stored)
    # THEN both went through hmac.compare_digest, on hashes of equal length
    assert len(compared) == 2 and all(len(a) == len(b) == 64 for a, b in compared)


def test_bots_are_names_or_patterns_and_absent_means_every_bot() -> None:
    # GIVEN keys with patterns, names and no list
    patterned = TeamKey("a", "h", bots=("claude-*", "nova-micro"))
    every = TeamKey("b", "h")
    # THEN the patterns and names match and nothing else does
    assert patterned.may_use("claude-sonnet-4.5") and patterned.may_use("nova-micro")
    assert not patterned.may_use("nova-pro") and not patterned.may_use("CLAUDE-x")
    assert every.may_use("anything")


def test_disabled_and_expired_keys_are_unusable() -> None:
    # GIVEN keys enabled, disabled, expiring THEN usability follows the clock
    assert TeamKey("a", "h").usable(NOW)
    assert not TeamKey("a", "h", enabled=False).usable(NOW)
    expiring = TeamKey("a", "h", expires_at=NOW + timedelta(seconds=1))
    assert expiring.usable(NOW) and not expiring.usable(NOW + timedelta(seconds=1))


def test_windows_and_retry_after_come_from_the_clock() -> None:
    # GIVEN 12:00:05 on the 14th of March THEN the minute, the month and the waits follow
    assert minute_of(NOW) == minute_of(NOW + timedelta(seconds=54)) != minute_of(NOW + timedelta(seconds=55))
    assert seconds_to_next_minute(NOW) == 55
    assert month_of(NOW) == "2026-03"
    assert seconds_to_next_month(datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC)) == 60  # into January


def test_refusals_name_the_limit_and_never_the_keys_bots() -> None:
    # GIVEN each refusal
    limited = rate_limited("requests", 60, NOW)
    spent = over_budget(TeamKey("a", "h", monthly_budget_usd=5), 5.25, NOW)
    forbidden = bot_refused("nova-pro")
    # THEN statuses, headers and messages say what happened and what to do
    assert (limited.status, limited.headers()["Retry-After"]) == (429, "55")
    assert "60 requests per minute" in limited.message and limited.openai_type == "rate_limit_error"
    assert spent.status == 429 and "$5.25 of its monthly budget of $5.00 in 2026-03" in spent.message
    assert spent.openai_type == "insufficient_quota" and spent.headers()["x-should-retry"] == "false"
    assert forbidden.status == 403 and "'nova-pro'" in forbidden.message
    assert "(an invalid name)" in bot_refused("../../etc").message


def test_usd_shows_cents_and_the_digits_beyond_them() -> None:
    assert [usd(50), usd(0.000001), usd(1.5e-06), usd(12.345)] == ["$50.00", "$0.000001", "$0.0000015", "$12.345"]


def test_a_new_key_is_validated_with_the_field_named() -> None:
    # GIVEN bad bodies WHEN validated THEN the field is named
    with pytest.raises(ValidationError, match="bots"):
        NewKey.model_validate({"name": "team", "bots": ["a b"]})
    with pytest.raises(ValidationError, match="expires_at"):
        NewKey.model_validate({"name": "team", "expires_at": "2027-01-01T00:00:00"})  # no zone
    assert NewKey.model_validate({"name": "team", "bots": ["x", "x"]}).bots == ["x"]


def test_a_key_record_round_trips_through_its_item_without_the_secret() -> None:
    # GIVEN a key with every setting
    key = TeamKey("team-a", secret_hash("s"), ("claude-*",), 10, 1000, 2.5, NOW, False, NOW, NOW)
    # WHEN written as a DynamoDB item and read back THEN it is the same, and the item holds the hash only
    item = to_item(key)
    assert from_item(item) == key
    assert item["secret_sha256"] == {"S": secret_hash("s")} and "s" not in [v.get("S") for v in item.values()]
    assert "secret_sha256" not in key.public()


@pytest.mark.parametrize("value", ["31", "-1", "soon"])
def test_the_cache_never_outlives_30_seconds(value: str) -> None:
    # GIVEN a cache time over 30 s or not a number WHEN read THEN it is refused, naming the variable
    with pytest.raises(ValueError, match="GATEWAY_KEY_CACHE_SECONDS"):
        TeamKeySettings.from_env({"GATEWAY_KEY_CACHE_SECONDS": value})
    assert TeamKeySettings.from_env({}).cache_seconds == 30
