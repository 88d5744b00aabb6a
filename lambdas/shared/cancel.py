"""A run's cancel marker, ``runs/<run>/cancel.json`` (``{"requested_at": "<ISO 8601>"}``), and what it means.

Whoever may write under ``runs/<run>/`` cancels a run by writing the marker (the gateway's batch cancel does, and
``python -m cli batch cancel``). The run honours it from then on: Submit creates no new job (its rows end with
``BATCH_CANCELLED``), Poll stops a job in flight (StopModelInvocationJob: Bedrock writes the output of the records it
processed), the on-demand runner takes no more records, and nothing is resubmitted. Postprocess and Finalize still run,
so every record already processed is delivered and every other row has an error; the execution ends SUCCEEDED.

The marker is looked up by listing its key first: without s3:ListBucket on a key's prefix S3 answers a missing key
with 403, not 404, and a missing marker is the normal case. Its content is informative only: a marker that is not the
JSON object above still cancels the run (its presence is the request).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

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


def parse_marker(key: str, body: bytes) -> CancelRequest:
    """The request a marker's bytes hold. Pure: any content cancels; ``requested_at`` is kept when it is a string."""
    try:
        data: Any = json.loads(body) if body.strip() else {}
    except ValueError:
        data = {}
    requested_at = data.get("requested_at") if isinstance(data, dict) else None
    return CancelRequest(key=key, requested_at=requested_at if isinstance(requested_at, str) else None)


def cancel_requested(s3: Any, bucket: str, run_id: str) -> CancelRequest | None:
    """The run's cancel request, or None when it has none."""
    key = layout.cancel_key(run_id)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if not any(item["Key"] == key for item in listed):
        return None
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None  # deleted between the listing and the read: the run is no longer cancelled
        raise
    return parse_marker(key, body)
