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
    Bucket,
    NewKey,
    Permit,
    TeamKey,
    TeamKeySettings,
    Wallet,
    bot_refused,
    budget_available,
    key_name_of,
    lease_from,
    month_of,
    new_secret,
    over_budget,
    rate_limited,
    seconds_to_next_month,
    secret_hash,
    secret_matches,
    slice_of,
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


def test_months_and_their_retry_after_come_from_the_clock() -> None:
    # GIVEN 12:00:05 on the 14th of March THEN the month and the wait to the next one follow
    assert month_of(NOW) == "2026-03"
    assert seconds_to_next_month(datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC)) == 60  # into January


def test_a_bucket_refills_continuously_up_to_a_minutes_allowance() -> None:
    # GIVEN an empty bucket of 60 per minute
    bucket = Bucket(60, 0.0, 1000.0)
    # THEN it refills by one a second, never past 60, and says how long it takes to hold one
    assert bucket.level_at(1000.5) == pytest.approx(0.5) and bucket.level_at(1030) == 30
    assert bucket.level_at(5000) == 60
    assert bucket.seconds_to(1, 1000.0) == 1 and bucket.seconds_to(1, 1000.5) == 1
    assert Bucket(2, 0.0, 0.0).seconds_to(1, 0.0) == 30


def test_a_lease_takes_whole_units_gives_back_and_pays_tokens_owed() -> None:
    # GIVEN a full bucket of 10
    full = Bucket(10, 10.0, 0.0)
    # WHEN a slice of 4 is leased THEN 4 leave the bucket
    after, granted = lease_from(full, 0.0, 4)
    assert granted == 4 and after.level == 6
    # WHEN more is asked than it holds THEN only the whole units it holds are leased
    after, granted = lease_from(Bucket(10, 2.5, 0.0), 0.0, 4)
    assert granted == 2 and after.level == pytest.approx(0.5)
    # WHEN an unused slice comes back to a full bucket THEN nothing passes the limit
    after, _ = lease_from(full, 0.0, 0, returned=3)
    assert after.level == 10
    # WHEN answers owe more tokens than it holds THEN it goes into debt, at most a minute's worth
    after, granted = lease_from(full, 0.0, 4, owed=500)
    assert granted == 0 and after.level == 1 - 10 and after.seconds_to(1, 0.0) == 60


def test_units_given_back_count_again_only_if_the_bucket_was_not_full_since_they_were_leased() -> None:
    # GIVEN a bucket of 4 that leased 1 at t=0 (3 left) and was then refilled to full by t=15
    bucket, _ = lease_from(Bucket(4, 4.0, 0.0, 0.0), 0.0, 1)
    # WHEN another process empties it at t=100 and the unused unit comes back then
    drained, taken = lease_from(bucket, 100.0, 4)
    after, granted = lease_from(drained, 100.0, 4, returned=1, leased_at=0.0)
    # THEN the unit does not count again: a full bucket would have dropped it, and the burst stays at 4
    assert taken == 4 and granted == 0
    # WHEN a unit comes back to a bucket that was not full since it was leased
    leased, _ = lease_from(Bucket(4, 2.0, 0.0, -100.0), 0.0, 1)
    back, granted = lease_from(leased, 1.0, 0, returned=1, leased_at=0.0)
    # THEN it counts again, as if it had never left
    assert back.level == pytest.approx(2.0 + 4 / 60)


def test_a_burst_at_a_minute_boundary_passes_no_more_than_the_limit() -> None:
    # GIVEN a bucket of 4 per minute, full at 12:00:59.5
    now = datetime(2026, 3, 14, 12, 0, 59, 500000, tzinfo=UTC).timestamp()
    bucket = Bucket(4, 4.0, now)
    # WHEN a burst asks 4 before the minute turns and 4 more one second later
    bucket, before = lease_from(bucket, now, 4)
    bucket, after = lease_from(bucket, now + 1, 4)
    # THEN the first 4 pass and none of the next (a fixed window would have passed all 8)
    assert (before, after) == (4, 0)
    # AND a minute after the burst the bucket holds the limit again, not more
    assert bucket.level_at(now + 61) == 4


def test_slices_are_a_twentieth_of_a_limit_and_at_least_one() -> None:
    assert [slice_of(1), slice_of(20), slice_of(600), slice_of(200_000)] == [1, 1, 30, 10_000]


def test_a_permit_admits_on_its_slice_then_the_next_and_gives_back_what_expired() -> None:
    # GIVEN a permit with a slice of 3 leased at t=0 and the next one of 3 leased at t=1
    permit = Permit()
    permit.add(3, 0.0)
    permit.add(3, 1.0)
    # WHEN the first slice is spent THEN the next one is used
    permit.current.left = 0
    assert permit.usable(2.0, 1) and permit.current.left == 3 and permit.following is None
    # WHEN its time is over unused THEN it is set aside to be given back once, with the time it was leased
    assert not permit.usable(6.0, 1)
    assert permit.take_back() == (3, 1.0) and permit.take_back()[0] == 0
    # AND an answer draws from the slices it holds, never more
    permit.add(2, 6.0)
    assert permit.draw(5) == 2 and permit.held() == 0


def test_a_budget_leases_what_is_neither_spent_nor_held_by_other_processes() -> None:
    # GIVEN a budget of $10, $4 spent, $3 held by a live process, $2 by one whose slice expired
    wallets = {"me": Wallet(1.0, 100.0), "live": Wallet(3.0, 100.0), "gone": Wallet(2.0, 50.0)}
    # THEN what is left for this process counts the live slice and not the expired one (nor its own)
    assert budget_available(10.0, 4.0, wallets, "me", 60.0) == pytest.approx(3.0)


def test_refusals_name_the_limit_and_never_the_keys_bots() -> None:
    # GIVEN each refusal
    limited = rate_limited("requests", 60, 55)
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
