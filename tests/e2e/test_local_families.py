"""Other model families end to end through the local CLI: Nova and Llama records, and a Converse-type run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli import batch
from tests.e2e.local_runs import assert_every_row_echoes_its_own_prompt, read_results, read_summary, run_batch

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
    params = json.dumps({"max_tokens": 64, "system": "answer in one line"})
    code = run_batch(path, out, "--inference-params", params, model_id=model_id)
    # THEN every row succeeds and its response is its own rendered prompt, echoed in the family's response shape
    assert code == 0, capsys.readouterr().err
    assert_every_row_echoes_its_own_prompt(read_results(out), table)
    summary = read_summary(out)
    assert summary["total_records"] == ROWS and summary["succeeded"] == ROWS
