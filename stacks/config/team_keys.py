"""Team keys of the gateway (docs/gateway/keys.md): the key table's deletion protection and the budget alarm."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stacks.config.common import Context, setting

DELETION_PROTECTION = setting(
    "gateway",
    "gatewayKeysDeletionProtection",
    True,
    "deletion protection of the team-key table (it is kept when the stack is deleted either way)",
)
BUDGET_ALARM_PERCENT = setting(
    "gateway",
    "gatewayKeyBudgetAlarmPercent",
    80,
    "the share of a team key's monthly budget past which the budget alarm fires",
    low=1,
    high=100,
)


@dataclass(frozen=True)
class GatewayKeysConfig:
    """Team keys: whether the key table is protected from deletion, and the share of a key's monthly budget, in
    percent, past which the budget alarm fires."""

    deletion_protection: bool = DELETION_PROTECTION.default
    budget_alarm_percent: int = BUDGET_ALARM_PERCENT.default

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> GatewayKeysConfig:
        ctx = Context(context)
        return cls(
            deletion_protection=ctx.boolean(DELETION_PROTECTION),
            budget_alarm_percent=ctx.integer(BUDGET_ALARM_PERCENT),
        )
