"""Peak memory of each data-plane handler as Lambda runs it, on every input path, at growing row counts.

    python -m bench.memory            # every path at every size (20M rows: up to ~25 GB of scratch disk, a long run)
    python -m bench.memory --quick    # small sizes: a smoke test of the harness
    options: --dir DIR (scratch space, default bench/.data/memory), --only preprocess,postprocess,resubmit,finalize,
    --paths, --sizes, --run-sizes, --per-job, --json FILE (every measurement, after each), --keep-data, --repeat N
    (preprocess calls per path and size on the same input, each in a fresh process; the highest peak counts)

Each measurement is a fresh Python process that imports the handler and calls ``lambda_handler`` once, as Lambda
does; its peak RSS is the process's high-water mark (``VmHWM``, see ``peak_rss_kib``) at the end, imports
included. S3 is the local disk: the measured process's S3 client is ``bench.production.LocalS3`` over
``DIR/s3`` (objects are files under ``DIR/s3/<bucket>/<key>``), which streams every GET from its file as the caller
reads (a ranged GET reads its range only) and appends multipart parts to one file, so stored objects never count in
its RSS and a 20M-row input is not read whole per request. A server in another process would serve the same bytes
more slowly: moto's reads a whole object for every GET, ranges included, and one 20M-row Parquet preprocess ran 46
minutes on it without finishing. boto3's S3 client is still built in the measured process (its memory counts, as in
Lambda) but not called; what LocalS3 leaves out is a constant: boto3's transfer threads and their buffers (up to 10
parts of 8 MB), the same at any row count. The set-up (inputs, staged runs, Bedrock's outputs) writes the files
straight into that directory. The Hugging Face path streams from a fake hub (tests/fakehub.py) served by another
process, so the hub's files never count either. Data is generated chunk by chunk, never whole. Memory is measured,
never time: the machine may be shared.

What runs, and the targets (peak at the largest size <= 1.2x the peak at the smallest, and under 1.5 GB):

- preprocess over 200k, 2M and 20M rows from S3 Parquet, CSV and JSONL objects, an S3 prefix of 20 Parquet files,
  and a Hugging Face dataset;
- postprocess of the last job of a run of 200k and 2M rows in jobs of 50,000 records (4 and 40 jobs), with
  ``records.parquet`` in row groups of 65,536 rows (as preprocess writes it) and in ONE row group (a Parquet input
  is the run's records as it is, whatever its layout);
- resubmit (plan the resubmission) of the same runs once every job is postprocessed, 5% of rows answered 429;
- finalize of the same runs once the resubmission jobs are postprocessed (their rows merged into the outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.production import allocator_env
from bench.results import Check, Section, at_most
from lambdas.shared.allocator import FUNCTION_ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench-memory"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT = "joke_about_topic"
CHUNK = 100_000  # rows generated at a time
PREFIX_FILES = 20
RUN_INPUT = f"s3://{BUCKET}/inputs/run.parquet"  # what preprocess read: resubmit parses the execution input again
HF_REPO = "bench/memory"
RETRYABLE_EVERY = 20  # every 20th row is answered 429 (retryable): 5% of the rows
MAX_RATIO, MAX_PEAK_MB = 1.2, 1500.0
MEMORY_REPEAT = 3  # preprocess calls per path and size in make bench (BENCH_MEMORY_REPEAT): the highest peak counts
S3_ROOT_ENV = "BENCH_MEMORY_S3"  # the folder LocalS3 serves in the measured and helper processes
PREPROCESS_PATHS = ("parquet", "csv", "jsonl", "prefix", "hf")
LAYOUTS = ("row groups", "one row group")
_WORDS = ("river", "market", "energy", "model", "answer", "group", "system", "water", "city", "price")


@dataclass(frozen=True)
class Sizes:
    preprocess: tuple[int, ...]
    runs: tuple[int, ...]  # rows of the runs postprocess, resubmit and finalize see
    per_job: int


FULL = Sizes(preprocess=(200_000, 2_000_000, 20_000_000), runs=(200_000, 2_000_000), per_job=50_000)
LOCAL_ROWS = (200_000, 2_000_000)  # bench/local_memory.py's sizes in make bench
QUICK = Sizes(preprocess=(100_000, 300_000), runs=(10_000, 100_000), per_job=2_500)


def child_env(s3_root: Path) -> dict[str, str]:
    """What the stack sets on the data-plane functions, and what the Lambda image sets (lambdas/Dockerfile); S3 is
    ``LocalS3`` over ``s3_root`` (``BENCH_MEMORY_S3``, read by ``use_disk_s3`` in each child)."""
    env = {name: value for name, value in os.environ.items() if name != "AWS_ENDPOINT_URL_S3"}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        S3_ROOT_ENV: str(s3_root),
        "DATA_BUCKET": BUCKET,
        "MAX_RECORDS_PER_JOB": "50000",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "BenchMemory",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **allocator_env(),
        "PYTHONPATH": str(ROOT),
    }


# ---- the measured process ------------------------------------------------------------------------------------


_KEPT: list[Any] = []  # the boto3 S3 client the function would build, alive for the whole measurement


def use_disk_s3() -> None:
    """Point the handlers' S3 client factory (``lambdas.shared.aws.s3``) at LocalS3 over ``BENCH_MEMORY_S3``. The
    boto3 client the function would use is built first and kept, so its memory counts as in Lambda."""
    from bench.production import LocalS3
    from lambdas.shared import aws

    local = LocalS3(Path(os.environ[S3_ROOT_ENV]))
    _KEPT.append(aws.s3())
    aws.s3 = lambda: local


def measure(handler_name: str, event_path: Path, hub_port: int | None) -> None:
    """Run one handler once in this (fresh) process and print its peak RSS as a JSON line."""
    import importlib

    from tests.conftest import FakeLambdaContext

    use_disk_s3()
    module = importlib.import_module(f"lambdas.{handler_name}.handler")
    event = json.loads(event_path.read_text())
    with tempfile.TemporaryDirectory(prefix="bench-memory-hf-") as home:
        if hub_port is None:
            result = module.lambda_handler(event, FakeLambdaContext())
        else:
            from tests.fakehub import RemoteHub, use_hub

            with use_hub(RemoteHub(hub_port), Path(home)):
                result = module.lambda_handler(event, FakeLambdaContext())
    peak_kb = peak_rss_kib()
    summary = {k: result[k] for k in ("total_records", "num_jobs", "record_count", "rows_resubmitted") if k in result}
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, **summary}))


def peak_rss_kib() -> int:
    """This process's peak RSS: ``VmHWM`` of /proc/self/status, the high-water mark of this process's own memory.
    Not ``ru_maxrss``: Linux carries it over ``execve`` from the parent's memory when the child is spawned with
    vfork (as subprocess does), so every child would start at the harness's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # no /proc: ru_maxrss, KiB on Linux


def mapped_file(path: Path, name: str) -> Any:
    """``path`` as the hub file ``name``: memory-mapped (a 20M-row file is ~3.5 GB: read whole, it would sit in the
    hub's memory while the measured process runs), its hashes computed once, in blocks."""
    import hashlib
    import mmap

    from tests.fakehub import RepoFile

    with path.open("rb") as file:
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    blob, sha256 = hashlib.sha1(b"blob %d\0" % len(data)), hashlib.sha256()
    for start in range(0, len(data), 64 << 20):
        blob.update(data[start : start + (64 << 20)])
        sha256.update(data[start : start + (64 << 20)])
    served = RepoFile(name, data)
    served.__dict__.update(oid=blob.hexdigest(), sha256=sha256.hexdigest())  # RepoFile's cached properties
    return served


def serve_hub(directory: Path) -> None:
    """Serve every ``{repo}/data/*.parquet`` under ``directory`` as a hub dataset repo until stdin closes (files
    memory-mapped, ``mapped_file``)."""
    import hashlib

    from tests.fakehub import FakeHub, FakeRepo

    repos = {}
    for data in sorted(directory.glob("*/*/data")):
        repo_id = f"{data.parent.parent.name}/{data.parent.name}"
        files = {f"data/{p.name}": mapped_file(p, f"data/{p.name}") for p in sorted(data.glob("*.parquet"))}
        revision = hashlib.sha1(repo_id.encode() + "".join(f.oid for f in files.values()).encode()).hexdigest()
        repos[repo_id] = FakeRepo(repo_id, files, sha=revision)
    hub = FakeHub(repos).start()
    print(hub.port, flush=True)
    sys.stdin.read()
    hub.stop()


# ---- the harness ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        scratch: Path,
        sizes: Sizes,
        *,
        keep_data: bool = False,
        json_path: Path | None = None,
        repeat: int = 1,
    ) -> None:
        self.scratch, self.sizes, self.keep_data, self.json_path = scratch, sizes, keep_data, json_path
        self.repeat = repeat  # preprocess calls per path and size, on the same input: the highest peak counts
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.store = scratch / "s3"  # LocalS3's root: DIR/s3/<bucket>/<key>
        self.env = child_env(self.store)
        self.rows: list[dict[str, Any]] = []
        self._s3: Any = None

    # the file-backed S3, and the emulator for Service Quotas (preprocess reads its quotas) ------------------------
    def __enter__(self) -> Bench:
        from bench.production import LocalS3
        from local.emulator.jobs import EmulatorState
        from local.emulator.server import BedrockEmulator

        self._quotas = BedrockEmulator(EmulatorState(s3=None)).start()
        self.env["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = self._quotas.endpoint_url
        self._s3 = LocalS3(self.store)
        self.reset()
        return self

    def __exit__(self, *_: object) -> None:
        self._quotas.stop()
        self.discard(self.store)

    def reset(self, *, keep_inputs: bool = False) -> None:
        """An empty bucket again, and no multipart upload left over, so stored objects never pile up on disk;
        ``keep_inputs``: all but the inputs (``inputs/``), for another call on the same input."""
        shutil.rmtree(self.store / ".uploads", ignore_errors=True)
        bucket = self.store / BUCKET
        if keep_inputs and bucket.is_dir():
            for entry in bucket.iterdir():
                if entry.name != "inputs":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            return
        shutil.rmtree(bucket, ignore_errors=True)
        bucket.mkdir(parents=True)

    def object_path(self, key: str) -> Path:
        """Where the object ``key`` of the bench's bucket lives: the set-up writes its files there directly."""
        return self.store / BUCKET / key

    # measuring -------------------------------------------------------------------------------------------------
    def run_measured(self, handler: str, event: dict[str, Any], hub_port: int | None = None) -> dict[str, Any]:
        event_path = self.scratch / "event.json"
        event_path.write_text(json.dumps(event))
        command = [sys.executable, "-m", "bench.memory", "--measure", handler, "--event", str(event_path)]
        if hub_port is not None:
            command += ["--hub-port", str(hub_port)]
        env = {**self.env, **FUNCTION_ENVIRONMENT.get(handler, {})}  # the function's own allocator settings
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{handler} failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["seconds"] = round(time.monotonic() - started, 1)  # the call's wall time, for the record: not judged
        return result

    def record(self, handler: str, path: str, rows: int, result: dict[str, Any]) -> None:
        self.rows.append({"handler": handler, "path": path, "rows": rows, **result})
        if "error" in result:
            print(f"  {handler:<11} {path:<14} {rows:>11,} rows  FAILED: {result['error']}", flush=True)
        else:
            took = f"  ({result['seconds']:.0f} s)" if "seconds" in result else ""
            peak = result["peak_rss_mb"]
            calls = result.get("peaks_mb", [])
            each = f"  (highest of {', '.join(f'{p:.0f}' for p in calls)})" if len(calls) > 1 else ""
            print(f"  {handler:<11} {path:<14} {rows:>11,} rows  peak {peak:8.0f} MB{took}{each}", flush=True)
        if self.json_path is not None:  # after each measurement: a run that stops early keeps what it measured
            self.json_path.write_text(json.dumps(self.rows, indent=1) + "\n")

    # preprocess ------------------------------------------------------------------------------------------------
    def preprocess(self, paths: tuple[str, ...] = PREPROCESS_PATHS) -> None:
        for path in paths:
            for rows in self.sizes.preprocess:
                self.reset()
                run_input: dict[str, Any] = {"model_id": MODEL, "prompt_id": PROMPT}
                hub: subprocess.Popen[str] | None = None
                hub_port = None
                if path == "hf":
                    hub_dir = self.scratch / f"hub-{rows}"
                    write_parquet(hub_dir / HF_REPO / "data" / "train-00000-of-00001.parquet", rows)
                    hub = subprocess.Popen(
                        [sys.executable, "-m", "bench.memory", "--serve-hub", str(hub_dir)],
                        cwd=ROOT,
                        env=self.env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    assert hub.stdout is not None
                    hub_port = int(hub.stdout.readline())
                    run_input |= {"dataset_id": HF_REPO, "split": "train"}
                else:
                    run_input["s3_uri"] = self.upload_input(path, rows)
                try:
                    event = {"input": run_input, "execution_name": f"mem-{path}-{rows}"}
                    result = self.call_preprocess(event, rows, hub_port)
                except RuntimeError as exc:  # recorded as failed; the other paths are still measured
                    result = {"error": str(exc).strip().splitlines()[-1]}
                finally:
                    if hub is not None:
                        assert hub.stdin is not None
                        hub.stdin.close()
                        hub.wait()
                    self.discard(self.scratch / f"input-{rows}.{path}", self.scratch / f"hub-{rows}")
                    self.reset()  # the job files and records.parquet go too
                self.record("preprocess", path, rows, result)

    def call_preprocess(self, event: dict[str, Any], rows: int, hub_port: int | None) -> dict[str, Any]:
        """``repeat`` calls of preprocess on the same input, each in a fresh process (what the last one staged is
        deleted first): the result of the call with the highest peak, and every call's peak (``peaks_mb``). One run's
        peak is the top of a sawtooth that differs by tens of MB between identical calls; the highest of several is
        what a function's memory must be sized for, and both sizes of a ratio are judged the same way."""
        results = []
        for call in range(self.repeat):
            if call:
                self.reset(keep_inputs=True)
            result = self.run_measured("preprocess", event, hub_port)
            if result.get("total_records") != rows:
                return {"error": f"read {result.get('total_records')} rows, not {rows}"}
            results.append(result)
        highest = max(results, key=lambda r: float(r["peak_rss_mb"]))
        return {**highest, "peaks_mb": [r["peak_rss_mb"] for r in results]}

    def upload_input(self, path: str, rows: int) -> str:
        if path == "prefix":
            per_file, extra = divmod(rows, PREFIX_FILES)
            first = 0
            for part in range(PREFIX_FILES):
                count = per_file + (part < extra)
                local = write_parquet(self.scratch / f"prefix-{rows}" / f"part-{part:03d}.parquet", count, first)
                self.put_file(local, f"inputs/prefix-{rows}/part-{part:03d}.parquet")
                first += count
            return f"s3://{BUCKET}/inputs/prefix-{rows}/"
        writers = {"parquet": write_parquet, "csv": write_csv, "jsonl": write_jsonl}
        local = writers[path](self.scratch / f"input-{rows}.{path}", rows)
        key = f"inputs/input-{rows}.{path}"
        self.put_file(local, key)
        return f"s3://{BUCKET}/{key}"

    def put_file(self, local: Path, key: str) -> None:
        """Store a generated file as object ``key``: a hard link into the bucket (no second copy on disk), then the
        generated file itself goes unless --keep-data (the object goes with the next reset)."""
        target = self.object_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.hardlink_to(local)
        self.discard(local)

    def discard(self, *paths: Path) -> None:
        """Delete generated data once it is measured (unless --keep-data): at 20M rows an input is up to ~11 GB."""
        if self.keep_data:
            return
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # postprocess, resubmit, finalize ---------------------------------------------------------------------------
    def runs(self, only: set[str]) -> None:
        for layout_name in LAYOUTS:
            for rows in self.sizes.runs:
                self.reset()
                run = stage_run(
                    self._s3, self.scratch, rows, self.sizes.per_job, one_row_group=layout_name != LAYOUTS[0]
                )
                last = run["jobs"][-1]
                if "postprocess" in only:
                    result = self.run_measured("postprocess", job_state(run, last))
                    self.record("postprocess", layout_name, rows, result)
                if not only & {"resubmit", "finalize"}:
                    continue
                postprocess_all(self._s3, self.scratch, run, self.env)
                request = {
                    "run": run["context"],
                    "execution_input": {"model_id": MODEL, "prompt_id": PROMPT, "s3_uri": RUN_INPUT},
                }
                result = self.run_measured("resubmit", request)
                if "resubmit" in only:
                    self.record("resubmit", layout_name, rows, result)
                postprocess_retries(self._s3, self.scratch, run, self.env)
                if "finalize" in only:
                    self.record("finalize", layout_name, rows, self.run_measured("finalize", {"run": run["context"]}))
                self.discard(self.scratch / f"records-{rows}-{int(layout_name != LAYOUTS[0])}.parquet")

    # report ----------------------------------------------------------------------------------------------------
    def table(self) -> bool:
        print(f"\n{'handler':<11} {'path':<14} {'rows':>11} {'peak RSS MB':>12} {'ratio':>6}  result")
        for row in with_ratios(self.rows):
            peak = "failed" if "error" in row else f"{row['peak_rss_mb']:.0f}"
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
            print(
                f"{row['handler']:<11} {row['path']:<14} {row['rows']:>11,} {peak:>12} {ratio:>6}  "
                f"{'pass' if row['ok'] else 'FAIL'}"
            )
        print(
            f"\ntargets: peak <= {MAX_RATIO}x the peak at the smallest size of the same path and < {MAX_PEAK_MB:.0f} MB"
        )
        return all(row["ok"] for row in with_ratios(self.rows))


# ---- verdicts and the results section (pure: no measuring) -------------------------------------------------------


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each measurement with ``ratio`` (its peak over the peak at the smallest size of the same handler and path)
    and ``ok`` (ratio <= MAX_RATIO and peak < MAX_PEAK_MB). A failed run (``error``) has no peak: ratio None, not
    ok; when the smallest size failed, the others have no ratio either."""
    out = []
    for row in rows:
        same = [r for r in rows if (r["handler"], r["path"]) == (row["handler"], row["path"])]
        base = min(same, key=_size)
        if "error" in row or "error" in base:
            out.append({**row, "ratio": None, "ok": False})
            continue
        ratio = row["peak_rss_mb"] / base["peak_rss_mb"]
        out.append({**row, "ratio": ratio, "ok": ratio <= MAX_RATIO and row["peak_rss_mb"] < MAX_PEAK_MB})
    return out


def _size(row: dict[str, Any]) -> int:
    return int(row["rows"])


def rows_label(rows: int) -> str:
    """200000 -> '200k', 2000000 -> '2M', 2500 -> '2,500'."""
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1_000 and rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return f"{rows:,}"


def memory_section(rows: list[dict[str, Any]], seconds: float, per_job: int) -> Section:
    """The memory benchmark's part of results.json: per handler and path, the peak RSS at each size with its ratio
    to the smallest size, and two checks at the largest size: the ratio (<= MAX_RATIO) and the peak (< MAX_PEAK_MB).
    A handler and path measured at one size only has no ratio: that check is "not measured", never a pass."""
    measured = with_ratios(rows)
    sizes = sorted({_size(r) for r in measured})
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in measured:
        groups.setdefault((row["handler"], row["path"]), {})[_size(row)] = row
    table, checks = [], []
    for (handler, path), by_size in groups.items():
        smallest, largest = min(by_size), max(by_size)
        cells = []
        for size in sizes:
            cell = by_size.get(size)
            if cell is None:
                cells.append("-")
            elif "error" in cell:
                cells.append(f"failed: {cell['error']}")
            else:
                parts = [] if cell["ratio"] is None or size == smallest else [f"{cell['ratio']:.2f}x"]
                calls = cell.get("peaks_mb", [])
                if len(calls) > 1:
                    parts.append("calls " + ", ".join(f"{peak:.0f}" for peak in calls))
                cells.append(f"{cell['peak_rss_mb']:.0f} MB" + (f" ({'; '.join(parts)})" if parts else ""))
        failed = any("error" in r for r in by_size.values())
        ok = all(r["ok"] for r in by_size.values()) and largest > smallest
        table.append([handler, path, *cells, "pass" if ok else "FAIL" if failed or largest > smallest else "-"])
        ratio = by_size[largest]["ratio"] if largest > smallest else None
        name = f"{handler} {path}"
        ratio_name = f"{name}: peak at {rows_label(largest)} / at {rows_label(smallest)}"
        if "error" in by_size[largest] or "error" in by_size[smallest]:
            checks.append(Check(ratio_name, "failed", f"<= {MAX_RATIO:g}x", False))
        else:
            checks.append(at_most(ratio_name, ratio, MAX_RATIO))
        peaks = [r["peak_rss_mb"] for r in by_size.values() if "error" not in r]
        top = max(peaks, default=None)
        checks.append(
            Check(
                f"{name}: highest peak RSS",
                "-" if top is None else f"{top:.0f} MB",
                f"< {MAX_PEAK_MB:g} MB",
                None if top is None else top < MAX_PEAK_MB,
            )
        )
    notes = [
        "Peak RSS (VmHWM, MB of 2^20 bytes as Lambda counts memory) of one handler call in a fresh process, as "
        "Lambda runs it; S3 is the local disk (LocalS3: every GET streams from a file, a ranged GET reads its range "
        "only) and the Hugging Face hub a fake one in its own process, so stored objects are not counted. Ratios "
        "are to the smallest size of the same handler and path.",
        "Rows: id, a short topic (the prompt's only column) and 200-800 characters of text. Postprocess, resubmit "
        f"and finalize: runs in jobs of {per_job:,} records, records.parquet in row groups of 65,536 rows and in "
        "one row group; postprocess is measured on the run's last job.",
        f"The memory benchmark took {seconds / 60:.0f} min.",
    ]
    repeats = max((len(r.get("peaks_mb", [])) for r in measured), default=0)
    if repeats > 1:
        notes.append(
            f"Preprocess was called {repeats} times per path and size on the same input, each call in a fresh "
            "process: its peak is the highest of the calls (each call's peak in brackets), the memory a function "
            "must be sized for; one call's peak is the top of a sawtooth that differs by tens of MB between "
            "identical calls, and both sizes of a ratio are judged the same way."
        )
    if per_job != FULL.per_job:
        notes.append(
            "Shrunk sizes (BENCH_MEMORY_SCALE < 1) test the harness, not the targets: a run of a few thousand rows "
            "holds less than one batch of 65,536 rows, so the larger sizes' ratios say little."
        )
    return Section(
        title="Memory: peak RSS of each data-plane handler as the input grows",
        columns=["handler", "input path", *(rows_label(size) for size in sizes), "result"],
        rows=table,
        checks=checks,
        notes=notes,
        figures={"measurements": measured, "seconds": round(seconds, 1), "per_job": per_job},
    )


# ---- data, generated chunk by chunk --------------------------------------------------------------------------


def chunks(rows: int, first: int = 0) -> Iterator[Any]:
    """Tables of at most CHUNK rows: ``id`` (the row number), a short ``topic`` and 200-800 characters of ``text``
    (a slice of a fixed word stream at an offset and of a length drawn from row ``first``'s seed, so a file's rows
    are the same whatever the chunking). The template sends only the topic; the text is the rest of a real row,
    which preprocess reads and, off Parquet, writes to records.parquet."""
    import numpy as np
    import pyarrow as pa

    stream = " ".join(np.random.default_rng(11).choice(_WORDS, 400_000).tolist())  # ~2.6 MB of words
    for start in range(first, first + rows, CHUNK):
        ids = range(start, min(first + rows, start + CHUNK))
        topics = [f"{_WORDS[i % len(_WORDS)]} {_WORDS[(i // 7) % len(_WORDS)]} {i}" for i in ids]
        rng = np.random.default_rng(start)
        lengths = rng.integers(200, 801, len(ids))
        offsets = rng.integers(0, len(stream) - 800, len(ids))
        texts = [stream[o : o + n] for o, n in zip(offsets.tolist(), lengths.tolist(), strict=True)]
        yield pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "topic": pa.array(topics, pa.string()),
                "text": pa.array(texts, pa.string()),
            }
        )


def schema() -> Any:
    """The generated rows' columns (built on demand: the harness process never imports pyarrow)."""
    import pyarrow as pa

    return pa.schema([("id", pa.int64()), ("topic", pa.string()), ("text", pa.string())])


def _cached(path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.exists()


def write_parquet(path: Path, rows: int, first: int = 0, *, one_row_group: bool = False) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if _cached(path):
        return path
    partial = path.with_suffix(".partial")
    if one_row_group:  # one row group needs the whole table at once: the generator's memory, never the handler's
        pq.write_table(pa.concat_tables(chunks(rows, first)), partial, row_group_size=rows, compression="snappy")
    else:
        with pq.ParquetWriter(partial, schema(), compression="snappy") as writer:
            for table in chunks(rows, first):
                writer.write_table(table)
    partial.rename(path)
    return path


def write_csv(path: Path, rows: int) -> Path:
    import pyarrow.csv as pacsv

    if _cached(path):
        return path
    partial = path.with_suffix(".partial")
    with pacsv.CSVWriter(partial, schema()) as writer:
        for table in chunks(rows):
            writer.write_table(table)
    partial.rename(path)
    return path


def write_jsonl(path: Path, rows: int) -> Path:
    if _cached(path):
        return path
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        for table in chunks(rows):
            ids, topics, texts = (table.column(name).to_pylist() for name in ("id", "topic", "text"))
            out.write(
                "".join(
                    f'{{"id": {i}, "topic": "{t}", "text": "{x}"}}\n'
                    for i, t, x in zip(ids, topics, texts, strict=True)
                )
            )
    partial.rename(path)
    return path


def _job_arn(run_id: str, index: int, *, retry: bool = False) -> str:
    return (
        f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{'r' if retry else 'j'}{run_id[-4:]}{index:07d}"
    )


def stage_run(s3: Any, scratch: Path, rows: int, per_job: int, *, one_row_group: bool) -> dict[str, Any]:
    """A run as Bedrock leaves it: records.parquet, the manifest, each job's input file and its output (every
    RETRYABLE_EVERY-th record answered 429, the others with a text)."""
    from lambdas.shared import layout

    run_id = f"mem-{rows}-{'one' if one_row_group else 'groups'}"
    records = write_parquet(scratch / f"records-{rows}-{int(one_row_group)}.parquet", rows, one_row_group=one_row_group)
    s3.upload_file(str(records), BUCKET, layout.records_key(run_id))
    jobs = []
    for index, first in enumerate(range(0, rows, per_job)):
        count = min(per_job, rows - first)
        input_key = layout.job_input_key(run_id, index)
        lines = "".join(
            json.dumps({"recordId": f"{i:011d}", "modelInput": {"messages": [{"role": "user", "content": f"t {i}"}]}})
            + "\n"
            for i in range(first, first + count)
        ).encode()
        s3.put_object(Bucket=BUCKET, Key=input_key, Body=lines)
        arn = _job_arn(run_id, index)
        put_bedrock_output(s3, run_id, arn, range(first, first + count), index=index, fail_every=RETRYABLE_EVERY)
        jobs.append(
            {
                "index": index,
                "input_key": input_key,
                "first_row": first,
                "record_count": count,
                "size_bytes": len(lines),
            }
        )
    s3.put_object(Bucket=BUCKET, Key=layout.manifest_key(run_id), Body=json.dumps(jobs).encode())
    context = {
        "run_id": run_id,
        "bucket": BUCKET,
        "model_id": MODEL,
        "family": "anthropic",
        "output_kind": "text",
        "job_name_prefix": "mem",
        "total_records": rows,
        "num_jobs": len(jobs),
        "records_key": layout.records_key(run_id),
        "manifest_key": layout.manifest_key(run_id),
    }
    return {"context": context, "jobs": jobs}


def put_bedrock_output(
    s3: Any, run_id: str, arn: str, rows: Any, *, index: int, retry: bool = False, fail_every: int = 0
) -> None:
    """Job ``index``'s output as Bedrock writes it: in a folder named by the job id under the job's own output URI."""
    from lambdas.shared import layout

    def line(i: int) -> str:
        if fail_every and i % fail_every == 7:
            body: dict[str, Any] = {"error": {"errorCode": 429, "errorMessage": "Too many requests"}}
        else:
            body = {"modelOutput": {"content": [{"type": "text", "text": f"answer to row {i}"}]}}
        return json.dumps({"recordId": f"{i:011d}", "modelInput": {}, **body}) + "\n"

    prefix = f"{layout.job_output_prefix(run_id, index, resubmission=retry)}{layout.job_id_from_arn(arn)}/"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}input.jsonl.out", Body="".join(line(i) for i in rows).encode())
    s3.put_object(
        Bucket=BUCKET, Key=f"{prefix}manifest.json.out", Body=b'{"inputTokenCount": 1, "outputTokenCount": 1}'
    )


def job_state(run: dict[str, Any], job: dict[str, Any], *, retry: bool = False) -> dict[str, Any]:
    arn = _job_arn(run["context"]["run_id"], job["index"], retry=retry)
    return {"run": run["context"], "job": job, "job_arn": arn, "status": "Completed", "terminal": True}


def _postprocess(env: dict[str, str], states: list[dict[str, Any]], scratch: Path) -> None:
    """Setup, not measured: postprocess every job in one helper process."""
    path = scratch / "states.json"
    path.write_text(json.dumps(states))
    subprocess.run(
        [sys.executable, "-m", "bench.memory", "--postprocess-all", str(path)], cwd=ROOT, env=env, check=True
    )


def postprocess_all(s3: Any, scratch: Path, run: dict[str, Any], env: dict[str, str]) -> None:
    _postprocess(env, [job_state(run, job) for job in run["jobs"]], scratch)


def postprocess_retries(s3: Any, scratch: Path, run: dict[str, Any], env: dict[str, str]) -> None:
    """Answer every resubmission job (all rows succeed this time) and postprocess it."""
    import io

    import pyarrow.parquet as pq

    from lambdas.shared import layout

    run_id = run["context"]["run_id"]
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=layout.manifest_key(run_id, resubmission=True))["Body"].read()
    )
    for job in manifest:
        body = s3.get_object(Bucket=BUCKET, Key=job["rows_key"])["Body"].read()
        rows = pq.read_table(io.BytesIO(body)).column("row").to_pylist()
        put_bedrock_output(s3, run_id, _job_arn(run_id, job["index"], retry=True), rows, index=job["index"], retry=True)
    _postprocess(env, [job_state(run, job, retry=True) for job in manifest], scratch)


def postprocess_states(path: Path) -> None:
    from lambdas.postprocess import logic
    from lambdas.shared import aws
    from lambdas.shared.models import JobState

    use_disk_s3()
    for state in json.loads(path.read_text()):
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as workdir:
            logic.postprocess(JobState.model_validate(state), s3=aws.s3(), workdir=Path(workdir))


def parse_scale(text: str) -> float:
    """BENCH_MEMORY_SCALE's value as a number > 0."""
    try:
        scale = float(text)
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise ValueError(f"BENCH_MEMORY_SCALE must be a number > 0 (1 runs 200k, 2M and 20M rows), not {text!r}")
    return scale


def scaled(sizes: Sizes, scale: float) -> Sizes:
    """Every size times ``scale`` (make bench's BENCH_MEMORY_SCALE; 1 is the issue's sizes), jobs included, so a
    shrunk run still splits each run into as many jobs. Raises when a size would be under 1,000 rows."""

    def times(rows: int) -> int:
        return round(rows * scale)

    out = Sizes(tuple(map(times, sizes.preprocess)), tuple(map(times, sizes.runs)), times(sizes.per_job))
    if min(*out.preprocess, *out.runs) < 1_000:
        raise ValueError(f"BENCH_MEMORY_SCALE={scale:g} leaves fewer than 1,000 rows in a run; use at least 0.01")
    return out


def parse_repeat(text: str) -> int:
    """BENCH_MEMORY_REPEAT: preprocess calls per path and size, a whole number of at least 1."""
    try:
        repeat = int(text)
    except ValueError:
        repeat = 0
    if repeat < 1:
        raise ValueError(f"BENCH_MEMORY_REPEAT={text!r}: give a whole number of calls, 1 or more (default 3)")
    return repeat


def parse_sizes(text: str, knob: str) -> tuple[int, ...]:
    """'200000,2000000' -> (200000, 2000000): row counts, each >= 1, smallest first."""
    try:
        sizes = tuple(sorted(int(value) for value in text.split(",") if value.strip()))
    except ValueError:
        sizes = ()
    if not sizes or sizes[0] < 1:
        raise ValueError(f"{knob} takes comma-separated row counts >= 1 (e.g. 200000,2000000), not {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--dir", type=Path, default=ROOT / "bench" / ".data" / "memory", help="scratch space")
    parser.add_argument("--only", default="preprocess,postprocess,resubmit,finalize", help="handlers, comma-separated")
    parser.add_argument("--paths", default=",".join(PREPROCESS_PATHS), help="preprocess input paths, comma-separated")
    parser.add_argument("--sizes", help="preprocess row counts, comma-separated (default: 200k, 2M, 20M)")
    parser.add_argument("--run-sizes", help="rows of the postprocess/resubmit/finalize runs (default: 200k, 2M)")
    parser.add_argument("--per-job", type=int, help="records per job of those runs (default 50,000)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file (make bench reads it)")
    parser.add_argument("--keep-data", action="store_true", help="keep generated inputs for the next run")
    parser.add_argument("--repeat", type=int, default=1, help="preprocess calls per path and size (highest counts)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--event", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hub-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-hub", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--postprocess-all", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.measure, args.event, args.hub_port)
        return 0
    if args.serve_hub:
        serve_hub(args.serve_hub)
        return 0
    if args.postprocess_all:
        postprocess_states(args.postprocess_all)
        return 0
    only = set(args.only.split(","))
    unknown = only - {"preprocess", "postprocess", "resubmit", "finalize"}
    if unknown:
        parser.error(f"--only {sorted(unknown)}: use preprocess, postprocess, resubmit, finalize")
    scratch = args.dir / ("quick" if args.quick else "full")
    sizes = QUICK if args.quick else FULL
    try:
        sizes = Sizes(
            parse_sizes(args.sizes, "--sizes") if args.sizes else sizes.preprocess,
            parse_sizes(args.run_sizes, "--run-sizes") if args.run_sizes else sizes.runs,
            args.per_job or sizes.per_job,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat}: give 1 or more calls")
    with Bench(scratch, sizes, keep_data=args.keep_data, json_path=args.json, repeat=args.repeat) as bench:
        if "preprocess" in only:
            bench.preprocess(tuple(args.paths.split(",")))
        if only - {"preprocess"}:
            bench.runs(only)
        ok = bench.table()
    if args.quick:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
