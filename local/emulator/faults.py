"""Injectable faults: what each one does, and the ``--faults`` spec that sets them.

A spec is comma-separated ``name=value`` pairs, e.g. ``record_error_rate=0.05,job_failed=1,submit_throttle=3``.
``EmulatorState.faults`` holds the parsed dict; it may be changed at any time (counts are compared with how many
faults were already injected, so raising a count injects more). What each fault does:

- ``record_error_rate`` (fraction 0-1): that fraction of records gets an ``error`` line instead of ``modelOutput``,
  chosen by a hash of ``record_error_seed`` (any text, default empty) and the recordId, so the same records fail on
  every run.
- ``record_error_codes`` (colon-separated HTTP codes, default ``400``): the ``errorCode`` of those lines, one of the
  list per record, picked by the same hash (e.g. ``record_error_codes=400:429:500``). A 400 (the model rejects the
  input) strikes its record every time it is sent; a retryable code (408, 429, 500, 503: timeout, throttling,
  internal and unavailable) strikes a record once: sent again (same recordId and modelInput, e.g. by a
  resubmission) the record is answered, as a transient failure would be.
- ``job_partial``, ``job_failed``, ``job_expired``, ``job_stopped`` (jobs): the first N jobs created that no other
  job fault has hit (checked in this order when each job is created):
  ``job_partial`` ends ``PartiallyCompleted``: only the first half of its records (input order) is processed, the
  others get no output line; the manifest counts what was processed.
  ``job_failed`` ends ``Failed`` with a ``message`` and no output file nor manifest, alternately while
  ``Validating`` (1st, 3rd, ... job hit) and ``InProgress`` (2nd, 4th, ...).
  ``job_expired`` ends ``Expired`` after ``Scheduled`` (never started), with a ``message`` and no output.
  ``job_stopped`` is stopped from outside, as a user would from the console, while ``InProgress`` when half of its
  records (input order) are processed: it is ``Stopping`` (with a ``message``) for at least one
  ``GetModelInvocationJob``, then ``Stopped``, with the output lines of the processed records and a manifest
  counting them; the other records get no output line.
- ``submit_throttle``, ``submit_quota`` (calls): the next N ``CreateModelInvocationJob`` calls fail with
  ``ThrottlingException`` (HTTP 429), then the next N with ``ServiceQuotaExceededException`` (400), and create
  nothing (not even for a repeated clientRequestToken).
- ``poll_throttle`` (calls): the next N ``GetModelInvocationJob`` calls fail with ``ThrottlingException``.
- ``corrupt_output_lines`` (lines): N output lines in total are written truncated (invalid JSON; cut in half, so the
  ``recordId`` at the start stays readable). Each job that writes output takes at most one per started 100 lines it
  writes, so the lines spread over jobs; each is spread evenly over its job's lines. The record still counts as
  processed in the manifest (the line was written, garbled); ``EmulatorState.jobs()`` lists each job's
  ``corruptRecordIds``.
- ``runtime_throttle``, ``model_error`` (calls): the next N runtime inference calls (``Converse``,
  ``ConverseStream``, ``CountTokens``, ``InvokeModel``, ``StartAsyncInvoke``) fail with ``ThrottlingException``
  (429), then the next N of those that model it (not CountTokens nor StartAsyncInvoke) with
  ``ModelErrorException`` (424), before anything is answered.
- ``stream_error_after`` (text deltas), ``stream_error`` (an exception of the ``ConverseStreamOutput`` union:
  ``STREAM_ERRORS``): while either is set, every ``ConverseStream`` sends K text deltas (all of them if the answer
  has fewer; K = ``stream_error_after``, 0 when only ``stream_error`` is set) and then an exception frame
  (``:message-type: exception``, ``:exception-type`` ``stream_error``, default ``modelStreamErrorException``) instead
  of the rest; botocore raises ``EventStreamError`` with that code mid-stream. 0 breaks the stream before its first
  text delta. Counted once per broken stream (under ``stream_error_after`` when set, else ``stream_error``); remove
  them from ``faults`` to stop.
- ``video_failed`` (invocations): the next N ``StartAsyncInvoke`` invocations end ``Failed`` with a
  ``failureMessage`` and no output, when they would have completed.
- ``runtime_error`` (``<ExceptionName>:<calls>``, e.g. ``runtime_error=ModelNotReadyException:2``): the next N
  runtime inference calls (the operations ``runtime_throttle`` hits) whose operation lists that exception in
  botocore's service model fail with it, before anything is answered: its HTTP status from the model's error shape,
  ``X-Amzn-ErrorType`` and a JSON ``message`` (``RUNTIME_EXCEPTIONS`` names the exceptions that can be given).
  Calls of operations that do not list it are served normally and not counted.

Job faults, call faults, corrupt lines and runtime faults are counted when injected
(``EmulatorState.faults_injected()``); a job or call served while a count is exhausted is served normally.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

FaultValue = float | int | str


class FaultSpecError(ValueError):
    """A ``--faults`` spec or a ``faults`` dict the emulator cannot use; the message says what is expected."""


@dataclass(frozen=True)
class Fault:
    name: str
    expected: str  # what a valid value looks like, for error messages
    convert: Callable[[Any], FaultValue]


def _rate(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    rate = float(value)
    if not 0 <= rate <= 1:
        raise ValueError(value)
    return rate


def _count(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    count = int(value)
    if count < 0:
        raise ValueError(value)
    return count


def _text(value: Any) -> str:
    if not isinstance(value, str | int):
        raise ValueError(value)
    return str(value)


# Record error codes the emulator can inject, with the message the line carries; all but 400 are transient.
RECORD_ERROR_MESSAGES: dict[int, str] = {
    400: "Malformed input request, please reformat your input and try again.",
    408: "Model invocation timed out. Try your request again.",
    429: "Too many requests, please wait before trying again.",
    500: "The system encountered an unexpected error during processing. Try your request again.",
    503: "The service is temporarily unable to handle the request. Try your request again.",
}
RETRYABLE_RECORD_ERROR_CODES = frozenset(code for code in RECORD_ERROR_MESSAGES if code != 400)


def _codes(value: Any) -> str:
    """``"429:500"`` (or one int) -> the canonical ``"429:500"``; each code one of ``RECORD_ERROR_MESSAGES``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(value)
    codes = [int(part) for part in str(value).split(":")]
    if not codes or any(code not in RECORD_ERROR_MESSAGES for code in codes):
        raise ValueError(value)
    return ":".join(str(code) for code in codes)


def record_error_codes(value: Any) -> tuple[int, ...]:
    """The codes of a ``record_error_codes`` fault value (``"400"`` when unset)."""
    return tuple(int(code) for code in _codes(value if value is not None else "400").split(":"))


# The exceptions ConverseStream can send inside its stream (members of the ConverseStreamOutput union in botocore)
STREAM_ERRORS = (
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
)


def _stream_error(value: Any) -> str:
    if value not in STREAM_ERRORS:
        raise ValueError(value)
    return str(value)


# Every exception the runtime inference operations (Converse, ConverseStream, CountTokens, InvokeModel,
# StartAsyncInvoke) list in botocore's bedrock-runtime model; tests check this against the installed model.
RUNTIME_EXCEPTIONS = (
    "AccessDeniedException",
    "ConflictException",
    "InternalServerException",
    "ModelErrorException",
    "ModelNotReadyException",
    "ModelTimeoutException",
    "ResourceNotFoundException",
    "ServiceQuotaExceededException",
    "ServiceUnavailableException",
    "ThrottlingException",
    "ValidationException",
)


def _exception_calls(value: Any) -> str:
    """``"ModelNotReadyException:2"`` checked and normalised (spaces dropped, the count a whole number)."""
    if not isinstance(value, str):
        raise ValueError(value)
    code, colon, count = value.partition(":")
    if not colon or code.strip() not in RUNTIME_EXCEPTIONS:
        raise ValueError(value)
    return f"{code.strip()}:{_count(count.strip())}"


def parse_exception_calls(value: str) -> tuple[str, int]:
    """A checked ``runtime_error`` value -> (exception name, number of calls)."""
    code, _, count = _exception_calls(value).partition(":")
    return code, int(count)


def _counted(name: str, unit: str) -> Fault:
    return Fault(name, f"a whole number of {unit} >= 0, e.g. {name}=1", _count)


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault("record_error_rate", "a fraction from 0 to 1, e.g. record_error_rate=0.05", _rate),
        Fault("record_error_seed", "any text, e.g. record_error_seed=run2", _text),
        Fault(
            "record_error_codes",
            f"HTTP codes joined by ':' from {'/'.join(map(str, RECORD_ERROR_MESSAGES))}, "
            "e.g. record_error_codes=429:500",
            _codes,
        ),
        _counted("job_partial", "jobs"),
        _counted("job_failed", "jobs"),
        _counted("job_expired", "jobs"),
        _counted("job_stopped", "jobs"),
        _counted("submit_throttle", "calls"),
        _counted("submit_quota", "calls"),
        _counted("poll_throttle", "calls"),
        _counted("corrupt_output_lines", "lines"),
        _counted("runtime_throttle", "calls"),
        _counted("model_error", "calls"),
        _counted("stream_error_after", "text deltas"),
        Fault(
            "stream_error", f"one of {', '.join(STREAM_ERRORS)}, e.g. stream_error=throttlingException", _stream_error
        ),
        _counted("video_failed", "invocations"),
        Fault(
            "runtime_error",
            "<ExceptionName>:<calls>, e.g. runtime_error=ModelNotReadyException:2, with one of "
            + ", ".join(RUNTIME_EXCEPTIONS),
            _exception_calls,
        ),
    )
}
# The order in which a new job is checked against them
JOB_FAULTS = ("job_partial", "job_failed", "job_expired", "job_stopped")
EXAMPLE = "record_error_rate=0.05,job_failed=1,submit_throttle=3"


def fault_value(name: str, value: Any) -> FaultValue:
    """``value`` converted for fault ``name``; FaultSpecError if the name is unknown or the value does not fit."""
    fault = FAULTS.get(name)
    if fault is None:
        raise FaultSpecError(f"unknown fault '{name}'; known faults: {', '.join(FAULTS)}")
    try:
        return fault.convert(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"fault {name}={value!r} is invalid: expected {fault.expected}") from None


def parse_faults(spec: str) -> dict[str, FaultValue]:
    """``"job_failed=1,record_error_rate=0.05"`` -> ``{"job_failed": 1, "record_error_rate": 0.05}``.

    An empty spec means no faults. Raises FaultSpecError with one line saying what is wrong and what is expected.
    """
    faults: dict[str, FaultValue] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, equals, raw = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise FaultSpecError(f"'{item.strip()}' is not name=value; e.g. {EXAMPLE}")
        if name in faults:
            raise FaultSpecError(f"fault '{name}' is given twice; give each fault once")
        faults[name] = fault_value(name, raw)
    return faults


def normalize_faults(faults: MutableMapping[str, Any]) -> None:
    """Check every fault of ``faults`` and convert its value in place (``"3"`` -> ``3``); FaultSpecError if bad."""
    for name, value in list(faults.items()):
        faults[name] = fault_value(name, value)


def describe_faults(faults: Mapping[str, Any]) -> str:
    """``name=value, ...`` for display, or ``none``."""
    return ", ".join(f"{name}={value}" for name, value in faults.items()) or "none"
