"""A run's cancel marker, ``runs/<run>/cancel.json`` (``{"requested_at": "<ISO 8601>"}``), and what it means.

Whoever may write under ``runs/<run>/`` cancels a run by writing the marker (the gateway's batch cancel does, and
``python -m cli batch cancel <run> --target aws``). The run honours it from then on: Submit creates no new job (its
rows end with ``BATCH_CANCELLED``), Poll stops a job in flight (StopModelInvocationJob: Bedrock writes the output of the
records it processed), the on-demand runner takes no more records, and nothing is resubmitted. Postprocess and Finalize
still run, so every record already processed is delivered and every other row has an error; the execution ends
SUCCEEDED.

The marker is found by listing its key, never read: its presence is the request (any content cancels), the time it
was written is when, and a listing needs neither s3:GetObject nor the bucket key's kms:Decrypt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lambdas.shared import layout

BATCH_CANCELLED = "batch_cancelled"  # the error code of the rows a cancel left without a result


@dataclass(frozen=True)
class CancelRequest:
    """A cancel marker found: when it was requested (None when the marker does not say) and where it is."""

    key: str
    requested_at: str | None = None

    def reason(self) -> str:
        """The error message of a row the cancel left without a result."""
        when = f" at {self.requested_at}" if self.requested_at else ""
        return (
            f"the run was cancelled{when} ({self.key}) before this record was processed; it was not sent to the "
            "model and is not billed: start a new run with these rows to process them"
        )


def cancel_requested(s3: Any, bucket: str, run_id: str) -> CancelRequest | None:
    """The run's cancel request, or None when it has none: found by listing the marker's key (a listing reads no
    object, so no decryption either), ``requested_at`` being when the marker was written."""
    key = layout.cancel_key(run_id)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    found = next((item for item in listed if item["Key"] == key), None)
    if found is None:
        return None
    written = found.get("LastModified")
    return CancelRequest(key=key, requested_at=written.isoformat() if isinstance(written, datetime) else None)
