"""The configuration reference (docs/configuration.md) documents every cdk.json key that stacks/config.py reads."""

from __future__ import annotations

from pathlib import Path

from stacks.config import GATEWAY_KEYS, KNOWN_KEYS, OBSERVABILITY_KEYS

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_context_key_has_a_row_in_the_configuration_table() -> None:
    # GIVEN the configuration reference
    section = REFERENCE.read_text(encoding="utf-8")
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
