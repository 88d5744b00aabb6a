"""bench/results.py: the results file each benchmark records its section in, and the files generated from it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from bench import results
from bench.results import Check, Section, at_least, at_most

RUN = {"date": "2026-01-01T00:00:00Z", "commit": "0123456789abcdef", "machine": {"cpu": "Test CPU", "cores": 2}}


def section(ok: bool) -> Section:
    return Section(
        title="Batch",
        columns=["step", "ours"],
        rows=[["preprocess", "1.00 s"]],
        checks=[at_least("faster than the anchor", 4.0 if ok else 2.0, 3.0)],
        notes=["a note"],
        figures={"seconds": 1.0},
    )


def test_committed_pages_match_the_results_file() -> None:
    # GIVEN the committed results file (or none yet), the README, docs/benchmarks.md and docs/benchmark-results.md
    recorded = results.load()
    # WHEN the blocks and the results page are generated from it
    summary, checks = results.render_summary_block(recorded), results.render_checks_block(recorded)
    # THEN the committed files hold exactly that: nobody typed figures by hand or forgot to regenerate
    assert summary in results.README.read_text()
    assert checks in results.DOCS_PAGE.read_text()
    assert results.RESULTS_MD.read_text() == results.render_markdown(recorded)


def test_record_replaces_its_own_section_and_keeps_the_others(tmp_path: Path) -> None:
    # GIVEN a results file with a gateway section
    path = tmp_path / "results.json"
    results.record("gateway", section(ok=True), path=path, run=RUN)
    # WHEN the batch benchmark records its section twice (a rerun)
    results.record("batch", section(ok=True), path=path, run=RUN)
    results.record("batch", section(ok=False), path=path, run={**RUN, "date": "2026-01-02T00:00:00Z"})
    # THEN both sections are there, the batch one from the last run, each with its run's date, commit and machine
    saved = json.loads(path.read_text())
    assert sorted(saved["sections"]) == ["batch", "gateway"]
    assert saved["sections"]["batch"]["run"]["date"] == "2026-01-02T00:00:00Z"
    assert saved["sections"]["batch"]["checks"][0]["ok"] is False
    assert saved["sections"]["gateway"]["checks"][0]["ok"] is True


def test_record_fills_in_this_runs_date_commit_and_machine(tmp_path: Path) -> None:
    # GIVEN no run described by the caller
    path = tmp_path / "results.json"
    # WHEN a section is recorded
    results.record("batch", section(ok=True), path=path)
    # THEN the run names a date, this repository's commit and the machine's CPU and cores
    run = json.loads(path.read_text())["sections"]["batch"]["run"]
    assert run["date"].endswith("Z") and len(run["commit"].removesuffix("-dirty")) == 40
    assert run["machine"]["cores"] >= 1 and run["machine"]["cpu"]
    # AND how busy the machine was (1, 5 and 15 minute load averages), so a noisy run shows
    assert len(run["load_average"]) == 3


@pytest.mark.parametrize(
    ("check", "verdict"),
    [
        (at_least("x", 3.0, 3.0), "pass"),
        (at_least("x", 2.99, 3.0), "FAIL"),
        (at_most("x", 2.0, 2.0), "pass"),
        (at_most("x", 2.01, 2.0), "FAIL"),
        (at_most("x", None, 2.0), "not measured"),
        (Check("added TTFT", "-24.32 ms", "<= 10 ms", None), "not judged"),
    ],
)
def test_checks_compare_the_figure_with_its_target(check: Check, verdict: str) -> None:
    # GIVEN a figure on either side of its target (or none, or one measured that cannot be judged)
    # WHEN it is judged
    # THEN the verdict follows the target's direction, the limit itself included
    assert check.verdict == verdict


def test_generated_files_show_every_check_with_its_verdict() -> None:
    # GIVEN results with a passing and a failing section
    recorded = {
        "sections": {name: {"run": RUN, **asdict(section(ok=name == "gateway"))} for name in ("batch", "gateway")}
    }
    # WHEN the results page, the docs block of checks and the README summary are rendered
    markdown, block = results.render_markdown(recorded), results.render_checks_block(recorded)
    summary = results.render_summary_block(recorded)
    # THEN the page and the block show each check's figure, target and verdict, and the run's commit and machine
    assert "| faster than the anchor | 2.00x | >= 3x | FAIL |" in markdown
    assert "| batch | faster than the anchor | 2.00x | >= 3x | FAIL |" in block
    assert "| gateway | faster than the anchor | 4.00x | >= 3x | pass |" in block
    assert "`0123456789ab`" in block and "Test CPU" in markdown
    assert block.startswith(results.CHECKS_START) and block.endswith(results.CHECKS_END)
    # AND the summary counts what passes per benchmark and names what does not
    assert "- `batch` (2026-01-01, commit `0123456789ab`, 2 cores): 0 of 1 checks pass; not yet: faster than" in summary
    assert "- `gateway` (2026-01-01, commit `0123456789ab`, 2 cores): 1 of 1 checks pass" in summary


def test_the_summary_names_the_checks_that_could_not_be_judged() -> None:
    # GIVEN a section whose one check has no verdict (its figure could not be measured or judged)
    unjudged = Section(title="gateway", columns=["x"], rows=[["1"]], checks=[at_most("added TTFT", None, 10.0)])
    recorded = {"sections": {"gateway": {"run": RUN, **asdict(unjudged)}}}
    # WHEN the README summary is rendered
    summary = results.render_summary_block(recorded)
    # THEN it counts no pass and names the check as not judged, not as passing or failing
    assert "0 of 1 checks pass; not judged: added TTFT" in summary and "not yet" not in summary


def test_a_page_without_its_block_is_an_actionable_error() -> None:
    # GIVEN a README that lost its generated block
    # WHEN the block is written into it
    # THEN the error names the file and the markers to put back
    with pytest.raises(ValueError, match="README.md has no .*bench-summary:start.*put the two markers back"):
        results.with_block(
            "# README\n", results.render_summary_block(None), results.SUMMARY_START, results.SUMMARY_END, "README.md"
        )
