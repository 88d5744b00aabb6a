"""The README's configuration table documents every cdk.json key that stacks/config.py reads."""

from __future__ import annotations

from pathlib import Path

from stacks.config import GATEWAY_KEYS, KNOWN_KEYS, OBSERVABILITY_KEYS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_context_key_has_a_row_in_the_configuration_table() -> None:
    # GIVEN the README's configuration section
    text = README.read_text(encoding="utf-8")
    start = text.index("## Configuration (")
    section = text[start : text.index("\n## ", start + 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    # WHEN looking for each key in the first column of a row
    documented = {
        key
        for key in (*KNOWN_KEYS, *GATEWAY_KEYS, *OBSERVABILITY_KEYS)
        for row in rows
        if f"`{key}`" in row.split(" | ")[0]
    }
    # THEN none is missing
    assert sorted({*KNOWN_KEYS, *GATEWAY_KEYS, *OBSERVABILITY_KEYS} - documented) == []
