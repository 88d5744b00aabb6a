"""The team-key table (DynamoDB, on-demand): key records, monthly usage and the per-minute limits' token buckets, by
key name.

Items (partition key ``pk``, sort key ``sk``):

- ``key#<name>`` / ``key``: the record (secret hash, bots, limits, expiry, enabled);
- ``key#<name>`` / ``month#YYYY-MM``: the month's usage: ``requests``, ``tokens``, ``cost_usd``, and the same per bot
  (``requests#<bot>``, ``tokens#<bot>``, ``cost_usd#<bot>``); and the budget slices gateway processes leased
  (``wallet#<process>``: nano-dollars not yet spent, ``wallet_until#<process>``, ``lease_version``);
- ``key#<name>`` / ``bucket``: the token buckets of ``requests_per_minute`` and ``tokens_per_minute``
  (``requests_level``, ``tokens_level``, ``refilled_at``, ``version``), the tokens answers owe them
  (``tokens_owed``), deleted by DynamoDB's TTL (``expires``) an hour after the key's last lease.

Usage counters are atomic ``UpdateItem ... ADD``s. Limits are leased by slices (``lease_rate``, ``lease_budget``): a
process reads the item, computes the slice, and writes it with one conditional ``UpdateItem`` that holds only if no
other lease changed the item in between; the requests it admits then need no table call until the slice runs low
(``lambdas.gateway.key_guard``). The client is passed in (aiobotocore's ``dynamodb``), so the same code runs on
DynamoDB and on moto.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas.gateway.errors import GatewayError
from lambdas.gateway.team_keys import LEASE_SECONDS, Bucket, TeamKey, Wallet, budget_available, lease_from, month_of

KEY_SK = "key"
BUCKET_SK = "bucket"
CONDITION_FAILED = "ConditionalCheckFailedException"
COUNTERS = ("requests", "tokens", "cost_usd")


def _pk(name: str) -> dict[str, Any]:
    return {"S": f"key#{name}"}


def _number(value: float) -> dict[str, str]:
    text = f"{value:.12f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return {"N": text or "0"}


def _read_number(item: Mapping[str, Any], name: str) -> float:
    return float(item[name]["N"]) if name in item else 0.0


def _failed_condition(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == CONDITION_FAILED


# ---------------------------------------------------------------- records


def to_item(key: TeamKey) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": _pk(key.name),
        "sk": {"S": KEY_SK},
        "name": {"S": key.name},
        "secret_sha256": {"S": key.secret_sha256},
        "enabled": {"BOOL": key.enabled},
        "created_at": {"S": key.created_at.isoformat()},
    }
    if key.bots is not None:
        item["bots"] = {"L": [{"S": bot} for bot in key.bots]}
    for name in ("requests_per_minute", "tokens_per_minute", "monthly_budget_usd"):
        value = getattr(key, name)
        if value is not None:
            item[name] = _number(value)
    if key.expires_at is not None:
        item["expires_at"] = {"S": key.expires_at.isoformat()}
    if key.updated_at is not None:
        item["updated_at"] = {"S": key.updated_at.isoformat()}
    return item


def from_item(item: Mapping[str, Any]) -> TeamKey:
    def integer(name: str) -> int | None:
        return int(item[name]["N"]) if name in item else None

    def moment(name: str) -> datetime | None:
        return datetime.fromisoformat(item[name]["S"]) if name in item else None

    created = moment("created_at")
    return TeamKey(
        name=item["name"]["S"],
        secret_sha256=item["secret_sha256"]["S"],
        bots=tuple(bot["S"] for bot in item["bots"]["L"]) if "bots" in item else None,
        requests_per_minute=integer("requests_per_minute"),
        tokens_per_minute=integer("tokens_per_minute"),
        monthly_budget_usd=float(item["monthly_budget_usd"]["N"]) if "monthly_budget_usd" in item else None,
        expires_at=moment("expires_at"),
        enabled=item.get("enabled", {}).get("BOOL", True),
        **({"created_at": created} if created else {}),
        updated_at=moment("updated_at"),
    )


async def get_key(client: Any, table: str, name: str) -> TeamKey | None:
    answer = await client.get_item(TableName=table, Key={"pk": _pk(name), "sk": {"S": KEY_SK}}, ConsistentRead=True)
    item = answer.get("Item")
    return from_item(item) if item else None


async def create_key(client: Any, table: str, key: TeamKey) -> None:
    """Store a new key; 409 when the name is taken."""
    try:
        await client.put_item(TableName=table, Item=to_item(key), ConditionExpression="attribute_not_exists(pk)")
    except ClientError as error:
        if _failed_condition(error):
            raise GatewayError(
                409, f"A key named '{key.name}' exists; choose another name or revoke it first.", code="key_exists"
            ) from None
        raise


async def replace_key(client: Any, table: str, key: TeamKey) -> None:
    """Store ``key``'s new settings over the record it was read from (same secret); 404 when it is gone."""
    try:
        await client.put_item(
            TableName=table,
            Item=to_item(key),
            ConditionExpression="secret_sha256 = :hash",
            ExpressionAttributeValues={":hash": {"S": key.secret_sha256}},
        )
    except ClientError as error:
        if _failed_condition(error):
            raise no_such_key(key.name) from None
        raise


async def delete_key(client: Any, table: str, name: str) -> None:
    """Revoke: the record goes (its usage stays, for the months it was used); 404 when there is none."""
    try:
        await client.delete_item(
            TableName=table,
            Key={"pk": _pk(name), "sk": {"S": KEY_SK}},
            ConditionExpression="attribute_exists(pk)",
        )
    except ClientError as error:
        if _failed_condition(error):
            raise no_such_key(name) from None
        raise


async def list_keys(client: Any, table: str) -> list[TeamKey]:
    keys: list[TeamKey] = []
    start: dict[str, Any] | None = None
    while True:
        page = await client.scan(
            TableName=table,
            FilterExpression="sk = :key",
            ExpressionAttributeValues={":key": {"S": KEY_SK}},
            **({"ExclusiveStartKey": start} if start else {}),
        )
        keys.extend(from_item(item) for item in page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            return sorted(keys, key=lambda key: key.name)


def no_such_key(name: str) -> GatewayError:
    return GatewayError(404, f"There is no key named '{name}'.", code="key_not_found")


# ---------------------------------------------------------------- limits: slices leased by each process

LEASE_ATTEMPTS = 10  # conditional writes a lease tries (each after another process's lease changed the item)
BUCKET_NAMES = {
    "#requests": "requests_level",
    "#tokens": "tokens_level",
    "#at": "refilled_at",
    "#version": "version",
    "#owed": "tokens_owed",
    "#requests_full": "requests_full_at",
    "#tokens_full": "tokens_full_at",
    "#expires": "expires",
}
BUCKET_TTL_SECONDS = 3600  # an idle key's bucket item goes an hour after its last lease (a full bucket again)


NANO_USD = 1e9  # budget slices are kept in whole nano-dollars: integers, exact in DynamoDB's decimal arithmetic


def _nano(dollars: float) -> dict[str, str]:
    return {"N": str(round(dollars * NANO_USD))}


class LeaseConflict(Exception):
    """Other processes kept changing the item between this process's read and its conditional write."""


@dataclass
class RateLease:
    """What a lease of a key's per-minute limits got, and its buckets after it (for a Retry-After)."""

    requests: int = 0
    tokens: int = 0
    requests_bucket: Bucket | None = None
    tokens_bucket: Bucket | None = None
    item: dict[str, Any] = field(default_factory=dict)  # the bucket item as written: the next lease starts from it


def _bucket(item: Mapping[str, Any], kind: str, limit: int | None, now: float) -> Bucket | None:
    if limit is None:
        return None
    if f"{kind}_level" not in item:  # a new key, an idle one whose item TTL deleted, or a limit just set: full
        return Bucket(limit, float(limit), now, now)
    level, full_at = _read_number(item, f"{kind}_level"), _read_number(item, f"{kind}_full_at")
    return Bucket(limit, level, _read_number(item, "refilled_at"), full_at)


async def _conditional(client: Any, request: dict[str, Any]) -> dict[str, Any] | None:
    """One conditional UpdateItem: None when it was written, else the item as it is (``ALL_OLD``)."""
    try:
        await client.update_item(**request, ReturnValuesOnConditionCheckFailure="ALL_OLD")
    except ClientError as error:
        if not _failed_condition(error):
            raise
        return dict(error.response.get("Item") or {})
    return None


async def lease_rate(
    client: Any,
    table: str,
    key: TeamKey,
    item: Mapping[str, Any],
    now: float,
    *,
    requests: tuple[int, tuple[float, float]] = (0, (0.0, math.inf)),
    tokens: tuple[int, tuple[float, float]] = (0, (0.0, math.inf)),
) -> RateLease:
    """Lease slices of the key's per-minute limits from its token buckets (item ``bucket``): ``requests`` and
    ``tokens`` are (units asked, (expired units given back, when the earliest was leased)). ``item``: the bucket
    item as this process last saw it.

    The buckets are refilled, the answers' tokens owed are taken and the slices leased in Python; one UpdateItem
    writes the result on the condition that the item's ``version`` is still the one read. When another process
    leased in between, the write fails with the item as it is now (``ALL_OLD``) and the lease is computed again."""
    seen = dict(item)
    for _ in range(LEASE_ATTEMPTS):
        version = int(_read_number(seen, "version"))
        owed = _read_number(seen, "tokens_owed")
        out = RateLease(item=seen)
        values: dict[str, Any] = {
            ":at": _number(now),
            ":next": {"N": str(version + 1)},
            ":expires": {"N": str(int(now) + BUCKET_TTL_SECONDS)},
        }
        sets = ["#at = :at", "#version = :next", "#expires = :expires"]
        written: dict[str, Any] = {"refilled_at": values[":at"], "version": values[":next"]}
        requests_bucket = _bucket(seen, "requests", key.requests_per_minute, now)
        if requests_bucket is not None:
            back, since = requests[1]
            out.requests_bucket, out.requests = lease_from(requests_bucket, now, requests[0], back, leased_at=since)
            values[":requests"] = written["requests_level"] = _number(out.requests_bucket.level)
            values[":requests_full"] = written["requests_full_at"] = _number(out.requests_bucket.full_at)
            sets += ["#requests = :requests", "#requests_full = :requests_full"]
        tokens_bucket = _bucket(seen, "tokens", key.tokens_per_minute, now)
        if tokens_bucket is not None:
            back, since = tokens[1]
            out.tokens_bucket, out.tokens = lease_from(tokens_bucket, now, tokens[0], back, owed, since)
            values[":tokens"] = written["tokens_level"] = _number(out.tokens_bucket.level)
            values[":tokens_full"] = written["tokens_full_at"] = _number(out.tokens_bucket.full_at)
            sets += ["#tokens = :tokens", "#tokens_full = :tokens_full"]
        update = "SET " + ", ".join(sets)
        if owed and tokens_bucket is not None:  # taken into the bucket: off the counter (ADD keeps newer debts)
            values[":paid"] = _number(-owed)
            update += " ADD #owed :paid"
        conditions = ["attribute_not_exists(#version)"]
        if version:
            conditions, values[":seen"] = ["#version = :seen"], {"N": str(version)}
        if tokens_bucket is not None:  # answers' tokens added since the read: computed again with them
            if "tokens_owed" in seen:
                conditions.append("#owed = :owed_seen")
                values[":owed_seen"] = seen["tokens_owed"]
            else:
                conditions.append("attribute_not_exists(#owed)")
        condition = " AND ".join(conditions)
        used = {name: attribute for name, attribute in BUCKET_NAMES.items() if name in update + condition}
        current = await _conditional(
            client,
            {
                "TableName": table,
                "Key": {"pk": _pk(key.name), "sk": {"S": BUCKET_SK}},
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": used,
                "ExpressionAttributeValues": values,
            },
        )
        if current is None:
            out.item = {**seen, **written}
            if ":paid" in values:
                out.item["tokens_owed"] = {"N": "0"}
            return out
        seen = current
    raise LeaseConflict(key.name)


@dataclass
class BudgetLease:
    """What a lease of a key's monthly budget got, the month's spend and the other processes' slices it saw."""

    granted: float = 0.0
    spent: float = 0.0
    wallets: dict[str, Wallet] = field(default_factory=dict)
    item: dict[str, Any] = field(default_factory=dict)


def wallets_of(item: Mapping[str, Any]) -> dict[str, Wallet]:
    """The budget slices recorded in a month's item (``wallet#<process>`` in nano-dollars, ``wallet_until#<process>``
    in epoch seconds); a slice
    without its time (left by an answer settled after its process's slice was cleared) has expired."""
    found: dict[str, Wallet] = {}
    for attribute in item:
        kind, _, owner = attribute.partition("#")
        if kind == "wallet" and owner:
            left = _read_number(item, attribute) / NANO_USD
            found[owner] = Wallet(left, _read_number(item, f"wallet_until#{owner}"))
    return found


async def lease_budget(
    client: Any,
    table: str,
    key: TeamKey,
    process: str,
    item: Mapping[str, Any],
    now: datetime,
    *,
    asked: float,
    held: float,
    returned: float,
) -> BudgetLease:
    """Lease a slice of the key's monthly budget for ``process``, which still ``held`` dollars of unexpired slices
    and gives ``returned`` back. The month's spend and the slices other processes may still admit on are read from
    the month's item; one UpdateItem adds the slice to ``wallet#<process>`` on the condition that no other lease
    changed the item in between (``lease_version``), and clears the slices of processes long gone."""
    assert key.monthly_budget_usd is not None
    moment = now.timestamp()
    seen = dict(item)
    month_key = {"pk": _pk(key.name), "sk": {"S": f"month#{month_of(now)}"}}
    for _ in range(LEASE_ATTEMPTS):
        version = int(_read_number(seen, "lease_version"))
        wallets = wallets_of(seen)
        spent = _read_number(seen, "cost_usd")
        available = budget_available(key.monthly_budget_usd, spent, wallets, process, moment) - held
        granted = max(0.0, min(asked, available))
        names = {"#mine": f"wallet#{process}", "#until": f"wallet_until#{process}", "#version": "lease_version"}
        values: dict[str, Any] = {
            ":delta": _nano(granted - returned),
            ":until": _number(moment + LEASE_SECONDS),
            ":next": {"N": str(version + 1)},
        }
        update = "SET #until = :until, #version = :next ADD #mine :delta"
        gone = [owner for owner, wallet in wallets.items() if owner != process and wallet.until < moment - 60][:20]
        if gone:
            for index, owner in enumerate(gone):
                names[f"#gone{index}"], names[f"#gone_until{index}"] = f"wallet#{owner}", f"wallet_until#{owner}"
            update += " REMOVE " + ", ".join(f"#gone{i}, #gone_until{i}" for i in range(len(gone)))
        conditions = ["attribute_not_exists(#version)"]
        if version:
            conditions, values[":seen"] = ["#version = :seen"], {"N": str(version)}
        names["#spent"] = "cost_usd"  # answers charged since the read: computed again with them
        if "cost_usd" in seen:
            conditions.append("#spent = :spent")
            values[":spent"] = seen["cost_usd"]
        else:
            conditions.append("attribute_not_exists(#spent)")
        condition = " AND ".join(conditions)
        current = await _conditional(
            client,
            {
                "TableName": table,
                "Key": month_key,
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            },
        )
        if current is None:
            written = {**seen, "lease_version": values[":next"], f"wallet_until#{process}": values[":until"]}
            mine = int(_read_number(seen, f"wallet#{process}")) + int(values[":delta"]["N"])
            written[f"wallet#{process}"] = {"N": str(mine)}
            for owner in gone:
                written.pop(f"wallet#{owner}", None)
                written.pop(f"wallet_until#{owner}", None)
            return BudgetLease(granted, spent, wallets, written)
        seen = current
    raise LeaseConflict(key.name)


@dataclass
class Spend:
    """What one request's answers cost, per bot (tokens: input, cache included, plus output), and what of it was
    drawn from the process's leased slices (``wallet_drawn``: dollars; ``tokens_owed``: tokens beyond the slices)."""

    per_bot: dict[str, list[float]] = field(default_factory=dict)  # bot -> [answers, tokens, cost_usd]

    def add(self, bot: str, tokens: int, cost_usd: float) -> None:
        counts = self.per_bot.setdefault(bot, [0, 0, 0.0])
        counts[0] += 1
        counts[1] += tokens
        counts[2] += cost_usd

    @property
    def tokens(self) -> int:
        return int(sum(counts[1] for counts in self.per_bot.values()))

    @property
    def cost_usd(self) -> float:
        return float(sum(counts[2] for counts in self.per_bot.values()))


async def record_spend(
    client: Any,
    table: str,
    key: TeamKey,
    spend: Spend,
    now: datetime,
    *,
    process: str = "",
    wallet_drawn: float = 0.0,
    tokens_owed: int = 0,
) -> float:
    """Add ``spend`` to the month's counters (and take ``wallet_drawn`` off ``process``'s budget slice in the same
    write); add ``tokens_owed`` to the key's bucket item, taken into its tokens bucket by the next lease. Return the
    month's spend after it."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    adds: list[str] = []
    totals = [0.0, 0.0, 0.0]
    for index, (bot, counts) in enumerate(sorted(spend.per_bot.items())):
        for position, counter in enumerate(COUNTERS):
            names[f"#{counter}{index}"] = f"{counter}#{bot}"
            values[f":{counter}{index}"] = _number(counts[position] if position == 2 else int(counts[position]))
            adds.append(f"#{counter}{index} :{counter}{index}")
            totals[position] += counts[position]
    for position, counter in enumerate(COUNTERS):
        values[f":{counter}"] = _number(totals[position] if position == 2 else int(totals[position]))
        adds.append(f"{counter} :{counter}")
    if process and wallet_drawn:
        names["#wallet"] = f"wallet#{process}"
        values[":drawn"] = _nano(-wallet_drawn)
        adds.append("#wallet :drawn")
    writes = [
        client.update_item(
            TableName=table,
            Key={"pk": _pk(key.name), "sk": {"S": f"month#{month_of(now)}"}},
            UpdateExpression="ADD " + ", ".join(adds),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="UPDATED_NEW",
        )
    ]
    if tokens_owed > 0:
        writes.append(
            client.update_item(
                TableName=table,
                Key={"pk": _pk(key.name), "sk": {"S": BUCKET_SK}},
                UpdateExpression="ADD #owed :owed",
                ExpressionAttributeNames={"#owed": "tokens_owed"},
                ExpressionAttributeValues={":owed": {"N": str(tokens_owed)}},
            )
        )
    month, *_ = await asyncio.gather(*writes)
    return _read_number(month.get("Attributes") or {}, "cost_usd")


async def usage(client: Any, table: str, name: str, month: str) -> dict[str, Any]:
    """The month's requests (answers), tokens and cost, per bot and in total."""
    answer = await client.get_item(
        TableName=table, Key={"pk": _pk(name), "sk": {"S": f"month#{month}"}}, ConsistentRead=True
    )
    item = answer.get("Item") or {}
    bots: dict[str, dict[str, float]] = {}
    for attribute, value in item.items():
        counter, _, bot = attribute.partition("#")
        if bot and counter in COUNTERS:
            bots.setdefault(bot, dict.fromkeys(COUNTERS, 0))[counter] = float(value["N"])

    def shaped(counts: Mapping[str, float]) -> dict[str, Any]:
        return {"requests": int(counts["requests"]), "tokens": int(counts["tokens"]), "cost_usd": counts["cost_usd"]}

    total = {counter: _read_number(item, counter) for counter in COUNTERS}
    return {
        "key": name,
        "month": month,
        **shaped(total),
        "bots": {bot: shaped(counts) for bot, counts in sorted(bots.items())},
    }
