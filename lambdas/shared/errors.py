"""Errors whose class names are the Step Functions error names (Catch/Retry match on them)."""

from __future__ import annotations


class InputValidationError(ValueError):
    """The execution input or the input data cannot be processed. Raised before any job is submitted.

    The message names the field, the value and the fix; the state machine ends in "Input rejected" with it.
    """


class ThrottlingException(RuntimeError):  # noqa: N818 - the name is the Bedrock error code Step Functions retries on
    """Bedrock kept throttling after the in-Lambda retries; the state machine retries with backoff."""


class ServiceQuotaExceededException(RuntimeError):  # noqa: N818 - same as above
    """Too many submitted + in-progress jobs for this model; the state machine waits for a free slot."""
