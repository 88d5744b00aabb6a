"""The team-key table (DynamoDB, on-demand): key records, monthly usage and one-minute rate windows, by key name.

Items (partition key ``pk``, sort key ``sk``):

- ``key#<name>`` / ``key``: the record (secret hash, bots, limits, expiry, enabled);
- ``key#<name>`` / ``month#YYYY-MM``: the month's usage: ``requests``, ``tokens``, ``cost_usd``, and the same per bot
  (``requests#<bot>``, ``tokens#<bot>``, ``cost_usd#<bot>``);
- ``key#<name>`` / ``minute#<minutes since the epoch>``: a fixed one-minute window (``requests``, ``tokens``),
  deleted by DynamoDB's TTL (``expires``) an hour later.

Every counter is an atomic ``UpdateItem ... ADD``; a request is admitted by one conditional ``ADD`` on its minute
(the condition holds the limits) and one strongly consistent read of its month's spend. The client is passed in
(aiobotocore's ``dynamodb``), so the same code runs on DynamoDB and on moto.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas.gateway.errors import GatewayError
from lambdas.gateway.team_keys import (
    TeamKey,
    minute_of,
    month_of,
    over_budget,
    rate_limited,
)

KEY_SK = "key"
MINUTE_TTL_SECONDS = 3600  # a minute window's item is kept an hour, then DynamoDB's TTL deletes it
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


# ---------------------------------------------------------------- limits


async def admit(client: Any, table: str, key: TeamKey, now: datetime) -> None:
    """Count the request in its minute and refuse it (429) when the key is over a rate limit or its monthly budget.

    The minute's counters are checked and the request counted in one conditional ``ADD``; the budget against the
    month's spend as recorded by the answers finished so far (a strongly consistent read)."""
    checks = []
    if key.requests_per_minute is not None or key.tokens_per_minute is not None:
        checks.append(_count_request(client, table, key, now))
    if key.monthly_budget_usd is not None:
        checks.append(_check_budget(client, table, key, now))
    await asyncio.gather(*checks)


async def _count_request(client: Any, table: str, key: TeamKey, now: datetime) -> None:
    minute = minute_of(now)
    conditions: list[str] = []
    values: dict[str, Any] = {":one": {"N": "1"}, ":expires": {"N": str(minute * 60 + MINUTE_TTL_SECONDS)}}
    if key.requests_per_minute is not None:
        conditions.append("(attribute_not_exists(requests) OR requests < :rpm)")
        values[":rpm"] = {"N": str(key.requests_per_minute)}
    if key.tokens_per_minute is not None:
        conditions.append("(attribute_not_exists(tokens) OR tokens < :tpm)")
        values[":tpm"] = {"N": str(key.tokens_per_minute)}
    try:
        await client.update_item(
            TableName=table,
            Key={"pk": _pk(key.name), "sk": {"S": f"minute#{minute}"}},
            UpdateExpression="ADD requests :one SET expires = :expires",
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as error:
        if not _failed_condition(error):
            raise
        item = error.response.get("Item") or {}
        rpm = key.requests_per_minute
        if rpm is not None and _read_number(item, "requests") >= rpm:
            raise rate_limited("requests", rpm, now) from None
        raise rate_limited("tokens", key.tokens_per_minute or 0, now) from None


async def _check_budget(client: Any, table: str, key: TeamKey, now: datetime) -> None:
    assert key.monthly_budget_usd is not None
    answer = await client.get_item(
        TableName=table,
        Key={"pk": _pk(key.name), "sk": {"S": f"month#{month_of(now)}"}},
        ConsistentRead=True,
        ProjectionExpression="cost_usd",
    )
    spent = _read_number(answer.get("Item") or {}, "cost_usd")
    if spent >= key.monthly_budget_usd:
        raise over_budget(key, spent, now)


@dataclass
class Spend:
    """What one request's answers cost, per bot (tokens: input, cache included, plus output)."""

    per_bot: dict[str, list[float]] = field(default_factory=dict)  # bot -> [answers, tokens, cost_usd]

    def add(self, bot: str, tokens: int, cost_usd: float) -> None:
        counts = self.per_bot.setdefault(bot, [0, 0, 0.0])
        counts[0] += 1
        counts[1] += tokens
        counts[2] += cost_usd

    @property
    def tokens(self) -> int:
        return int(sum(counts[1] for counts in self.per_bot.values()))


async def record_spend(client: Any, table: str, key: TeamKey, spend: Spend, now: datetime) -> float:
    """Add ``spend`` to the month's counters (and the tokens to the minute's, when the key limits tokens); return
    the month's spend after it."""
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
    if key.tokens_per_minute is not None and spend.tokens:
        minute = minute_of(now)
        writes.append(
            client.update_item(
                TableName=table,
                Key={"pk": _pk(key.name), "sk": {"S": f"minute#{minute}"}},
                UpdateExpression="ADD tokens :tokens SET expires = :expires",
                ExpressionAttributeValues={
                    ":tokens": {"N": str(spend.tokens)},
                    ":expires": {"N": str(minute * 60 + MINUTE_TTL_SECONDS)},
                },
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
