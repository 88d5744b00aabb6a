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


def test_preprocess_output_goes_to_ram_when_it_has_room_and_to_the_bench_dir_otherwise(monkeypatch, tmp_path):
    # GIVEN a RAM folder, the bench's scratch folder, and no BENCH_OUTPUT_DIR
    ram, scratch = tmp_path / "ram", tmp_path / "scratch"
    ram.mkdir()
    monkeypatch.delenv("BENCH_OUTPUT_DIR", raising=False)
    monkeypatch.setattr(bench, "meminfo_available", lambda: 64 << 30)
    # WHEN the output folder is chosen for a few rows, for more rows than the RAM folder holds, and with no free RAM
    few = bench.output_root(scratch, 1_000, ram)
    many = bench.output_root(scratch, 10**15, ram)
    monkeypatch.setattr(bench, "meminfo_available", lambda: 0)
    no_free_ram = bench.output_root(scratch, 1_000, ram)
    # THEN only the few rows go to RAM, in a folder of its own
    assert few.parent == ram and many == scratch and no_free_ram == scratch
    # AND BENCH_OUTPUT_DIR overrides the choice
    monkeypatch.setenv("BENCH_OUTPUT_DIR", str(tmp_path / "chosen"))
    assert bench.output_root(scratch, 1_000, ram) == tmp_path / "chosen"


def test_each_variants_output_is_deleted_once_checked_and_the_reference_kept_for_the_floors(monkeypatch, tmp_path):
    # GIVEN variants that each write one job file of the same bytes (the floors check the anchor's is still there)
    seen: dict[str, list[str]] = {}

    def variant(_module: str, name: str, _path: str, _source: str, out: str, _per_job: str, *ref: str, **_) -> dict:
        work = tmp_path / "out" / "preprocess" / "csv"
        seen[name] = sorted(p.name for p in work.iterdir()) if work.exists() else []
        if ref:
            assert (Path(ref[0]) / "0000.jsonl").read_bytes() == b"line\n"
        last = Path(out) / "last" / ("s3/bench-data/runs/r/jobs" if name == "ours" else "")
        last.mkdir(parents=True)
        (last / "0000.jsonl").write_bytes(b"line\n")
        return {"rows": 3, "seconds": 1.0, "cpu_seconds": 1.0, "peak_rss_mb": 1.0}

    monkeypatch.setattr(bench, "run", variant)
    # WHEN the CSV path runs
    results = bench.preprocess_path(tmp_path / "out", "csv", tmp_path / "rows.csv", 3, 100)
    # THEN each variant found the outputs before it deleted, but the anchor's, kept until the floors had run
    assert seen == {"ours": [], "anchor": [], "floor": ["anchor"], "floor+records": ["anchor"]}
    # AND nothing is left once the path is done, every variant's figures returned
    assert not (tmp_path / "out" / "preprocess" / "csv").exists() and set(results) == set(seen)
