"""What a client asked the answer to be (OpenAI ``response_format``): JSON, or JSON matching a schema. A type of its
own, so the request (``translate.ChatRequest``) and the code that enforces it (``structured``) both import it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["json_object", "json_schema"]
Via = Literal["native", "tool", ""]


@dataclass(frozen=True)
class ResponseFormat:
    kind: Kind
    name: str = "json_object"
    schema: Mapping[str, Any] | None = None  # json_schema: the JSON Schema the answer must match
    description: str = ""
    via: Via = ""  # how the bot is asked (``prepare``): Converse outputConfig, or a forced tool

    def output_config(self) -> dict[str, Any]:
        """The Converse ``outputConfig`` (botocore ``OutputConfig``; the schema travels as JSON text)."""
        definition: dict[str, Any] = {"schema": json.dumps(self.schema), "name": self.name}
        if self.description:
            definition["description"] = self.description
        return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
