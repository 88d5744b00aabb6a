"""Poll one Bedrock batch job: status, record counters, and a stop when it outlives its own timeout.

A status that cannot be read (a 5xx, a dropped connection, a denied call) does not end the job's follow-up at once:
the job may still be running, and treating it as finished would resubmit rows it is about to answer. The poll keeps
the last known status and polls again; only after ``MAX_UNREADABLE_POLLS`` unreadable polls in a row does the error
go to the state machine, whose Catch sends the job to postprocessing (rows without output get an error and a
resubmission). Throttling is raised at once: the state machine's Retry backs off on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.models import TERMINAL_STATUSES, JobState
from lambdas.shared.observability import logger

COUNTERS = ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
# A job may legitimately run for its whole timeout; after that plus this margin we stop it and move on.
DEADLINE_MARGIN = timedelta(hours=2)
MAX_UNREADABLE_POLLS = 10  # ~10 poll intervals of a status that cannot be read before the job is given up


def past_deadline(state: JobState, timeout_hours: int, now: datetime) -> bool:
    if not state.submitted_at:
        return False
    submitted = datetime.fromisoformat(state.submitted_at)
    return now > submitted + timedelta(hours=timeout_hours) + DEADLINE_MARGIN


def poll(state: JobState, *, bedrock: Any, timeout_hours: int, now: datetime | None = None) -> JobState:
    now = now or datetime.now(UTC)
    try:
        job = bedrock.get_model_invocation_job(jobIdentifier=state.job_arn)
    except (ClientError, BotoCoreError) as error:
        code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
        unreadable = state.unreadable_polls + 1
        if code == "ThrottlingException" or unreadable >= MAX_UNREADABLE_POLLS:
            raise
        logger.warning("job status unreadable; polling again", error=str(error)[:300], unreadable_polls=unreadable)
        return state.model_copy(update={"polls": state.polls + 1, "unreadable_polls": unreadable})
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
            "unreadable_polls": 0,
            "counters": counters,
        }
    )
