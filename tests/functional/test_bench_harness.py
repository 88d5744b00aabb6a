"""The batch benchmark's harness: the measured side is the deployed handler in its production environment, on every
input path, and the variants do the same work. Figures are not asserted here (timing lives in bench/ only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.__main__ import batch_section
from bench.data import as_csv, as_jsonl
from bench.production import BUCKET, PATHS, LocalS3, production_env

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300


def variant(*args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.preprocess_variants", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BENCH_REPEAT": "1", **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench-inputs")
    parquet = folder / "rows.parquet"
    words = [f'question {i} with a "quote" and a \\ backslash' for i in range(ROWS)]
    pq.write_table(pa.table({"source": words, "rationale": ["why"] * ROWS, "target": ["yes"] * ROWS}), parquet)
    as_csv(parquet, folder / "rows.csv")  # what `python -m bench.data csv|jsonl` calls, without a process each
    as_jsonl(parquet, folder / "rows.jsonl")
    return {"parquet": parquet, "csv": folder / "rows.csv", "jsonl": folder / "rows.jsonl", "hf": parquet}


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_ours_is_the_deployed_handler_and_does_the_anchors_work(path: str, inputs: dict[str, Path], tmp_path: Path):
    # GIVEN the same rows on one input path
    source, per_job = str(inputs[path]), "100"
    # WHEN ours runs in the preprocess function's environment, and the anchor and the floor run on the same input
    ours = variant("ours", path, source, str(tmp_path / "ours"), per_job, env=production_env("preprocess", 100))
    anchor = variant("anchor", path, source, str(tmp_path / "anchor"), per_job)
    reference = str(tmp_path / "anchor" / "last")
    floor = variant("floor", path, source, str(tmp_path / "floor"), per_job, reference)
    # THEN ours went through the handler: Powertools JSON logs of the deployed service and its EMF metrics line
    logs = [json.loads(line) for line in ours[:-1]]
    assert {entry.get("service") for entry in logs} == {"batch-preprocess"}
    assert any(entry.get("message") == "run prepared" for entry in logs)
    assert any(entry.get("RecordsPrepared") == [float(ROWS)] for entry in logs)
    # AND every variant handled every row, and ours' job files hold the anchor's bytes (the same JSONL lines)
    assert [json.loads(out[-1])["rows"] for out in (ours, anchor, floor)] == [ROWS] * 3
    jobs = sorted((tmp_path / "ours" / "last" / "s3" / BUCKET).rglob("jobs/*.jsonl"))
    ours_lines = sorted(line for job in jobs for line in job.read_text().splitlines())
    anchor_lines = sorted(line for job in Path(reference).glob("*.jsonl") for line in job.read_text().splitlines())
    assert ours_lines == anchor_lines and len(ours_lines) == ROWS
    # AND the floor wrote the anchor's job files, byte for byte (from its memory, see bench/preprocess_variants.py)
    floor_jobs = sorted((tmp_path / "floor" / "last").glob("*.jsonl"))
    assert [job.read_bytes() for job in floor_jobs] == [
        job.read_bytes() for job in sorted(Path(reference).glob("*.jsonl"))
    ]


def test_local_s3_serves_byte_ranges_and_missing_keys_as_s3_does(tmp_path: Path) -> None:
    # GIVEN an object in the local S3
    s3 = LocalS3(tmp_path)
    s3.put_object(Bucket=BUCKET, Key="a/b.bin", Body=b"0123456789")
    # WHEN a range, the object's size and a missing key are asked for
    part = s3.get_object(Bucket=BUCKET, Key="a/b.bin", Range="bytes=2-5")["Body"].read()
    size = s3.head_object(Bucket=BUCKET, Key="a/b.bin")["ContentLength"]
    # THEN the range is inclusive of both ends, as in S3, and a missing key is S3's 404 ClientError
    assert (part, size) == (b"2345", 10)
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="404"):
        s3.head_object(Bucket=BUCKET, Key="missing")
    with pytest.raises(ClientError, match="NoSuchKey"):
        s3.get_object(Bucket=BUCKET, Key="missing")
    listed = [page["Contents"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="a/")]
    assert [[(item["Key"], item["Size"]) for item in page] for page in listed] == [[("a/b.bin", 10)]]


def test_local_s3_lists_in_pages_of_1000_keys_and_streams_bodies_line_by_line(tmp_path: Path) -> None:
    # GIVEN 1,001 objects under one prefix, one other object, and a JSONL object in the local S3
    s3 = LocalS3(tmp_path)
    for i in range(1001):
        s3.put_object(Bucket=BUCKET, Key=f"runs/r/results/{i:04d}.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="runs/other.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="runs/r/jobs/0000.jsonl", Body=b'{"a": 1}\n{"a": 2}\n')
    # WHEN the prefix is listed, one key is looked up with MaxKeys=1, and the JSONL body is read line by line
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="runs/r/results/"))
    one = s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/other.json", MaxKeys=1)
    none = s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/missing/")
    lines = list(s3.get_object(Bucket=BUCKET, Key="runs/r/jobs/0000.jsonl")["Body"].iter_lines())
    # THEN S3's pages: 1,000 keys then the last one, in key order, each with its modification time
    assert [len(page["Contents"]) for page in pages] == [1000, 1]
    keys = [item["Key"] for page in pages for item in page["Contents"]]
    assert keys == [f"runs/r/results/{i:04d}.json" for i in range(1001)]
    assert all("LastModified" in item for page in pages for item in page["Contents"])
    # AND a lookup finds just its key, an empty listing has no Contents, and the body streams as boto3's does
    assert [item["Key"] for item in one["Contents"]] == ["runs/other.json"] and one["IsTruncated"] is False
    assert "Contents" not in none and none["KeyCount"] == 0
    assert lines == [b'{"a": 1}', b'{"a": 2}']


def test_local_s3_copies_without_moving_bytes_and_never_changes_an_object_in_place(tmp_path: Path) -> None:
    # GIVEN an object in the local S3, copied to another key (S3 copies server-side: no byte through the function)
    s3 = LocalS3(tmp_path)
    s3.put_object(Bucket=BUCKET, Key="inputs/data.parquet", Body=b"input bytes")
    s3.copy({"Bucket": BUCKET, "Key": "inputs/data.parquet"}, BUCKET, "runs/r/records.parquet")
    source, copy = tmp_path / BUCKET / "inputs/data.parquet", tmp_path / BUCKET / "runs/r/records.parquet"
    # THEN the copy is the same file (a hard link), read back as the same bytes
    assert copy.samefile(source) and copy.read_bytes() == b"input bytes"
    # WHEN the copy's key is written again THEN the source keeps its bytes (a write makes a new file)
    s3.put_object(Bucket=BUCKET, Key="runs/r/records.parquet", Body=b"other")
    assert source.read_bytes() == b"input bytes" and copy.read_bytes() == b"other"


def test_local_s3_assembles_multipart_uploads_in_part_order_and_drops_aborted_ones(tmp_path: Path) -> None:
    # GIVEN two multipart uploads in the local S3: one whose parts arrive in order, one whose part 2 arrives first
    s3 = LocalS3(tmp_path)
    ordered = s3.create_multipart_upload(Bucket=BUCKET, Key="runs/r/jobs/0000.jsonl")["UploadId"]
    crossed = s3.create_multipart_upload(Bucket=BUCKET, Key="runs/r/jobs/0001.jsonl")["UploadId"]
    etags = {
        (upload, number): s3.upload_part(
            Bucket=BUCKET, Key="k", UploadId=upload, PartNumber=number, Body=bytearray(body)
        )["ETag"]
        for upload, number, body in ((ordered, 1, b"a1"), (ordered, 2, b"a2"), (crossed, 2, b"b2"), (crossed, 1, b"b1"))
    }
    aborted = s3.create_multipart_upload(Bucket=BUCKET, Key="runs/r/jobs/0002.jsonl")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="k", UploadId=aborted, PartNumber=1, Body=b"c1")
    # WHEN both are completed and the third is aborted
    for upload, key in ((ordered, "runs/r/jobs/0000.jsonl"), (crossed, "runs/r/jobs/0001.jsonl")):
        parts = [{"PartNumber": n, "ETag": etags[upload, n]} for n in (1, 2)]
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    s3.abort_multipart_upload(Bucket=BUCKET, Key="runs/r/jobs/0002.jsonl", UploadId=aborted)
    # THEN each object holds its parts in part order, and the aborted one does not exist
    jobs = tmp_path / BUCKET / "runs/r/jobs"
    assert (jobs / "0000.jsonl").read_bytes() == b"a1a2" and (jobs / "0001.jsonl").read_bytes() == b"b1b2"
    assert not (jobs / "0002.jsonl").exists() and list((tmp_path / ".uploads").iterdir()) == []


def test_batch_section_judges_every_path_against_both_targets() -> None:
    # GIVEN preprocess figures where ours is 2.5x faster than the anchor and 1.5x the floor, on one path
    def seconds(value: float) -> dict[str, float]:
        return {"seconds": value, "cpu_seconds": value, "peak_rss_mb": 100.0}

    pre = {"csv": {"ours": seconds(2.0), "anchor": seconds(5.0), "floor": seconds(4 / 3)}}
    post = {"csv": {"ours": seconds(1.0), "anchor": seconds(4.0), "floor": seconds(0.5)}}
    # WHEN the batch section is built
    section = batch_section(pre, post, rows=1000, job_records=100)
    # THEN each step and path has both checks, judged against the targets (3x the anchor, 2x the floor)
    verdicts = {check.name: check.verdict for check in section.checks}
    assert verdicts == {
        "preprocess csv: faster than the anchor": "FAIL",
        "preprocess csv: time over the floor's": "pass",
        "postprocess csv: faster than the anchor": "pass",
        "postprocess csv: time over the floor's": "pass",
    }


def _gateway_results(cases: tuple[str, ...], ramp: bool = True) -> dict[str, Any]:
    """Results shaped as bench/gateway_bench.py writes them for ``cases``: p99 @100 and p50 @500 x 20 s over their
    targets, the gateway's CPU per answer and per frame on its rows."""
    from bench.gateway_bench import AT_500, TARGETS

    timings: dict[str, Any] = {"ttft_p50_ms": 10.0, "ttft_p99_ms": 20.0, "total_p50_ms": 100.0, "total_p99_ms": 200.0}
    timings |= {"errors": 0, "frames_per_answer": 1000.0, "gateway_cpu_ms_per_answer": 0.5}
    timings |= {"gateway_cpu_us_per_frame": 0.5}
    gateway = timings | {"gateway_cpu_ms_per_answer": 21.0, "gateway_cpu_us_per_frame": 21.0}
    gateway |= {"cores_busy": {"gateway": 0.5, "emulator": 0.75, "load_generator": 0.5, "machine": 2}}
    added = {"added_ttft_p50_ms": 2.0, "added_ttft_p99_ms": 25.0, "added_total_p50_ms": 3.0, "added_total_p99_ms": 4.0}
    latency = {case: {"direct": timings, "gateway": gateway, **added} for case in cases}
    if AT_500 in latency:
        latency[AT_500] |= {"added_ttft_p50_ms": 12.0}
    results = {
        "topology": "split",
        "pace_s": 0.02,
        "latency": latency,
        "import_s": 0.6,
        "zip": {"zip_mb": None, "note": "not measured"},
        "checks": {
            "added_ttft_p50_ms": latency.get("100", {}).get("added_ttft_p50_ms"),
            "added_ttft_p99_ms": latency.get("100", {}).get("added_ttft_p99_ms"),
            "added_ttft_p50_ms_at_500": latency.get(AT_500, {}).get("added_ttft_p50_ms"),
            "targets": TARGETS,
        },
    }
    return results | ({"max_streams": {"max_streams_without_errors": 1000, "steps": []}} if ramp else {})


def test_gateway_section_holds_the_gateway_benchs_checks() -> None:
    # GIVEN results of every case of the gateway bench, p99 @100 and p50 @500 x 20 s over their targets
    from bench.__main__ import gateway_section
    from bench.gateway_bench import CASES

    results = _gateway_results(CASES)
    # WHEN they become the gateway section of the results file
    section = gateway_section(results)
    # THEN every target of the gateway bench is a check, judged (an unmeasured zip says so), the 500-stream target on
    # the 20-second answers; each case is a row, the gateway's with its CPU per answer and per frame
    verdicts = {check.name: check.verdict for check in section.checks}
    assert verdicts == {
        "added TTFT p50 @100 open streams": "pass",
        "added TTFT p99 @100 open streams": "FAIL",
        "added TTFT p50 @500 x 20 s: 500 open streams of 20 s answers in one process": "FAIL",
        "concurrent streams without errors": "pass",
        "app import (cold)": "pass",
        "Lambda zip (deflated)": "not measured",
    }
    assert [row[0] for row in section.rows][:3] == ["direct @1", "gateway @1", "added @1"]
    assert "gateway @500 x 2 s (stress)" in [row[0] for row in section.rows]
    by_case = {row[0]: row for row in section.rows}
    assert by_case["gateway @500 x 20 s"][-3:] == ["1000", "21.00 ms", "21.0 us"]
    assert by_case["direct @500 x 20 s"][-2:] == ["", ""]  # the gateway idles while the direct baseline runs
    # AND the cores each process kept busy in the 500-stream runs are noted (a starved gateway shows there)
    noted = "@500 x 20 s, gateway run: cores kept busy by the gateway 0.50, the emulator 0.75"
    assert any(note.startswith(noted) for note in section.notes)


def test_gateway_section_of_a_run_of_some_cases_says_what_was_not_measured() -> None:
    # GIVEN results of a short run of the two 500-stream cases only (BENCH_GATEWAY_CASES), no ramp
    from bench.__main__ import gateway_section
    from bench.gateway_bench import AT_500, AT_500_STRESS

    results = _gateway_results((AT_500, AT_500_STRESS), ramp=False)
    # WHEN they become the gateway section
    section = gateway_section(results)
    # THEN the checks of the cases not run are "not measured", not passed or failed, and only the run cases are rows
    verdicts = {check.name: check.verdict for check in section.checks}
    assert verdicts["added TTFT p50 @100 open streams"] == "not measured"
    assert verdicts["concurrent streams without errors"] == "not measured"
    assert verdicts["added TTFT p50 @500 x 20 s: 500 open streams of 20 s answers in one process"] == "FAIL"
    assert {row[0].split(" @")[1] for row in section.rows} == {AT_500, AT_500_STRESS}


def test_gateway_section_notes_where_each_process_ran() -> None:
    # GIVEN a 500-stream run with the gateway pinned to core 1, and other work taking 0.3 of that core
    from bench.__main__ import gateway_section
    from bench.gateway_bench import AT_500

    results = _gateway_results((AT_500,), ramp=False)
    results["placement"] = {"gateway": [1], "others": [0], "note": "the gateway's process pinned to core 1"}
    results["latency"][AT_500]["gateway"] = results["latency"][AT_500]["gateway"] | {
        "gateway_core": {"busy": 0.8, "others": 0.3}
    }
    # WHEN it becomes the gateway section
    section = gateway_section(results)
    # THEN the notes give the placement, and the run's note how much of the gateway's core other processes took
    assert "cores: the gateway's process pinned to core 1" in section.notes
    run = next(note for note in section.notes if note.startswith(f"@{AT_500}, gateway run"))
    assert "(placed as above)" in run and "the gateway's core busy 0.80, 0.30 of it other processes" in run


def test_an_added_ttft_far_below_zero_is_not_judged() -> None:
    # GIVEN a 500-stream run where the direct baseline was 1.9 s slower than the gateway (a machine too busy for it)
    from bench.__main__ import gateway_section
    from bench.gateway_bench import AT_500

    results = _gateway_results((AT_500,), ramp=False)
    results["checks"]["added_ttft_p50_ms_at_500"] = -1888.0
    # WHEN it becomes the gateway section
    section = gateway_section(results)
    # THEN the figure is shown but not judged: a negative added latency must not pass the target
    check = next(c for c in section.checks if c.name.startswith(f"added TTFT p50 @{AT_500}"))
    assert (check.value, check.ok) == ("-1888.00 ms", None)


def test_keys_section_holds_the_one_millisecond_target_for_both_passes() -> None:
    # GIVEN results shaped as bench/keys_bench.py writes them: the key check adds 0.4 ms on moto, 1.2 ms modelled
    from bench.__main__ import keys_section
    from bench.keys_bench import TARGET_ADDED_MS, TEAM_KEY_LIMITS

    def kind(ttft: float) -> dict[str, float]:
        figures = {"ttft_p50_ms": ttft, "ttft_p99_ms": ttft * 2, "total_p50_ms": ttft + 1, "total_p99_ms": ttft * 3}
        return figures | {"dynamodb_calls_per_request": 0.0, "requests": 10}

    def one_pass(added: float, delay: float) -> dict[str, Any]:
        added_figures = {f"added_{k}": added for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")}
        ratio = (4 + added) / 4
        return {"no team key": kind(4), "team key": kind(4 + added), **added_figures, "ttft_p50_ratio": ratio} | {
            "dynamodb_delay_ms": delay
        }

    results = {
        "requests": 10,
        "team_key_limits": TEAM_KEY_LIMITS,
        "passes": {"local": one_pass(0.4, 0.0), "aws model": one_pass(1.2, 5.0)},
        "checks": {"local": 0.4, "aws model": 1.2, "target_ms": TARGET_ADDED_MS},
    }
    # WHEN it becomes the keys section of the results file
    section = keys_section(results)
    # THEN each pass is judged against 1 ms, and each pass shows both kinds and what the key added
    verdicts = {check.name: check.verdict for check in section.checks}
    assert verdicts == {
        "team key: added TTFT p50, DynamoDB on moto over HTTP": "pass",
        "team key: added TTFT p50, each DynamoDB call held 5 ms (AWS model)": "FAIL",
    }
    assert [row[1] for row in section.rows] == ["no team key", "team key", "added"] * 2


def test_local_s3_writes_parts_in_parallel_and_still_assembles_them_in_part_order(tmp_path: Path, monkeypatch) -> None:
    # GIVEN the local S3, whose write of one part (part 1 of job 0) is held until the test lets it go
    import threading

    from bench import production

    s3 = LocalS3(tmp_path)
    first = s3.create_multipart_upload(Bucket=BUCKET, Key="runs/r/jobs/0000.jsonl")["UploadId"]
    other = s3.create_multipart_upload(Bucket=BUCKET, Key="runs/r/jobs/0001.jsonl")["UploadId"]
    writing, release, pwrite = threading.Event(), threading.Event(), os.pwrite

    def held(descriptor: int, data: Any, offset: int) -> int:
        if bytes(data[:2]) == b"a1":
            writing.set()
            assert release.wait(30), "the held part was never let go"
        return pwrite(descriptor, data, offset)

    monkeypatch.setattr(production.os, "pwrite", held)
    part = {"Bucket": BUCKET, "Key": "k"}
    held_part = threading.Thread(
        target=s3.upload_part, kwargs={**part, "UploadId": first, "PartNumber": 1, "Body": b"a1"}
    )
    held_part.start()
    assert writing.wait(30)
    # WHEN other parts arrive while that part is being written: the next part of the same upload, and another upload's
    s3.upload_part(**part, UploadId=first, PartNumber=2, Body=bytearray(b"a2"))
    s3.upload_part(**part, UploadId=other, PartNumber=1, Body=memoryview(b"b1"))
    # THEN they were taken without waiting for it (this thread got here while it is still held)
    assert held_part.is_alive()
    release.set()
    held_part.join(30)
    # AND once completed, each object holds its parts in part order
    for upload, key, count in ((first, "runs/r/jobs/0000.jsonl", 2), (other, "runs/r/jobs/0001.jsonl", 1)):
        parts = [{"PartNumber": n, "ETag": f'"{upload}-{n}"'} for n in range(1, count + 1)]
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    jobs = tmp_path / BUCKET / "runs/r/jobs"
    assert (jobs / "0000.jsonl").read_bytes() == b"a1a2" and (jobs / "0001.jsonl").read_bytes() == b"b1"


def test_local_s3_rebuilds_an_object_whose_file_holds_a_part_sent_twice(tmp_path: Path) -> None:
    # GIVEN a multipart upload whose last part was sent twice (a retry: S3 keeps the last one of a part number)
    s3 = LocalS3(tmp_path)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="runs/r/jobs/0000.jsonl")["UploadId"]
    for number, body in ((1, b"a1"), (2, b"xx"), (2, b"a2")):
        s3.upload_part(Bucket=BUCKET, Key="k", UploadId=upload, PartNumber=number, Body=body)
    # WHEN it is completed
    parts = [{"PartNumber": n, "ETag": f'"{upload}-{n}"'} for n in (1, 2)]
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="runs/r/jobs/0000.jsonl", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    # THEN the object holds each part once, the last one sent of each number, and nothing of the replaced one
    assert (tmp_path / BUCKET / "runs/r/jobs/0000.jsonl").read_bytes() == b"a1a2"
