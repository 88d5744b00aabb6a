"""Poll one Bedrock batch job: status, record counters, and a stop when it outlives its own timeout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lambdas.shared.models import TERMINAL_STATUSES, JobState

COUNTERS = ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
# A job may legitimately run for its whole timeout; after that plus this margin we stop it and move on.
DEADLINE_MARGIN = timedelta(hours=2)


def past_deadline(state: JobState, timeout_hours: int, now: datetime) -> bool:
    if not state.submitted_at:
        return False
    submitted = datetime.fromisoformat(state.submitted_at)
    return now > submitted + timedelta(hours=timeout_hours) + DEADLINE_MARGIN


def poll(state: JobState, *, bedrock: Any, timeout_hours: int, now: datetime | None = None) -> JobState:
    now = now or datetime.now(UTC)
    job = bedrock.get_model_invocation_job(jobIdentifier=state.job_arn)
    status = job["status"]
    message = job.get("message")
    if status not in TERMINAL_STATUSES and past_deadline(state, timeout_hours, now):
        bedrock.stop_model_invocation_job(jobIdentifier=state.job_arn)
        message = f"stopped by the orchestrator: still {status} {timeout_hours} h after submission plus a margin"
        status = "Stopped"
    counters = {name: int(job[name]) for name in COUNTERS if name in job}
    return state.model_copy(
        update={
            "status": status,
            "message": message,
            "terminal": status in TERMINAL_STATUSES,
            "polls": state.polls + 1,
            "counters": counters,
        }
    )
