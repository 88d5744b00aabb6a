"""Poll one Bedrock batch job: status, record counters, and a stop when it outlives the service's own deadline.

A status that cannot be read (a 5xx, a dropped connection, a denied call) does not end the job's follow-up at once:
the job may still be running, and treating it as finished would resubmit rows it is about to answer. The poll keeps
the last known status and polls again; only after ``MAX_UNREADABLE_POLLS`` unreadable polls in a row does the error
go to the state machine, whose Catch sends the job to postprocessing (rows without output get an error and a
resubmission). Throttling is raised at once: the state machine's Retry backs off on it.

Deadlines (docs/bedrock-facts.md, "Job statuses, stop semantics and deadlines"): Bedrock ends a job that is still
running at its ``jobExpirationTime`` by itself, ``Expired`` (never started) or ``PartiallyCompleted`` (started; the
output of what it processed is in S3). The orchestrator stops a job only when it is still running ``DEADLINE_MARGIN``
after that deadline (or, without the field, after submission plus ``timeoutDurationInHours``): a safety net for a
job the service failed to end, never a shorter deadline of its own. A stop is not the end: the job is ``Stopping``
until Bedrock says ``Stopped`` (it writes the output of the records it processed first), so polling goes on until
then. A Stop refused because the job ended in the meantime (``ValidationException`` or ``ConflictException``: which
one Bedrock sends is undocumented) is that race, not an error: the job's status is read again and followed.

Cancel (lambdas/shared/cancel.py): while a job runs and no stop was asked yet, each poll looks for the run's cancel
marker; when it is there, the job is stopped the same way (and followed to ``Stopped``, whose output is delivered),
and the state is marked ``cancelled`` so that its rows without a result get ``batch_cancelled``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.cancel import cancel_requested
from lambdas.shared.models import DEADLINE_MARGIN, TERMINAL_STATUSES, JobState
from lambdas.shared.observability import logger

COUNTERS = ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
MAX_UNREADABLE_POLLS = 10  # ~10 poll intervals of a status that cannot be read before the job is given up
# Errors of StopModelInvocationJob that mean "this job cannot be stopped (any more)": botocore lists both for the
# operation, and which one a job that already ended gets is undocumented, so both are read as the race.
STOP_REFUSED = frozenset({"ValidationException", "ConflictException"})


def _aware(value: Any) -> datetime | None:
    """A timestamp of the API (botocore gives an aware ``datetime``; our state keeps ISO 8601 text)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return _aware(datetime.fromisoformat(value))
    return None


def service_deadline(job: dict[str, Any], state: JobState, timeout_hours: int) -> datetime | None:
    """When Bedrock itself ends the job: its ``jobExpirationTime``; the field is optional in the API, so without it
    the submit time plus the job's ``timeoutDurationInHours`` (Bedrock's, else ours; the submit time is Bedrock's,
    else the one Submit recorded). None when neither time is known."""
    expires = _aware(job.get("jobExpirationTime"))
    if expires is not None:
        return expires
    submitted = _aware(job.get("submitTime")) or _aware(state.submitted_at)
    if submitted is None:
        return None
    return submitted + timedelta(hours=int(job.get("timeoutDurationInHours") or timeout_hours))


def past_deadline(deadline: datetime, now: datetime) -> bool:
    """Whether a job still running now is overdue: more than ``DEADLINE_MARGIN`` past the service's deadline."""
    return now > deadline + DEADLINE_MARGIN


def _error_code(error: ClientError | BotoCoreError) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) if isinstance(error, ClientError) else ""


def stop(state: JobState, *, bedrock: Any) -> dict[str, Any] | None:
    """Ask Bedrock to stop the job. Returns None when the stop was accepted (the job is Stopping from now on), or the
    job as read again when the stop was refused because the job ended or began stopping meanwhile (the race)."""
    try:
        bedrock.stop_model_invocation_job(jobIdentifier=state.job_arn)
    except ClientError as error:
        if _error_code(error) not in STOP_REFUSED:
            raise
        again: dict[str, Any] = bedrock.get_model_invocation_job(jobIdentifier=state.job_arn)
        if again["status"] not in TERMINAL_STATUSES and again["status"] != "Stopping":
            raise  # not the race: the job still runs, and the stop was refused for another reason
        logger.info("job ended before it could be stopped", status=again["status"], error=str(error)[:300])
        return again
    return None


def poll(
    state: JobState, *, bedrock: Any, timeout_hours: int, s3: Any | None = None, now: datetime | None = None
) -> JobState:
    """One poll of the job; with ``s3`` (the data bucket's client) a running job of a cancelled run is stopped."""
    now = now or datetime.now(UTC)
    try:
        job = bedrock.get_model_invocation_job(jobIdentifier=state.job_arn)
    except (ClientError, BotoCoreError) as error:
        unreadable = state.unreadable_polls + 1
        if _error_code(error) == "ThrottlingException" or unreadable >= MAX_UNREADABLE_POLLS:
            raise
        logger.warning("job status unreadable; polling again", error=str(error)[:300], unreadable_polls=unreadable)
        return state.model_copy(update={"polls": state.polls + 1, "unreadable_polls": unreadable})
    stop_requested_at = state.stop_requested_at
    message = state.message if stop_requested_at else None  # the reason we stopped it, until Bedrock gives one
    deadline = service_deadline(job, state, timeout_hours)
    running = job["status"] not in TERMINAL_STATUSES and job["status"] != "Stopping"
    if running and stop_requested_at is None and deadline is not None and past_deadline(deadline, now):
        refused = stop(state, bedrock=bedrock)
        if refused is not None:  # the job ended (or began stopping) meanwhile: follow it as read again
            return _followed(state, refused, message, stop_requested_at)
        stop_requested_at = now.isoformat()
        message = (
            f"stopped by the orchestrator: still {job['status']} at {now.isoformat()}, more than "
            f"{DEADLINE_MARGIN} after the service's deadline {deadline.isoformat()}"
        )
        logger.warning("job past the service's deadline; stop requested", deadline=str(deadline))
    elif running and stop_requested_at is None and s3 is not None:
        cancel = cancel_requested(s3, state.run.bucket, state.run.run_id)
        if cancel is not None:
            refused = stop(state, bedrock=bedrock)
            if refused is not None:  # it ended meanwhile: its rows keep what the job gave them
                return _followed(state, refused, message, stop_requested_at)
            stop_requested_at = now.isoformat()
            when = f" at {cancel.requested_at}" if cancel.requested_at else ""
            message = f"stopped by the orchestrator: the run was cancelled{when} ({cancel.key})"
            logger.info("run cancelled; stop requested", cancel_key=cancel.key, requested_at=cancel.requested_at)
            state = state.model_copy(update={"cancelled": True})
    return _followed(state, job, message, stop_requested_at)


def _followed(state: JobState, job: dict[str, Any], message: str | None, stop_requested_at: str | None) -> JobState:
    """The state after one poll: the job's status, message and record counters as Bedrock reported them."""
    status = job["status"]
    counters = {name: int(job[name]) for name in COUNTERS if name in job}
    return state.model_copy(
        update={
            "status": status,
            "message": job.get("message") or message,
            "terminal": status in TERMINAL_STATUSES,
            "polls": state.polls + 1,
            "unreadable_polls": 0,
            "counters": counters,
            "stop_requested_at": stop_requested_at,
        }
    )
