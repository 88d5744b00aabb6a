"""Dashboards and alarms of both stacks: where alarms send mail, and their thresholds."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stacks.config.common import Context, error, reject_typos, setting

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

ALARM_EMAIL = setting(
    "operations",
    "alarmEmail",
    "",
    "when set, each stack gets an encrypted SNS topic with this address subscribed, and every alarm notifies it",
    kind="an email address",
    default_text='`""` (the alarms exist, without a topic)',
)
RECORD_FAILURE = setting(
    "operations",
    "alarmRecordFailurePercent",
    10,
    "batch alarm: failed records / (succeeded + failed) above this, per 5 minutes",
    low=1,
    high=100,
)
JOB_FAILURE = setting(
    "operations",
    "alarmJobFailurePercent",
    10,
    "batch alarm: jobs ending `Failed`, `Expired` or `Stopped` / all jobs ending, above this, per 5 minutes",
    low=1,
    high=100,
)
GATEWAY_5XX = setting(
    "operations",
    "alarmGateway5xxPercent",
    5,
    "gateway alarm: the API's 5XX responses / requests above this",
    low=1,
    high=100,
)
GATEWAY_4XX = setting(
    "operations",
    "alarmGateway4xxPercent",
    25,
    "gateway alarm: the API's 4XX responses (throttled and rejected requests) / requests above this",
    low=1,
    high=100,
)


@dataclass(frozen=True)
class ObservabilityConfig:
    """Dashboards and alarms (both stacks): alarm thresholds, and where alarms send mail.

    ``alarm_email`` None (``alarmEmail`` unset or ""): the alarms exist, but no SNS topic or subscription is made.
    Percentages are over 5-minute periods.
    """

    alarm_email: str | None = None
    alarm_record_failure_percent: int = RECORD_FAILURE.default
    alarm_job_failure_percent: int = JOB_FAILURE.default
    alarm_gateway_5xx_percent: int = GATEWAY_5XX.default
    alarm_gateway_4xx_percent: int = GATEWAY_4XX.default

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> ObservabilityConfig:
        reject_typos(context)
        ctx = Context(context)
        email = ctx.raw(ALARM_EMAIL)
        if email is None:
            email = ""
        if not isinstance(email, str) or (email.strip() and not _EMAIL.match(email.strip())):
            raise error(ALARM_EMAIL.key, 'an email address, or "" for no alarm mail', email, "ops@example.com")
        return cls(
            alarm_email=email.strip() or None,
            alarm_record_failure_percent=ctx.integer(RECORD_FAILURE),
            alarm_job_failure_percent=ctx.integer(JOB_FAILURE),
            alarm_gateway_5xx_percent=ctx.integer(GATEWAY_5XX),
            alarm_gateway_4xx_percent=ctx.integer(GATEWAY_4XX),
        )
