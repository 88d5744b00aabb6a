"""Request validation driven by botocore's service model, with the real service's message format.

The model's constraints (``required``, ``min``/``max``, ``pattern``, ``enum``, unions) are enforced server-side, as the
real service does, so requests that botocore lets through (it only checks required members, types and ``min``) still
fail here with a ``ValidationException`` such as::

    1 validation error detected: Value 'bad_name' at 'jobName' failed to satisfy constraint: Member must satisfy
    regular expression pattern: [a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\\+\\-\\.]){0,63}

Patterns are matched against the whole value (as the service does; the model's patterns carry no anchors).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.model import Shape

from local.emulator.errors import validation_error

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "double": (int, float),
    "float": (int, float),
    "structure": (dict,),
    "list": (list,),
    "map": (dict,),
    "timestamp": (datetime,),
    "blob": (bytes, str),
}


def check_request(params: dict[str, Any], shape: Shape | None) -> None:
    """Raise ``ValidationException`` listing every constraint ``params`` violates."""
    if shape is None:
        return
    problems = _structure_problems(params, shape, "")
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise validation_error(f"{count} validation {noun} detected: " + "; ".join(problems))


def _problem(value: Any, path: str, constraint: str) -> str:
    shown = "null" if value is None else f"'{value}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: Member must {constraint}"


def _problems(value: Any, shape: Shape, path: str) -> list[str]:
    expected = _JSON_TYPES.get(shape.type_name, (object,))
    is_bool = isinstance(value, bool)
    if not isinstance(value, expected) or (is_bool and shape.type_name != "boolean"):
        return [_problem(value, path, f"be of type {shape.type_name}")]
    return _CHECKS.get(shape.type_name, _no_problems)(value, shape, path)


def _no_problems(value: Any, shape: Shape, path: str) -> list[str]:
    return []


def _structure_problems(value: dict[str, Any], shape: Shape, path: str) -> list[str]:
    prefix = f"{path}." if path else ""
    problems = [
        _problem(None, f"{prefix}{name}", "not be null") for name in shape.required_members if value.get(name) is None
    ]
    present = [name for name, member in shape.members.items() if value.get(name) is not None]
    if shape.is_tagged_union and len(present) != 1:
        problems.append(_problem(value, path, "have exactly one member set"))
    for name in present:
        problems += _problems(value[name], shape.members[name], f"{prefix}{name}")
    return problems


def _list_problems(value: list[Any], shape: Shape, path: str) -> list[str]:
    problems = _size_problems(len(value), shape, value, path, "length")
    for index, item in enumerate(value):
        problems += _problems(item, shape.member, f"{path}.{index + 1}.member")
    return problems


def _map_problems(value: dict[str, Any], shape: Shape, path: str) -> list[str]:
    problems = _size_problems(len(value), shape, value, path, "length")
    for key, item in value.items():
        problems += _problems(key, shape.key, f"{path}.key")
        problems += _problems(item, shape.value, f"{path}.{key}")
    return problems


def _string_problems(value: str, shape: Shape, path: str) -> list[str]:
    problems = _size_problems(len(value), shape, value, path, "length")
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        problems.append(_problem(value, path, f"satisfy enum value set: [{', '.join(enum)}]"))
    pattern = shape.metadata.get("pattern")
    if pattern and re.fullmatch(pattern, value) is None:
        problems.append(_problem(value, path, f"satisfy regular expression pattern: {pattern}"))
    return problems


def _number_problems(value: float, shape: Shape, path: str) -> list[str]:
    return _size_problems(value, shape, value, path, "value")


def _size_problems(size: float, shape: Shape, value: Any, path: str, what: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    problems = []
    if low is not None and size < low:
        problems.append(_problem(value, path, f"have {what} greater than or equal to {low}"))
    if high is not None and size > high:
        problems.append(_problem(value, path, f"have {what} less than or equal to {high}"))
    return problems


_CHECKS: dict[str, Callable[[Any, Shape, str], list[str]]] = {
    "structure": _structure_problems,
    "list": _list_problems,
    "map": _map_problems,
    "string": _string_problems,
    "integer": _number_problems,
    "long": _number_problems,
    "double": _number_problems,
    "float": _number_problems,
}
