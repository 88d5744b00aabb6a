"""Other model families end to end through the local CLI: Nova and Llama records, and a Converse-type run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli import batch
from cli.__main__ import main
from prompt_templates import get_template

pytestmark = pytest.mark.slow

ROWS = 120


@pytest.mark.parametrize(
    ("model_id", "invocation_type"),
    [
        ("amazon.nova-lite-v1:0", None),
        ("meta.llama3-1-8b-instruct-v1:0", None),
        ("us.meta.llama4-scout-17b-instruct-v1:0", "Converse"),
    ],
    ids=["nova", "llama", "converse"],
)
def test_every_row_gets_its_own_prompt_back(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    model_id: str,
    invocation_type: str | None,
) -> None:
    # GIVEN 120 topics with characters prompts must survive, and a system prompt
    table = pa.table({"topic": [f'topic {i}: "quoted" {{braces}}\n  spaced ✓' for i in range(ROWS)]})
    path = tmp_path / "topics.parquet"
    pq.write_table(table, path)
    if invocation_type is not None:  # the CLI has no flag for it yet: add it to the execution input it builds
        build = batch.execution_input

        def with_invocation_type(*args: Any) -> dict[str, Any]:
            return {**build(*args), "invocation_type": invocation_type}

        monkeypatch.setattr(batch, "execution_input", with_invocation_type)
    out = tmp_path / "out"
    # WHEN the local runtime runs the family's records through the state machine and the emulator
    code = main(
        [
            "batch",
            "--input",
            str(path),
            "--model-id",
            model_id,
            "--prompt-id",
            "joke_about_topic",
            "--inference-params",
            json.dumps({"max_tokens": 64, "system": "answer in one line"}),
            "--output",
            str(out),
            "--quiet",
            "--step-seconds",
            "0.05",
        ]
    )
    # THEN every row succeeds and its response is its own rendered prompt, echoed in the family's response shape
    assert code == 0, capsys.readouterr().err
    result = pq.read_table(sorted(out.glob("*.parquet")))
    template = get_template("joke_about_topic")
    assert result.column("response").to_pylist() == [template.render(row) for row in table.to_pylist()]
    assert result.column("error_code").null_count == ROWS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total_records"] == ROWS and summary["succeeded"] == ROWS
