"""bench/__main__.py's BENCH_STEPS: one batch step can run alone, and a partial run records nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import __main__ as bench


@pytest.fixture
def steps_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The steps the batch benchmark ran (each step's work replaced by a note of it), and 'record' if it recorded."""
    ran: list[str] = []

    def step(name: str):
        def run(*_: object) -> dict:
            ran.append(name)
            return {}

        return run

    monkeypatch.setenv("BENCH_DIR", str(tmp_path))
    monkeypatch.setattr(bench, "preprocess_bench", step("preprocess"))
    monkeypatch.setattr(bench, "postprocess_bench", step("postprocess"))
    monkeypatch.setattr(bench, "batch_section", lambda *_: None)
    monkeypatch.setattr(bench, "record", lambda *_: ran.append("record"))
    return ran


def test_one_step_runs_alone_and_records_nothing(monkeypatch, steps_run):
    # GIVEN BENCH_STEPS naming postprocess only
    monkeypatch.setenv("BENCH_STEPS", "postprocess")
    # WHEN the batch benchmark runs
    code = bench.batch()
    # THEN only postprocess ran, and the results file was left as it was
    assert code == 0 and steps_run == ["postprocess"]


def test_both_steps_by_default_and_the_run_is_recorded(monkeypatch, steps_run):
    # GIVEN no BENCH_STEPS
    monkeypatch.delenv("BENCH_STEPS", raising=False)
    # WHEN the batch benchmark runs THEN both steps ran, in order, and the run was recorded
    assert bench.batch() == 0 and steps_run == ["preprocess", "postprocess", "record"]


def test_an_unknown_step_is_refused_with_the_steps_there_are(monkeypatch, steps_run, capsys):
    # GIVEN a misspelt step
    monkeypatch.setenv("BENCH_STEPS", "postproces")
    # WHEN the batch benchmark runs THEN it stops before any work and names the steps it takes
    assert bench.batch() == 2 and steps_run == []
    assert "BENCH_STEPS takes a comma-separated subset of ['preprocess', 'postprocess']" in capsys.readouterr().err
