"""The memory benchmarks' pure parts: ratios and verdicts, the sizes make bench runs, and the results sections
(bench/memory.py, bench/local_memory.py). Nothing is measured here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest

from bench import results
from bench.__main__ import main
from bench.local_memory import local_memory_section
from bench.memory import (
    FULL,
    MAX_PEAK_MB,
    MAX_RATIO,
    Sizes,
    child_env,
    memory_section,
    parse_scale,
    parse_sizes,
    rows_label,
    scaled,
    with_ratios,
)
from bench.production import allocator_env, image_env, production_env
from lambdas.shared.allocator import FUNCTION_ENVIRONMENT


def peak(handler: str, path: str, rows: int, mb: float) -> dict:
    return {"handler": handler, "path": path, "rows": rows, "peak_rss_mb": mb}


def test_ratio_is_to_the_smallest_size_of_the_same_handler_and_path() -> None:
    # GIVEN two paths of preprocess and one of postprocess, listed out of size order
    rows = [
        peak("preprocess", "csv", 2_000_000, 300.0),
        peak("preprocess", "csv", 200_000, 250.0),
        peak("preprocess", "parquet", 200_000, 100.0),
        peak("postprocess", "csv", 200_000, 500.0),
    ]
    # WHEN the ratios are computed
    out = {(r["handler"], r["path"], r["rows"]): r["ratio"] for r in with_ratios(rows)}
    # THEN each is over its own group's smallest size, never another path's or handler's
    assert out[("preprocess", "csv", 2_000_000)] == pytest.approx(1.2)
    assert out[("preprocess", "csv", 200_000)] == 1.0
    assert out[("preprocess", "parquet", 200_000)] == 1.0
    assert out[("postprocess", "csv", 200_000)] == 1.0


@pytest.mark.parametrize(
    ("small", "large", "ok"),
    [
        (250.0, 250.0 * MAX_RATIO, True),  # exactly at the ratio target
        (250.0, 250.0 * MAX_RATIO + 1, False),  # just over it
        (1400.0, MAX_PEAK_MB, False),  # flat, but not under the absolute limit
    ],
)
def test_verdict_needs_both_the_ratio_and_the_absolute_peak(small: float, large: float, ok: bool) -> None:
    # GIVEN one path measured at two sizes
    rows = [peak("preprocess", "jsonl", 200_000, small), peak("preprocess", "jsonl", 20_000_000, large)]
    # WHEN the verdicts are computed
    largest = with_ratios(rows)[1]
    # THEN the largest size passes only within the ratio and under the absolute peak
    assert largest["ok"] is ok


def test_a_failed_run_has_no_ratio_and_fails() -> None:
    # GIVEN a path whose 20M run failed and another whose smallest run failed
    rows = [
        peak("preprocess", "hf", 200_000, 300.0),
        {"handler": "preprocess", "path": "hf", "rows": 20_000_000, "error": "No space left on device"},
        {"handler": "preprocess", "path": "csv", "rows": 200_000, "error": "boom"},
        peak("preprocess", "csv", 2_000_000, 300.0),
    ]
    # WHEN the verdicts are computed
    out = {(r["path"], r["rows"]): r for r in with_ratios(rows)}
    # THEN the failed runs, and a size whose base failed, have no ratio and do not pass
    assert out[("hf", 20_000_000)]["ratio"] is None and out[("hf", 20_000_000)]["ok"] is False
    assert out[("csv", 2_000_000)]["ratio"] is None and out[("csv", 2_000_000)]["ok"] is False
    # AND the section shows the failure and fails both paths' ratio checks
    section = memory_section(rows, 60.0, 50_000)
    verdicts = {check.name: check.ok for check in section.checks}
    assert verdicts["preprocess hf: peak at 20M / at 200k"] is False
    assert verdicts["preprocess csv: peak at 2M / at 200k"] is False
    assert any(cell == "failed: No space left on device" for row in section.rows for cell in row)


def test_memory_section_has_a_column_per_size_and_two_checks_per_handler_and_path() -> None:
    # GIVEN preprocess at three sizes and postprocess at two
    rows = [
        peak("preprocess", "parquet", 200_000, 250.0),
        peak("preprocess", "parquet", 2_000_000, 275.0),
        peak("preprocess", "parquet", 20_000_000, 290.0),
        peak("postprocess", "row groups", 200_000, 200.0),
        peak("postprocess", "row groups", 2_000_000, 260.0),
    ]
    # WHEN the section is built
    section = memory_section(rows, 1800.0, 50_000)
    # THEN the columns are the sizes, a size not run is "-", each cell carries its ratio to the smallest size
    assert section.columns == ["handler", "input path", "200k", "2M", "20M", "result"]
    assert section.rows == [
        ["preprocess", "parquet", "250 MB", "275 MB (1.10x)", "290 MB (1.16x)", "pass"],
        ["postprocess", "row groups", "200 MB", "260 MB (1.30x)", "-", "FAIL"],
    ]
    # AND each handler and path is checked at its largest size against the ratio and the absolute peak
    assert [(c.name, c.value, c.verdict) for c in section.checks] == [
        ("preprocess parquet: peak at 20M / at 200k", "1.16x", "pass"),
        ("preprocess parquet: highest peak RSS", "290 MB", "pass"),
        ("postprocess row groups: peak at 2M / at 200k", "1.30x", "FAIL"),
        ("postprocess row groups: highest peak RSS", "260 MB", "pass"),
    ]
    # AND the run's length is in the notes (no shrunk-size warning at full size), and it renders in RESULTS.md
    assert any("took 30 min" in note for note in section.notes)
    assert not any("Shrunk sizes" in note for note in section.notes)
    assert any("Shrunk sizes" in note for note in memory_section(rows, 60.0, 500).notes)
    rendered = results.render_markdown({"sections": {"memory": {"run": RUN, **asdict(section)}}})
    assert "| preprocess | parquet | 250 MB | 275 MB (1.10x) | 290 MB (1.16x) | pass |" in rendered


RUN = {"date": "2026-01-01T00:00:00Z", "commit": "0123456789abcdef", "machine": {"cpu": "Test CPU", "cores": 2}}


def test_one_size_is_not_measured_never_a_pass() -> None:
    # GIVEN a path measured at one size only
    section = memory_section([peak("finalize", "one row group", 200_000, 210.0)], 10.0, 50_000)
    # WHEN its ratio check is read
    ratio = section.checks[0]
    # THEN there is no ratio to hold to the target
    assert (ratio.value, ratio.verdict) == ("-", "not measured")
    assert section.rows[0][-1] == "-"


@pytest.mark.parametrize(
    ("rows", "label"), [(200_000, "200k"), (2_000_000, "2M"), (20_000_000, "20M"), (2_500, "2,500"), (999, "999")]
)
def test_rows_label(rows: int, label: str) -> None:
    # GIVEN a row count WHEN it labels a column THEN it reads as the issue writes it
    assert rows_label(rows) == label


def test_scale_shrinks_every_size_and_the_jobs_with_them() -> None:
    # GIVEN the sizes WHEN make bench runs at BENCH_MEMORY_SCALE=0.01
    small = scaled(FULL, 0.01)
    # THEN every size and the records per job are a hundredth (as many jobs per run as at full size)
    assert small == Sizes(preprocess=(2_000, 20_000, 200_000), runs=(2_000, 20_000), per_job=500)
    # AND 1 keeps the sizes
    assert scaled(FULL, 1) == FULL


@pytest.mark.parametrize(
    ("text", "message"),
    [("0", "must be a number > 0 .* not '0'"), ("abc", "not 'abc'"), ("0.001", "fewer than 1,000 rows")],
)
def test_scale_rejects_sizes_that_measure_nothing(text: str, message: str) -> None:
    # GIVEN a scale of zero, one that is not a number, or one that leaves a few hundred rows
    # WHEN it is read and the sizes are scaled THEN the error names the knob, the value and what to use
    with pytest.raises(ValueError, match=message) as error:
        scaled(FULL, parse_scale(text))
    assert "BENCH_MEMORY_SCALE" in str(error.value)


def test_parse_sizes_sorts_and_names_the_option_on_bad_input() -> None:
    # GIVEN sizes out of order, and a bad list
    # WHEN they are parsed THEN the sizes come smallest first, and the bad list's error names the option and value
    assert parse_sizes("2000000, 200000", "--sizes") == (200_000, 2_000_000)
    with pytest.raises(ValueError, match=r"--run-sizes takes comma-separated row counts .* not '2M'"):
        parse_sizes("2M", "--run-sizes")


def test_local_memory_section_checks_ratio_peak_and_every_row_back() -> None:
    # GIVEN the local runtime at 200k and 2M rows, the 2M run losing a row
    measured = [
        {"rows": 2_000_000, "peak_rss_mib": 1_000.0, "rows_back": 1_999_999},
        {"rows": 200_000, "peak_rss_mib": 800.0, "rows_back": 200_000},
    ]
    # WHEN the section is built
    section = local_memory_section(measured, 600.0)
    # THEN the table lists the sizes smallest first with their ratio, and the lost row fails its check
    assert section.rows[1] == ["2M", "1,000 MiB", "1.25x", "1,999,999 of 2,000,000"]
    verdicts = {c.name: (c.value, c.verdict) for c in section.checks}
    assert verdicts["peak at 2M / at 200k"] == ("1.25x", "pass")
    assert verdicts["highest peak RSS (process tree)"] == ("1,000 MiB", "pass")
    assert verdicts["every input row back"] == ("1,999,999 of 2,000,000", "FAIL")


def test_local_memory_section_with_no_second_size_measures_no_ratio() -> None:
    # GIVEN only the 200k run (the 2M run failed before it was recorded)
    section = local_memory_section([{"rows": 200_000, "peak_rss_mib": 1_600.0, "rows_back": 200_000}], 60.0)
    # WHEN its checks are read
    verdicts = {c.name: c.verdict for c in section.checks}
    # THEN the ratio is not measured, and the peak over the limit fails
    assert verdicts == {
        "peak ratio": "not measured",
        "highest peak RSS (process tree)": "FAIL",
        "every input row back": "pass",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BENCH_ONLY": "memroy"}, "BENCH_ONLY takes"),
        ({"BENCH_ONLY": "memory", "BENCH_MEMORY_SCALE": "0"}, "> 0"),
        ({"BENCH_ONLY": "memory", "BENCH_MEMORY_REPEAT": "0"}, "BENCH_MEMORY_REPEAT='0'"),
        ({"BENCH_ONLY": "memory", "BENCH_MEMORY_REPEAT": "three"}, "1 or more"),
    ],
)
def test_make_bench_rejects_a_bad_part_or_scale_before_measuring(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a misspelt part, a scale of zero, or a number of calls that is not one
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # WHEN make bench starts
    code = main()
    # THEN it stops with a usage error naming the setting, before any benchmark runs
    assert code == 2 and message in capsys.readouterr().err


def test_repeated_calls_on_one_input_count_the_highest_peak_and_keep_every_calls(tmp_path, monkeypatch) -> None:
    # GIVEN the harness calling preprocess three times per input, whose calls peak at 410, 452 and 431 MB, each
    # staging a job file next to the input in the bucket
    from bench.memory import BUCKET, Bench

    bench = Bench(tmp_path, FULL, repeat=3)
    bench.reset()
    bucket = tmp_path / "s3" / BUCKET
    (bucket / "inputs").mkdir()
    (bucket / "inputs" / "input.csv").write_text("topic\na\n")
    peaks, seen_before_call = iter([410.0, 452.0, 431.0]), []

    def call(handler: str, event: dict, hub_port: int | None = None) -> dict:
        seen_before_call.append(sorted(p.name for p in bucket.iterdir()))
        (bucket / "runs").mkdir(exist_ok=True)
        return {"peak_rss_mb": next(peaks), "total_records": 1}

    monkeypatch.setattr(bench, "run_measured", call)
    # WHEN one path and size is measured
    result = bench.call_preprocess({"input": {}}, 1, None)
    # THEN the highest peak counts, every call's peak is kept, and each call after the first started from the input
    # alone (what the last one staged was deleted, the input kept)
    assert result["peak_rss_mb"] == 452.0 and result["peaks_mb"] == [410.0, 452.0, 431.0]
    assert seen_before_call == [["inputs"], ["inputs"], ["inputs"]]
    # AND the section shows each call's peak and says how the highest is judged
    rows = [
        {**peak("preprocess", "csv", 200_000, 452.0), "peaks_mb": [410.0, 452.0, 431.0]},
        {**peak("preprocess", "csv", 2_000_000, 500.0), "peaks_mb": [470.0, 480.0, 500.0]},
    ]
    section = memory_section(rows, 60.0, FULL.per_job)
    assert section.rows[0][2:4] == ["452 MB (calls 410, 452, 431)", "500 MB (1.11x; calls 470, 480, 500)"]
    assert any("called 3 times" in note for note in section.notes)


def test_a_call_that_loses_rows_fails_the_measurement_whatever_the_others_did(tmp_path, monkeypatch) -> None:
    # GIVEN three calls of which the second reads one row fewer than the input has
    from bench.memory import Bench

    bench = Bench(tmp_path, FULL, repeat=3)
    bench.reset()
    answers = iter([{"peak_rss_mb": 400.0, "total_records": 10}, {"peak_rss_mb": 300.0, "total_records": 9}])
    monkeypatch.setattr(bench, "run_measured", lambda *args, **kwargs: next(answers))
    # WHEN the path and size is measured
    result = bench.call_preprocess({"input": {}}, 10, None)
    # THEN it is a failure naming the rows read, with no peak
    assert result == {"error": "read 9 rows, not 10"}


def test_image_env_reads_every_env_of_a_dockerfile_with_continuation_lines(tmp_path) -> None:
    # GIVEN a Dockerfile with a multi-line ENV and another ENV later
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM x\n# a comment\nENV A=1 \\\n    B="two words" \\\n    C=3\nRUN true\nENV D=4\n')
    # WHEN its environment is read
    env = image_env(dockerfile)
    # THEN every variable is there, quotes removed
    assert env == {"A": "1", "B": "two words", "C": "3", "D": "4"}


def test_benchmarks_run_the_handlers_with_the_images_allocator_settings() -> None:
    # GIVEN the data-plane image's allocator settings (lambdas/Dockerfile)
    allocators = allocator_env()
    # WHEN the memory benchmark and the batch benchmark build a measured process's environment
    memory_env = child_env(Path("/tmp/s3"))
    batch_env = production_env("preprocess", 50_000)
    # THEN both carry the image's Arrow pool and glibc malloc settings, as Lambda runs them
    assert {"ARROW_DEFAULT_MEMORY_POOL", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"} <= set(allocators)
    assert allocators.items() <= memory_env.items() and allocators.items() <= batch_env.items()


def test_the_batch_benchmark_runs_each_function_with_its_own_allocator_settings_too() -> None:
    # GIVEN postprocess's and preprocess's glibc settings beyond the image's (lambdas/shared/allocator.py, which the
    # stack sets), each its own value
    postprocess_own, preprocess_own = FUNCTION_ENVIRONMENT["postprocess"], FUNCTION_ENVIRONMENT["preprocess"]
    assert postprocess_own != preprocess_own
    # WHEN the batch benchmark builds the environment of postprocess, of preprocess and of finalize
    postprocess, preprocess = production_env("postprocess", 50_000), production_env("preprocess", 50_000)
    finalize = production_env("finalize", 50_000)
    # THEN each runs with its own on top of the image's settings, and a function without any keeps the image's
    assert postprocess_own.items() <= postprocess.items() and allocator_env().items() <= postprocess.items()
    assert preprocess_own.items() <= preprocess.items() and allocator_env().items() <= preprocess.items()
    assert not set(postprocess_own) & set(finalize)


def test_measured_processes_get_the_disk_s3_and_still_build_the_functions_boto3_client(tmp_path, monkeypatch) -> None:
    # GIVEN a child's environment naming the S3 folder (the handlers' client factory restored after the test)
    from bench import memory
    from bench.production import LocalS3
    from lambdas.shared import aws

    monkeypatch.setattr(aws, "s3", aws.s3)
    monkeypatch.setattr(memory, "_KEPT", [])
    monkeypatch.setenv(memory.S3_ROOT_ENV, str(tmp_path))
    assert child_env(tmp_path)[memory.S3_ROOT_ENV] == str(tmp_path)
    # WHEN the child points the handlers at it
    memory.use_disk_s3()
    # THEN the handlers' S3 is LocalS3 over that folder, and boto3's S3 client was built and is kept alive
    assert isinstance(aws.s3(), LocalS3) and aws.s3().root == tmp_path
    assert [client.meta.service_model.service_name for client in memory._KEPT] == ["s3"]


def test_set_up_links_inputs_into_the_bucket_and_reset_leaves_it_empty(tmp_path) -> None:
    # GIVEN the harness over a scratch folder (not entered: no quota emulator needed) and a generated input
    from bench.memory import BUCKET, Bench

    bench = Bench(tmp_path, FULL)
    bench.reset()
    generated = tmp_path / "input-10.csv"
    generated.write_text("id,topic\n1,a\n")
    # WHEN the input is stored as an object
    bench.put_file(generated, "inputs/input-10.csv")
    stored = tmp_path / "s3" / BUCKET / "inputs/input-10.csv"
    # THEN the object is the generated file itself (a hard link: no second copy), and the generated name is gone
    assert stored.read_text() == "id,topic\n1,a\n" and stored.stat().st_nlink == 1 and not generated.exists()
    # AND a reset leaves an empty bucket and no multipart upload behind
    (tmp_path / "s3" / ".uploads").mkdir()
    (tmp_path / "s3" / ".uploads" / "part").write_bytes(b"x")
    bench.reset()
    assert list((tmp_path / "s3" / BUCKET).iterdir()) == [] and not (tmp_path / "s3" / ".uploads").exists()


def test_the_hub_serves_a_memory_mapped_file_with_the_hashes_of_its_bytes(tmp_path) -> None:
    # GIVEN a file of 70 MB (more than one block of the hashing)
    from bench.memory import mapped_file
    from tests.fakehub import RepoFile

    path = tmp_path / "train.parquet"
    path.write_bytes(bytes(range(256)) * (70 * 4096))
    # WHEN it is mapped as a hub file
    served = mapped_file(path, "data/train.parquet")
    # THEN it has the hashes and the bytes the fake hub computes from the file read whole
    whole = RepoFile("data/train.parquet", path.read_bytes())
    assert (served.oid, served.sha256, len(served.data)) == (whole.oid, whole.sha256, len(whole.data))
    assert served.data[1000:1010] == whole.data[1000:1010]


def test_a_part_that_misses_a_target_does_not_skip_the_parts_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN make bench's four parts, of which the first and the third miss a target (exit code 1)
    import bench.__main__ as entry

    called: list[str] = []

    def part_exiting(part: str, code: int) -> Callable[[], int]:
        def run() -> int:
            called.append(part)
            return code

        return run

    for part, code in (("batch", 1), ("memory", 0), ("gateway", 1), ("keys", 0)):
        monkeypatch.setattr(entry, part, part_exiting(part, code))
    monkeypatch.delenv("BENCH_ONLY", raising=False)
    # WHEN make bench runs
    code = main()
    # THEN every part ran, in order, and the run still exits non-zero
    assert called == ["batch", "memory", "gateway", "keys"] and code == 1
