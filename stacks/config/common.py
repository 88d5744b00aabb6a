"""What every part of the settings shares: the registry of settings (each key with its type, default and meaning, the
source of the configuration reference), the typed readers that name the key and the fix when a value does not fit,
and the settings every Lambda function and bucket shares.

``-c`` values arrive as strings, so every reader casts ("7" -> 7, "true" -> True, '["a", "b"]' or "a,b" -> a tuple).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURES = ("arm64", "x86_64")
# CloudWatch Logs retention periods CDK's RetentionDays offers (INFINITE left out on purpose), by day count.
LOG_RETENTION_DAYS: dict[int, str] = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+(:[a-z0-9-]+)?$", re.IGNORECASE)
_BOOLEANS = {"true": True, "false": False}
# The concerns, in the order the configuration reference shows them.
CONCERNS = ("batch", "functions", "security", "gateway", "fargate", "operations")


class HasNode(Protocol):
    """Anything with a construct node, such as ``cdk.App``; typed loosely so this package needs no CDK import."""

    @property
    def node(self) -> Any: ...


@dataclass(frozen=True)
class Setting:
    """One ``cdk.json`` key: what the reference shows of it, and what its reader takes from it.

    ``default`` is the value used when the key is absent (the dataclasses take their defaults from here too);
    ``default_text`` replaces it in the reference when the default is computed or not a plain value; ``kind`` says how
    the value is written (derived from ``low``/``high``/``choices`` when empty)."""

    concern: str
    key: str
    default: Any
    meaning: str
    kind: str = ""
    default_text: str | None = None
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()

    @property
    def type_text(self) -> str:
        if self.kind:
            return self.kind
        if self.choices:
            return "one of " + ", ".join(f"`{c}`" for c in self.choices)
        if isinstance(self.default, bool):
            return "`true` or `false`"
        if self.low is not None:
            return f"integer {self.low}-{self.high}" if self.high is not None else f"integer >= {self.low}"
        raise ValueError(f"setting {self.key} needs a kind")

    @property
    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        return f"`{self.default}`"


SETTINGS: dict[str, Setting] = {}


def setting(concern: str, key: str, default: Any, meaning: str, **more: Any) -> Setting:
    """Declare (and register) a setting; each key once."""
    if concern not in CONCERNS or key in SETTINGS:
        raise ValueError(f"setting {key!r}: unknown concern {concern!r} or declared twice")
    SETTINGS[key] = Setting(concern, key, default, meaning, **more)
    return SETTINGS[key]


def keys(concern: str) -> tuple[str, ...]:
    return tuple(key for key, s in SETTINGS.items() if s.concern == concern)


class Context:
    """Typed readers over the raw context, one per kind of setting; each names the key and the fix when a value does
    not fit. Every read goes through a :class:`Setting`, so no key is read that the reference does not document."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self._raw = raw

    def raw(self, s: Setting) -> object:
        """The value as given (or the default), for settings with a parser of their own."""
        return self._raw.get(s.key, s.default)

    def has(self, s: Setting) -> bool:
        return s.key in self._raw and self._raw[s.key] not in (None, "")

    def integer(self, s: Setting, *, default: int | None = None, low: int | None = None, why: str = "") -> int:
        fallback = s.default if default is None else default
        least = s.low if low is None else low
        assert least is not None, s.key
        value = self._raw.get(s.key, fallback)
        need = (f"an integer between {least} and {s.high}" if s.high is not None else f"an integer >= {least}") + why
        number = as_int(value)
        if number is None or number < least or (s.high is not None and number > s.high):
            raise error(s.key, need, value, fallback)
        return number

    def boolean(self, s: Setting) -> bool:
        value = self._raw.get(s.key, s.default)
        if isinstance(value, bool):
            return value
        parsed = _BOOLEANS.get(str(value).strip().lower())
        if parsed is not None:
            return parsed
        raise error(s.key, "true or false", value, str(s.default).lower())

    def choice(self, s: Setting) -> str:
        value = self._raw.get(s.key, s.default)
        if value not in s.choices:
            raise error(s.key, "one of " + ", ".join(s.choices), value, s.default)
        return str(value)

    def log_retention(self, s: Setting) -> int:
        value = self._raw.get(s.key, s.default)
        days = as_int(value)
        if days not in LOG_RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS)
            raise error(s.key, f"a CloudWatch Logs retention in days ({allowed})", value, s.default)
        return days

    def strings(self, s: Setting, check: Callable[[str], str | None]) -> tuple[str, ...]:
        value = self._raw.get(s.key, s.default)
        example = ",".join(s.default)
        items = as_string_list(value)
        if not items:
            raise error(s.key, "a non-empty JSON list of strings (or a comma-separated string)", value, example)
        for item in items:
            problem = check(item)
            if problem:
                raise error(s.key, f"a list whose items are {problem}; {item!r} is not", value, example)
        return tuple(dict.fromkeys(items))  # drop duplicates, keep order


def error(key: str, need: str, value: object, example: object) -> ValueError:
    return ValueError(f"{key} must be {need}, got {value!r}; set it in cdk.json or pass -c {key}={example}")


def json_object(value: object, key: str, example: str) -> object:
    """A ``-c`` value arrives as JSON text: the parsed object; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else {}
    except json.JSONDecodeError:
        raise error(key, "a JSON object", value, example) from None


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def as_string_list(value: object) -> list[str] | None:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    return None


def check_region(item: str) -> str | None:
    return None if REGION.match(item) else "AWS region names such as 'us-east-1'"


def check_model_id(item: str) -> str | None:
    if item.lower().startswith("arn:") or not MODEL_ID.match(item):
        return "Bedrock model or inference-profile ids (not ARNs) such as 'anthropic.claude-3-haiku-20240307-v1:0'"
    return None


def _normalise(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def reject_typos(context: Mapping[str, object]) -> None:
    """Fail on a key that is not ours but nearly is (``maxConcurentJobs``), which would otherwise be ignored."""
    ours = {_normalise(key): key for key in SETTINGS}
    for key in context:
        if key in SETTINGS or ":" in key or "/" in key:  # CDK's own keys: feature flags, aws:cdk:..., lookups
            continue
        match = difflib.get_close_matches(_normalise(key), ours, n=1, cutoff=0.85)
        if match:
            raise ValueError(
                f"unknown context key {key!r}; did you mean {ours[match[0]]!r}? "
                f"Rename it in cdk.json or pass -c {ours[match[0]]}=..."
            )
