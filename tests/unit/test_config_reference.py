"""The configuration reference (docs/configuration.md) is generated from the declarations the readers use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stacks.config import GATEWAY_KEYS, KNOWN_KEYS, OBSERVABILITY_KEYS, SETTINGS, AppConfig
from stacks.config.common import Setting
from stacks.config.reference import END, PAGE, START, page_with_reference, render

CONFIG_PACKAGE = Path(__file__).resolve().parents[2] / "stacks" / "config"


def test_the_committed_page_is_the_generated_reference() -> None:
    # GIVEN the committed page WHEN the reference is rendered from the registry of settings
    page = PAGE.read_text(encoding="utf-8")
    # THEN the page holds exactly that (rerun python -m stacks.config.reference after changing a setting)
    assert render() in page
    assert page_with_reference(page) == page


def test_every_key_of_every_stack_has_a_row() -> None:
    # GIVEN the keys the stacks read WHEN the reference is rendered
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    documented = [row.split("`")[1] for row in rows]
    # THEN each has exactly one row, and there is no row for a key nobody reads
    assert sorted(documented) == sorted({*KNOWN_KEYS, *GATEWAY_KEYS, *OBSERVABILITY_KEYS})


def test_no_reader_takes_a_key_by_its_name() -> None:
    # GIVEN the source of the settings package
    sources = {path.name: path.read_text(encoding="utf-8") for path in CONFIG_PACKAGE.glob("*.py")}
    # WHEN searched for a context read by a literal key (context.get("x"), context["x"])
    literal = re.compile(r"""(context|_raw)(\.get\(|\[)\s*["']""")
    # THEN there is none: every read goes through a declared Setting, which is what the reference shows
    assert [name for name, text in sources.items() if literal.search(text)] == []


def test_the_defaults_shown_are_the_defaults_read() -> None:
    # GIVEN an empty context WHEN the batch stack's settings are read
    config = AppConfig.from_context({})
    # THEN each plain default the reference shows is the value the code uses
    assert f"`{config.batch.max_concurrent_jobs}`" == SETTINGS["maxConcurrentJobs"].shown_default
    assert f"`{config.functions.log_retention_days}`" == SETTINGS["logRetentionDays"].shown_default
    assert f"`{str(config.storage.auto_delete_objects).lower()}`" == SETTINGS["autoDeleteObjects"].shown_default
    assert f"`{config.observability.alarm_job_failure_percent}`" == SETTINGS["alarmJobFailurePercent"].shown_default


def test_a_setting_without_a_way_to_say_its_type_is_refused() -> None:
    # GIVEN a setting with neither bounds, choices, a boolean default nor a written kind
    odd = Setting("batch", "oddKey", object(), "meaning")
    # WHEN the reference asks for its type THEN it is an error naming the key, not an empty cell
    with pytest.raises(ValueError, match="oddKey"):
        _ = odd.type_text


def test_a_page_without_its_markers_is_an_actionable_error() -> None:
    # GIVEN a page that lost its markers WHEN the reference is written into it THEN the error names the markers
    with pytest.raises(ValueError, match="config-reference:start"):
        page_with_reference("# Configuration reference\n")
    assert START in render() and END in render()
