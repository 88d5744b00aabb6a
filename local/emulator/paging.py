"""List operations shared by batch jobs and async invocations: submit-time filters, sort order, nextToken pages."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from local.emulator.errors import validation_error

DEFAULT_MAX_RESULTS = 1000


class Listed(Protocol):
    @property
    def submit_time(self) -> datetime: ...

    @property
    def seq(self) -> int: ...


T = TypeVar("T", bound=Listed)


def submitted_between(item: Listed, params: dict[str, Any]) -> bool:
    """The ``submitTimeAfter`` / ``submitTimeBefore`` filters (both exclusive)."""
    return ("submitTimeAfter" not in params or item.submit_time > params["submitTimeAfter"]) and (
        "submitTimeBefore" not in params or item.submit_time < params["submitTimeBefore"]
    )


def page(items: Iterable[T], params: dict[str, Any], matches: Callable[[T], bool]) -> tuple[list[T], str | None]:
    """One page of the items that match, newest first unless ``sortOrder`` is Ascending, and the next page's token."""
    descending = params.get("sortOrder", "Descending") == "Descending"
    found = sorted((item for item in items if matches(item) and submitted_between(item, params)), key=_key,
                   reverse=descending)  # fmt: skip
    if "nextToken" in params:
        after = _decode_token(params["nextToken"])
        found = [item for item in found if (_key(item) < after if descending else _key(item) > after)]
    selected = found[: params.get("maxResults", DEFAULT_MAX_RESULTS)]
    return selected, _encode_token(_key(selected[-1])) if len(found) > len(selected) else None


def _key(item: Listed) -> tuple[datetime, int]:
    return item.submit_time, item.seq


def _encode_token(key: tuple[datetime, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps([key[0].isoformat(), key[1]]).encode()).decode()


def _decode_token(token: str) -> tuple[datetime, int]:
    try:
        when, seq = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(when), int(seq)
    except (ValueError, TypeError, binascii.Error):
        raise validation_error("The nextToken is invalid") from None
