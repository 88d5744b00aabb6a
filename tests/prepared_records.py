"""Prepared inputs (input_format "prepared") as the gateway writes them: JSONL records of several models, and the
execution input that names the models. Shared by the functional and end-to-end tests of prepared runs."""

from __future__ import annotations

import json
from typing import Any

HAIKU_ID = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
TITAN_ID = "amazon.titan-embed-text-v2:0"
NOVA_ID = "us.amazon.nova-micro-v1:0"
MODELS: dict[str, dict[str, Any]] = {
    "claude-haiku": {"model_id": HAIKU_ID, "invocation_type": "Converse", "model_family": None, "output_kind": "text"},
    "titan-embed": {"model_id": TITAN_ID, "invocation_type": "InvokeModel", "output_kind": "embedding"},
    "nova-micro": {"model_id": NOVA_ID, "invocation_type": "Converse"},
}


def converse_input(text: str) -> dict[str, Any]:
    """A Converse request body, as a batch record of a Converse-type job takes it."""
    return {
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "system": [{"text": "Answer briefly."}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.2},
    }


def line(number: int, model: str, **extra: Any) -> dict[str, Any]:
    """One prepared line: the model's record for request ``number`` (text models: a Converse body naming the
    request; Titan: its InvokeModel body)."""
    text = f"request {number} for {model}"
    model_input = {"inputText": text} if model == "titan-embed" else converse_input(text)
    return {"custom_id": f"req-{number}", "line": number, "model": model, "model_input": model_input, **extra}


def interleaved(counts: dict[str, int]) -> list[dict[str, Any]]:
    """Lines of several models, interleaved round-robin (the order a user's batch file has), numbered from 1."""
    left = dict(counts)
    lines: list[dict[str, Any]] = []
    while any(left.values()):
        for model, count in left.items():
            if count:
                lines.append(line(len(lines) + 1, model))
                left[model] = count - 1
    return lines


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in lines)


def execution_input(s3_uri: str, models: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    chosen = {name: MODELS[name] for name in (models or list(MODELS))}
    return {
        "input_format": "prepared",
        "s3_uri": s3_uri,
        "models": chosen,
        "job_name_prefix": "oai-batch",
        "resubmit_failed": True,
        "max_records_per_job": None,
    } | changes
