"""Batch inference jobs: the emulator's control-plane logic and state, with no HTTP in sight.

Statuses follow the clock: ``Submitted -> Validating -> Scheduled -> InProgress -> Completed`` (and ``Stopping ->
Stopped``), each lasting ``step_seconds`` (0 allowed). They are computed lazily, under one lock, whenever anything
reads the state, so every read is consistent and no thread ticks in the background. The S3 work happens on the way
out of a status: leaving ``Validating`` reads and checks the input (or fails the job), leaving ``InProgress`` writes
the outputs and the manifest, leaving ``Stopping`` writes the output of the records processed before the stop and
the manifest. A job nobody looks at does not progress.

Stop and deadline (docs/bedrock-facts.md, "Job statuses, stop semantics and deadlines"): a stopped job stays
``Stopping`` until at least one GetModelInvocationJob of it has reported it so (a listing does not count), and
writes its files before it reports ``Stopped``; a job stopped while ``InProgress`` has processed the first half of
its records (input order) by then, one stopped earlier none. Every job has a deadline, ``jobExpirationTime``
(submission plus ``timeoutDurationInHours``); one still running at that time ends on its own: ``Expired`` if it had
not started, ``PartiallyCompleted`` (the first half of its records processed) if it was ``InProgress``.
Injected faults (``local.emulator.faults``) bend this: a job may fail, expire after ``Scheduled``, end
``PartiallyCompleted`` or be stopped from outside; calls may be throttled or refused for quota.

The operation methods take and return the wire dicts of botocore's model (camelCase members, ``datetime`` values);
``local.emulator.server`` puts them on HTTP.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import secrets
import string
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from local.emulator import paging
from local.emulator.batch_io import (
    InputFile,
    JobFailure,
    Quotas,
    S3Location,
    Tally,
    process_file,
    scan_input,
    write_manifest,
)
from local.emulator.batch_models import check_batch_model
from local.emulator.errors import ApiError, conflict, not_found, validation_error
from local.emulator.families import Invocation, RecordError, base_model_id, family_for_model, invoke
from local.emulator.faults import (
    FAULTS,
    JOB_FAULTS,
    RECORD_ERROR_MESSAGES,
    RETRYABLE_RECORD_ERROR_CODES,
    normalize_faults,
    record_error_codes,
)

Clock = Callable[[], datetime]

IN_FLIGHT_STATUSES = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
TERMINAL_STATUSES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
NEXT_STATUS = {
    "Submitted": "Validating",
    "Validating": "Scheduled",
    "Scheduled": "InProgress",
    "InProgress": "Completed",
    "Stopping": "Stopped",
}
DEFAULT_TIMEOUT_HOURS = 24
KNOWN_FAULTS = frozenset(FAULTS)
# Call faults, checked in this order before an operation does anything: (fault name, error code, message).
CALL_FAULTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "CreateModelInvocationJob": (
        ("submit_throttle", "ThrottlingException", "Too many requests, please wait before trying again."),
        (
            "submit_quota",
            "ServiceQuotaExceededException",
            "The number of submitted and in-progress batch inference jobs for this model exceeds your quota.",
        ),
    ),
    "GetModelInvocationJob": (
        ("poll_throttle", "ThrottlingException", "Too many requests, please wait before trying again."),
    ),
}
# The share of a job's records (first in input order) processed when it ends early while InProgress: job_partial,
# job_stopped, a stop (StopModelInvocationJob) and the job's own deadline.
PARTIAL_PROCESSED_FRACTION = 0.5
# Statuses a job may still be in at its deadline, and what it ends as then (Bedrock docs: the job statuses of
# GetModelInvocationJob): not started -> Expired; started -> PartiallyCompleted. A Stopping job ends Stopped.
TIMED_OUT_AS = {
    "Submitted": "Expired",
    "Validating": "Expired",
    "Scheduled": "Expired",
    "InProgress": "PartiallyCompleted",
}
LINES_PER_CORRUPT_LINE = 100  # corrupt_output_lines: a job takes at most one per started 100 lines it writes
_JOB_ID_ALPHABET = string.ascii_lowercase + string.digits


def utc_now() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand: ``clock.advance(5)``."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2025, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


def fault_hits(record_id: str, rate: float, seed: str = "") -> bool:
    """Whether a record falls in the ``rate`` fraction of faulty records; fixed per (seed, recordId)."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def fault_code(record_id: str, rate: float, seed: str = "", codes: tuple[int, ...] = (400,)) -> int | None:
    """The error code a record_error_rate fault gives the record (one of ``codes``), or None if it is not faulty;
    fixed per (seed, recordId), like ``fault_hits``."""
    if not rate or not fault_hits(record_id, rate, seed):
        return None
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return codes[int.from_bytes(digest[8:16], "big") % len(codes)]


@dataclass
class Job:
    seq: int
    job_id: str
    arn: str
    request: dict[str, Any]  # the create request as received (wire names)
    submit_time: datetime
    status: str
    status_since: datetime
    end_time: datetime | None = None
    message: str | None = None
    held: bool = False  # set_job_status(hold=True): the clock no longer moves this job
    input_files: tuple[InputFile, ...] = ()
    tally: Tally | None = None  # None until the input has been counted
    fault: str | None = None  # the job fault that hit it at creation: job_partial, job_failed, job_expired...
    fails_while: str | None = None  # job_failed: the status it fails in (Validating or InProgress)
    corrupt_lines: int = 0  # corrupt_output_lines injected into its output
    corrupt_record_ids: list[str] = field(default_factory=list)  # the recordIds of those lines
    validated: bool = False  # passed Validating: from then on GetModelInvocationJob returns jobExpirationTime
    stop_records: int = 0  # Stopping: how many records (first in input order) it processed before the stop
    stopping_reported_at: datetime | None = None  # when a read first reported it Stopping (None: not yet)

    @property
    def name(self) -> str:
        return self.request["jobName"]

    @property
    def model_id(self) -> str:
        return self.request["modelId"]

    @property
    def output(self) -> S3Location:
        """Where Bedrock writes this job's files: ``<outputS3Uri>/<jobId>/``."""
        uri = self.request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        return S3Location.parse(uri).child(self.job_id)

    @property
    def timeout_hours(self) -> int:
        return int(self.request.get("timeoutDurationInHours", DEFAULT_TIMEOUT_HOURS))

    @property
    def expiration_time(self) -> datetime:
        """The job's deadline: submission plus its timeout (the earliest reading; see the module docstring)."""
        return self.submit_time + timedelta(hours=self.timeout_hours)

    def move(self, status: str, at: datetime, message: str | None = None) -> None:
        self.status, self.status_since = status, at
        if message is not None:
            self.message = message
        self.end_time = at if status in TERMINAL_STATUSES else None

    def describe(self) -> dict[str, Any]:
        """The GetModelInvocationJob answer (a superset: the protocol keeps what the installed model declares)."""
        counts = (
            {}
            if self.tally is None
            else {
                "totalRecordCount": self.tally.total,
                "processedRecordCount": self.tally.processed,
                "successRecordCount": self.tally.success,
                "errorRecordCount": self.tally.error,
            }
        )
        return {
            **self.request,
            "jobArn": self.arn,
            "status": self.status,
            "message": self.message,
            "submitTime": self.submit_time,
            "lastModifiedTime": self.status_since,
            "endTime": self.end_time,
            "timeoutDurationInHours": self.timeout_hours,
            # optional in botocore's shape; when Bedrock first sets it is undocumented: here, once validated
            **({"jobExpirationTime": self.expiration_time} if self.validated else {}),
            **counts,
        }


class EmulatorState:
    """All batch jobs of one emulated account and region.

    ``s3`` is a boto3 S3 client (moto in-process, a moto server, or real S3). ``step_seconds`` is how long each
    status lasts; ``clock`` returns an aware ``datetime`` (inject a ``ManualClock`` in tests). ``faults`` (see
    ``local.emulator.faults`` for names and effects) is checked here and read whenever a fault may strike, so it may
    be changed at any time; ``faults_injected()`` counts what was injected.
    """

    def __init__(
        self,
        *,
        s3: Any,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        step_seconds: float = 1.0,
        clock: Clock = utc_now,
        quotas: Quotas | None = None,
        model_quotas: dict[str, Quotas] | None = None,
        faults: dict[str, Any] | None = None,
    ) -> None:
        if step_seconds < 0:
            raise ValueError(f"step_seconds must be >= 0, got {step_seconds}")
        if faults is not None:
            normalize_faults(faults)  # FaultSpecError (a ValueError) names a bad fault and what is expected
        self.s3 = s3
        self.region = region
        self.account_id = account_id
        self.step_seconds = step_seconds
        self.clock = clock
        self.quotas = quotas or Quotas()
        # Per-model quotas (by model id; a profile id counts for its model), served by Service Quotas too
        # (local.emulator.quotas); any other model has ``quotas``.
        self.model_quotas = {base_model_id(model): value for model, value in (model_quotas or {}).items()}
        self.faults: dict[str, Any] = faults if faults is not None else {}
        self._jobs: dict[str, Job] = {}  # by job id, in creation order
        self._tokens: dict[str, str] = {}  # clientRequestToken -> job id
        self._created: Counter[str] = Counter()
        self._peak_active: dict[str, int] = {}  # most submitted + in-progress jobs seen at once, per base model
        self._injected: Counter[str] = Counter()  # fault name -> records, jobs, calls or lines hit so far
        self._transient_struck: set[str] = set()  # records a retryable record error already struck (see faults)
        self._hold_new = False  # hold_new_jobs(): each job created meanwhile waits in Submitted until released
        self._held_new: list[Job] = []  # the jobs it holds
        self._lock = threading.RLock()

    # ------------------------------------------------------------ operations (botocore wire dicts)

    def create_model_invocation_job(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._inject_call_fault("CreateModelInvocationJob")
            token = params.get("clientRequestToken")
            if token in self._tokens:  # a retry of a request already served: same job, nothing created
                return {"jobArn": self._same_request(self._jobs[self._tokens[token]], params).arn}
            check_batch_model(params["modelId"], params.get("modelInvocationType", "InvokeModel"))
            now = self._now()
            self._advance_all(now)
            self._check_name_is_free(params["jobName"])
            self._check_quota(params["modelId"])
            job = self._new_job(params, now)
            if token is not None:
                self._tokens[token] = job.job_id
            base = base_model_id(params["modelId"])
            self._peak_active[base] = max(self._peak_active.get(base, 0), self._active_jobs(base))
            return {"jobArn": job.arn}

    def get_model_invocation_job(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._inject_call_fault("GetModelInvocationJob")
            job = self._find(params["jobIdentifier"])
            now = self._now()
            self._advance(job, now)
            _note_read(job, now)
            return job.describe()

    def list_model_invocation_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._advance_all(self._now())
            selected, token = paging.page(self._jobs.values(), params, lambda job: _matches(job, params))
            return {"invocationJobSummaries": [job.describe() for job in selected], "nextToken": token}

    def stop_model_invocation_job(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            job = self._find(params["jobIdentifier"])
            now = self._now()
            self._advance(job, now)
            # Which error Bedrock returns for a job that cannot be stopped is undocumented (the API lists both):
            # an ended job gets ValidationException, one already Stopping ConflictException, so callers handle both.
            if job.status == "Stopping":
                raise conflict(f"Job {job.arn} is already Stopping")
            if job.status not in IN_FLIGHT_STATUSES:
                raise validation_error(f"Job {job.arn} is {job.status} and cannot be stopped")
            self._prepare_stop(job)
            job.move("Stopping", now)
            return {}

    # ------------------------------------------------------------ test and display hooks

    def set_job_status(
        self,
        job: str,
        status: str,
        *,
        message: str | None = None,
        hold: bool = True,
        total_records: int | None = None,
        success_records: int | None = None,
        error_records: int | None = None,
    ) -> None:
        """Force a job (ARN or id) into ``status`` now, without S3 side effects.

        With ``hold`` (the default) the clock no longer moves it; otherwise it carries on from ``status``. Record
        counts given are set on the job (processed = success + error; total defaults to at least that).
        """
        if status not in IN_FLIGHT_STATUSES | TERMINAL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            found = self._find(job)
            found.held = hold
            found.move(status, self._now(), message)
            found.validated = found.validated or status not in ("Submitted", "Validating")
            counts = {"total": total_records, "success": success_records, "error": error_records}
            given = {name: value for name, value in counts.items() if value is not None}
            if given:
                tally = replace(found.tally or Tally(), **given)
                tally.total = max(tally.total, tally.processed) if total_records is None else tally.total
                found.tally = tally

    def jobs(self) -> list[dict[str, Any]]:
        """Every job as GetModelInvocationJob describes it, oldest first (advanced to now), plus its ``jobId``, the
        job ``fault`` that hit it (or None), the ``corruptOutputLines`` written into its output and the
        ``corruptRecordIds`` of those lines."""
        with self._lock:
            self._advance_all(self._now())
            return [
                job.describe()
                | {
                    "jobId": job.job_id,
                    "fault": job.fault,
                    "corruptOutputLines": job.corrupt_lines,
                    "corruptRecordIds": list(job.corrupt_record_ids),
                }
                for job in self._jobs.values()
            ]

    def faults_injected(self) -> dict[str, int]:
        """How many times each fault struck so far: records, jobs, calls or lines, by fault name."""
        with self._lock:
            return dict(self._injected)

    def peak_active_jobs_per_model(self) -> dict[str, int]:
        """The most jobs that were submitted or in progress at the same time, per base model."""
        with self._lock:
            return dict(self._peak_active)

    def hold_new_jobs(self, hold: bool = True) -> None:
        """While set, every job created waits in ``Submitted`` (it holds its quota slot) whatever the clock says;
        clearing it releases every job held so, which then carries on from ``Submitted`` as from now. A test hook: it
        makes a full quota certain where a slow machine could otherwise let the first jobs end before the later ones
        are submitted."""
        with self._lock:
            self._hold_new = hold
            if not hold:
                now = self._now()
                for job in self._held_new:
                    job.held = False
                    if job.status == "Submitted":  # not stopped meanwhile
                        job.move("Submitted", now)
                self._held_new.clear()

    def jobs_created_per_model(self) -> dict[str, int]:
        """How many jobs were ever created, per ``modelId`` as submitted (idempotent retries not counted)."""
        with self._lock:
            return dict(self._created)

    def advance(self) -> None:
        """Bring every job up to the clock now (reads do this too)."""
        with self._lock:
            self._advance_all(self._now())

    # ------------------------------------------------------------ internals (called with the lock held)

    def _now(self) -> datetime:
        """The clock, at the millisecond precision of the wire (so filters on returned times are exact)."""
        now = self.clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _new_job(self, params: dict[str, Any], now: datetime) -> Job:
        job_id = "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(12))
        arn = f"arn:aws:bedrock:{self.region}:{self.account_id}:model-invocation-job/{job_id}"
        job = Job(len(self._jobs), job_id, arn, dict(params), now, "Submitted", now)
        self._jobs[job_id] = job
        self._created[job.model_id] += 1
        self._assign_job_fault(job)
        if self._hold_new:
            job.held = True
            self._held_new.append(job)
        return job

    def _fault_count(self, name: str) -> int:
        return int(self.faults.get(name, 0))

    def _take_fault(self, name: str, amount: int = 1) -> int:
        """Inject up to ``amount`` of fault ``name`` if its count allows; return how many were injected."""
        taken = max(0, min(amount, self._fault_count(name) - self._injected[name]))
        if taken:
            self._injected[name] += taken
        return taken

    def _inject_call_fault(self, operation: str) -> None:
        for name, code, message in CALL_FAULTS[operation]:
            if self._take_fault(name):
                injected = f"{self._injected[name]} of {self.faults[name]}"
                raise ApiError(code, f"{message} (emulated fault {name}: {injected})")

    def _assign_job_fault(self, job: Job) -> None:
        for name in JOB_FAULTS:
            if self._take_fault(name):
                job.fault = name
                if name == "job_failed":
                    job.fails_while = "Validating" if self._injected[name] % 2 == 1 else "InProgress"
                return

    def _fail_if_faulty(self, job: Job, status: str) -> None:
        if job.fault == "job_failed" and job.fails_while == status:
            raise JobFailure(f"Emulated fault (job_failed): the job failed while {status}; no output was written")

    def _same_request(self, job: Job, params: dict[str, Any]) -> Job:
        """The job a reused clientRequestToken names, if the request is the same (docs/bedrock-facts.md, Batch job
        requests: a reuse with other parameters is refused, the stricter reading)."""
        if job.request != params:
            changed = sorted(
                key for key in job.request.keys() | params.keys() if job.request.get(key) != params.get(key)
            )
            raise validation_error(
                f"clientRequestToken '{params['clientRequestToken']}' was already used for job {job.arn} with other "
                f"parameters ({', '.join(changed)} differ); send a new token for a new job, or repeat the first "
                "request unchanged"
            )
        return job

    def _check_name_is_free(self, name: str) -> None:
        if any(job.name == name for job in self._jobs.values()):
            raise conflict(f"A model invocation job named '{name}' already exists; job names must be unique")

    def _active_jobs(self, base: str) -> int:
        return sum(
            1 for job in self._jobs.values() if job.status in IN_FLIGHT_STATUSES and base_model_id(job.model_id) == base
        )

    def quotas_for(self, model_id: str) -> Quotas:
        """The batch quotas of ``model_id``'s model."""
        return self.model_quotas.get(base_model_id(model_id), self.quotas)

    def _check_quota(self, model_id: str) -> None:
        base = base_model_id(model_id)
        limit = self.quotas_for(model_id).max_active_jobs_per_model
        active = self._active_jobs(base)
        if active >= limit:
            raise ApiError(
                "ServiceQuotaExceededException",
                f"{active} batch inference jobs are already submitted or in progress for {base}; the quota is {limit}",
            )

    def _find(self, identifier: str) -> Job:
        job = self._jobs.get(identifier.rsplit("/", 1)[-1])
        if job is None or ("/" in identifier and identifier != job.arn):
            raise not_found(f"Model invocation job {identifier} was not found")
        return job

    def _advance_all(self, now: datetime) -> None:
        for job in self._jobs.values():
            self._advance(job, now)

    def _advance(self, job: Job, now: datetime) -> None:
        while job.status in NEXT_STATUS and not job.held:
            at, on_leave = self._next_change(job)
            if at is None or now < at:
                return
            try:
                ends_as = on_leave(self, job)
            except (JobFailure, ClientError) as error:
                job.move("Failed", at, str(error))
            else:
                job.move(ends_as or NEXT_STATUS[job.status], at)

    def _next_change(self, job: Job) -> tuple[datetime | None, Callable[[EmulatorState, Job], str | None]]:
        """When the job leaves its status (None: not until a Get has reported it Stopping) and the work done then."""
        at = job.status_since + timedelta(seconds=self.step_seconds)
        if job.status == "Stopping":
            if job.stopping_reported_at is None:
                return None, _nothing
            return max(at, job.stopping_reported_at), EmulatorState._finish_stop
        if job.status in TIMED_OUT_AS and job.expiration_time < at:
            return job.expiration_time, EmulatorState._time_out
        return at, _ON_LEAVE.get(job.status, _nothing)

    def _prepare_stop(self, job: Job) -> None:
        """The job is about to move to Stopping (a StopModelInvocationJob call or job_stopped): fix how many records
        it processed before the stop; they are written when it leaves Stopping."""
        started = job.status == "InProgress"
        job.stop_records = int(self._job_records(job) * PARTIAL_PROCESSED_FRACTION) if started else 0
        job.held = False
        job.stopping_reported_at = None

    @staticmethod
    def _job_records(job: Job) -> int:
        return sum(file.records for file in job.input_files)

    def _time_out(self, job: Job) -> str:
        """The job is still running at its deadline: Bedrock ends it Expired or PartiallyCompleted."""
        ends_as = TIMED_OUT_AS[job.status]
        if ends_as == "Expired":
            job.message = f"The job did not start within its timeout of {job.timeout_hours} hours"
            return ends_as
        total = self._job_records(job)
        processed = self._process(job, int(total * PARTIAL_PROCESSED_FRACTION))
        job.message = (
            f"The job did not finish within its timeout of {job.timeout_hours} hours: {total - processed} of "
            f"{total} records were not processed"
        )
        return ends_as

    def _validate_input(self, job: Job) -> None:
        self._fail_if_faulty(job, "Validating")
        uri = job.request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        job.input_files = scan_input(self.s3, uri, self.quotas_for(job.model_id))
        job.tally = Tally(total=sum(file.records for file in job.input_files))
        job.validated = True

    def _start(self, job: Job) -> str | None:
        if job.fault != "job_expired":
            return None
        timeout = job.request.get("timeoutDurationInHours", DEFAULT_TIMEOUT_HOURS)
        job.message = (
            f"Emulated fault (job_expired): the job was not started within its timeout of {timeout} hours; "
            "no output was written"
        )
        return "Expired"

    def _run(self, job: Job) -> str | None:
        """Answer the records and write the outputs and the manifest; the status to end in if not Completed."""
        self._fail_if_faulty(job, "InProgress")
        if job.fault == "job_stopped":  # stopped from outside, as from the console, half way through
            self._prepare_stop(job)
            job.message = "Emulated fault (job_stopped): the job was stopped by a user while InProgress"
            return "Stopping"
        total = self._job_records(job)
        to_process = int(total * PARTIAL_PROCESSED_FRACTION) if job.fault == "job_partial" else total
        self._process(job, to_process)
        if to_process < total:
            job.message = (
                f"Emulated fault (job_partial): {total - to_process} of {total} records were not processed "
                "before the job timed out"
            )
            return "PartiallyCompleted"
        return None

    def _process(self, job: Job, to_process: int) -> int:
        """Answer the job's first ``to_process`` records (input order), write an output file for each input file
        reached and the manifest; return how many records were processed."""
        bucket = S3Location.parse(job.request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]).bucket
        answer = self._answerer(job)
        tally = Tally(total=job.tally.total if job.tally else 0)
        corrupt = self._corrupt_positions(job, to_process) if to_process else frozenset()
        start = 0  # position of the file's first record among the job's processed records
        for file in job.input_files:
            count = min(file.records, to_process - start)
            if count <= 0:
                break  # not reached before the job ended: no output file
            rng = random.Random(f"{job.name}/{file.name}")  # scrambled output order, the same on every run
            in_file = frozenset(p - start for p in corrupt if start <= p < start + count)
            tally.add(
                process_file(
                    self.s3,
                    bucket,
                    file,
                    job.output,
                    answer,
                    rng,
                    limit=count,
                    corrupt=in_file,
                    corrupted_ids=job.corrupt_record_ids,
                )
            )
            start += count
        job.tally = tally
        write_manifest(self.s3, job.output, tally)
        return start

    def _corrupt_positions(self, job: Job, lines: int) -> frozenset[int]:
        """Which of the job's ``lines`` output lines (by processing position) to write corrupt, spread evenly."""
        job.corrupt_lines = self._take_fault("corrupt_output_lines", math.ceil(lines / LINES_PER_CORRUPT_LINE))
        return frozenset(index * lines // job.corrupt_lines for index in range(job.corrupt_lines))

    def _strikes_again(self, code: int, record: dict[str, Any]) -> bool:
        """A 400 strikes a record every time; a retryable code once per (recordId, modelInput)."""
        if code not in RETRYABLE_RECORD_ERROR_CODES:
            return True
        sent = json.dumps([record["recordId"], record["modelInput"]], sort_keys=True)
        key = hashlib.sha256(sent.encode()).hexdigest()
        if key in self._transient_struck:
            return False
        self._transient_struck.add(key)
        return True

    def _finish_stop(self, job: Job) -> None:
        """Leaving Stopping: the output of the records processed before the stop, and the manifest counting them."""
        self._process(job, job.stop_records)

    def _answerer(self, job: Job) -> Callable[[dict[str, Any]], Invocation]:
        family = family_for_model(job.model_id, job.request.get("modelInvocationType", "InvokeModel"))
        rate = float(self.faults.get("record_error_rate", 0.0))
        seed = str(self.faults.get("record_error_seed", ""))
        codes = record_error_codes(self.faults.get("record_error_codes"))

        def answer(record: dict[str, Any]) -> Invocation:
            code = fault_code(record["recordId"], rate, seed, codes)
            if code is not None and self._strikes_again(code, record):
                self._injected["record_error_rate"] += 1
                raise RecordError(f"{RECORD_ERROR_MESSAGES[code]} (emulated fault record_error_rate)", code)
            return invoke(family, job.model_id, record["modelInput"])

        return answer


def _nothing(state: EmulatorState, job: Job) -> None:
    return None


def _note_read(job: Job, now: datetime) -> None:
    """GetModelInvocationJob read the job: a Stopping job may now end (it stays Stopping for at least one such read)."""
    if job.status == "Stopping" and job.stopping_reported_at is None:
        job.stopping_reported_at = now


# The work done when a job leaves a status (S3 mostly). A hook that returns a status ends the job in it instead of
# the next one in NEXT_STATUS; JobFailure (or an S3 ClientError) ends it Failed with that message.
_ON_LEAVE: dict[str, Callable[[EmulatorState, Job], str | None]] = {
    "Validating": EmulatorState._validate_input,
    "Scheduled": EmulatorState._start,
    "InProgress": EmulatorState._run,
}


def _matches(job: Job, params: dict[str, Any]) -> bool:
    return params.get("statusEquals") in (None, job.status) and params.get("nameContains", "") in job.name
