"""``application/vnd.amazon.eventstream`` frames, as Bedrock sends them for ConverseStream.

Each event is one binary message (prelude, headers, JSON payload, CRCs) encoded with moto's
``EventStreamEncoder`` (botocore only decodes; awscrt has no Python encoder). Headers, as the service sends them:

- an event: ``:event-type`` (the member of ``ConverseStreamOutput``, e.g. ``contentBlockDelta``),
  ``:content-type: application/json``, ``:message-type: event``;
- an error inside the stream: ``:exception-type`` (e.g. ``modelStreamErrorException``),
  ``:content-type: application/json``, ``:message-type: exception``; botocore raises ``EventStreamError`` with that
  code while the client iterates.

Payloads carry a ``p`` member of padding letters, as the real service adds (it hides the payload size); botocore
ignores members its model does not declare.
"""

from __future__ import annotations

import json
import string
from typing import Any

from moto.core.eventstream import EventStreamEncoder

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_PADDING = string.ascii_letters + string.digits
_encoder = EventStreamEncoder()


def _payload(body: dict[str, Any], padding: int) -> bytes:
    return json.dumps({**body, "p": _PADDING[: max(1, padding)]}).encode()


def event_frame(event_type: str, body: dict[str, Any], padding: int = 8) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return _encoder.encode_message(headers, _payload(body, padding))


def exception_frame(exception_type: str, body: dict[str, Any]) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return _encoder.encode_message(headers, json.dumps(body).encode())
