"""Converse structured output (``outputConfig.textFormat``) and the emulator's JSON answers for a schema.

Checks (ValidationException): ``outputConfig.textFormat`` only on the models the structured-output page lists
(``STRUCTURED_OUTPUT_PREFIXES``; an opaque ARN: every feature); ``structure.jsonSchema.schema`` is the JSON text of
a JSON Schema (Draft 2020-12) whose root is an object; Bedrock checks the schema against a supported subset it does
not list in full, so the emulator takes the stricter reading Anthropic's structured outputs document: every object
in the schema sets ``additionalProperties: false``.

Answers: the text is a JSON value built for the schema (``example_value``: required properties only, ``const`` and
``enum`` first values, numbers at their ``minimum`` (else 1, at most the ``maximum``), strings the user's text cut to
``maxLength``, arrays of ``minItems`` items, the first ``anyOf`` / ``oneOf`` branch), cut at ``maxTokens`` like any
answer (then it is no valid JSON, as a real model's cut answer). Tool inputs are built the same way
(``tool_use.tool_calls``). ``EMULATOR_INVALID_JSON`` in the last user message makes them break the schema on
purpose (``invalid_value``: every required property of the wrong type, and one property the schema does not
declare), so the gateway's checks of a model's JSON can be tested.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

from local.emulator.errors import ApiError, validation_error
from local.emulator.families import base_model_id

# Structured outputs on bedrock-runtime (user guide "Get validated JSON results from models")
STRUCTURED_OUTPUT_PREFIXES = (
    "anthropic.claude-haiku-4-5",
    "anthropic.claude-sonnet-4-5",
    "anthropic.claude-opus-4-5",
    "anthropic.claude-opus-4-6",
)
INVALID_TRIGGER = "EMULATOR_INVALID_JSON"
UNSUPPORTED = (
    "This model doesn't support the outputConfig.textFormat field. Remove outputConfig.textFormat and try again."
)
_WRONG: dict[str, Any] = {"string": 1, "integer": "one", "number": "one", "boolean": "yes", "array": {}, "object": []}


def _schema_problem(message: str) -> ApiError:
    return validation_error(f"outputConfig.textFormat.structure.jsonSchema.schema: {message}")


def _objects(schema: Any, path: str = "#") -> list[tuple[str, Mapping[str, Any]]]:
    """Every object schema in ``schema`` (its properties, items, branches and definitions), with its JSON pointer."""
    if not isinstance(schema, Mapping):
        return []
    found = [(path, schema)] if schema.get("type") == "object" or "properties" in schema else []
    for key in ("properties", "$defs", "definitions"):
        for name, child in (schema.get(key) or {}).items():
            found += _objects(child, f"{path}/{key}/{name}")
    for key in ("items", "additionalItems", "not"):
        found += _objects(schema.get(key), f"{path}/{key}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for index, child in enumerate(schema.get(key) or []):
            found += _objects(child, f"{path}/{key}/{index}")
    return found


def output_schema(request: Mapping[str, Any], family: str, model_id: str) -> Mapping[str, Any] | None:
    """The JSON schema of ``outputConfig.textFormat`` (checked), or None when the request asks for none."""
    text_format = (request.get("outputConfig") or {}).get("textFormat")
    if text_format is None:
        return None
    if family != "profile" and not base_model_id(model_id).startswith(STRUCTURED_OUTPUT_PREFIXES):
        raise validation_error(UNSUPPORTED)
    definition = (text_format.get("structure") or {}).get("jsonSchema")
    if not isinstance(definition, Mapping):
        raise validation_error("outputConfig.textFormat.structure must set jsonSchema.")
    try:
        schema = json.loads(str(definition.get("schema")))
    except ValueError:
        raise _schema_problem("the schema is not valid JSON.") from None
    if not isinstance(schema, dict):
        raise _schema_problem("the schema must be a JSON object.")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise _schema_problem(f"not a valid JSON Schema: {error.message}") from None
    if schema.get("type") != "object":
        raise _schema_problem("the root schema must have type 'object'.")
    for path, node in _objects(schema):
        if node.get("additionalProperties") is not False:
            raise _schema_problem(f"{path}: objects must set 'additionalProperties' to false.")
    return schema


def example_value(schema: Mapping[str, Any], text: str) -> Any:
    """A value for ``schema``: see the module docstring."""
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_value(schema[key][0], text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or [] if isinstance(name, str)]
        return {name: example_value(properties.get(name) or {}, text) for name in required}
    if kind in ("integer", "number"):
        value = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in schema else 1)
        return min(value, schema["maximum"]) if "maximum" in schema else value
    if kind == "array":
        item = example_value(schema.get("items") or {}, text)
        return [item] * int(schema.get("minItems", 0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = text[: int(schema["maxLength"])] if "maxLength" in schema else text
    return value.ljust(int(schema.get("minLength", 0)), "x")


def invalid_value(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An object that breaks ``schema``: each required property of a wrong type, and an undeclared property."""
    properties = schema.get("properties") or {}
    value: dict[str, Any] = {}
    for name in schema.get("required") or []:
        kind = (properties.get(name) or {}).get("type")
        value[name] = _WRONG.get(kind if isinstance(kind, str) else "string", 1)
    value["emulator_undeclared"] = True
    return value


def answer_value(schema: Mapping[str, Any], text: str) -> Any:
    """The value the model answers with for ``schema``: valid, or broken on purpose (``INVALID_TRIGGER``)."""
    return invalid_value(schema) if INVALID_TRIGGER in text else example_value(schema, text)
