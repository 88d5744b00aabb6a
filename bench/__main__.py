"""``make bench``: benchmarks with baselines measured in the same run; prints ratios and records them in
bench/results.json and the pages generated from it (bench/results.py: one section per benchmark).

The reference case: SimpleCoT's 2.24 million rows into 45 jobs, on each input path (Parquet, CSV and JSONL objects,
a Hugging Face dataset from a local fake hub), and one job of 50,000 records back into Parquet.
Environment: BENCH_ROWS (default 2,240,000), BENCH_MAX_PER_JOB (default: rows / 45, the reference job count),
BENCH_JOB_RECORDS (default 50,000), BENCH_PATHS (input paths, comma-separated; default parquet,csv,jsonl,hf),
BENCH_REPEAT (runs per variant, best kept; default 2), BENCH_DIR (scratch space and the generated datasets, reused
between runs; default bench/.data), BENCH_OUTPUT_DIR (where the preprocess variants write their output; default a
folder of /dev/shm when it and free RAM have room, BENCH_DIR otherwise: see ``output_root``), BENCH_ONLY
(``batch``, ``memory``, ``gateway`` or ``keys``, or several comma-separated: run those parts; default all four in
that order; see bench/gateway_bench.py for the gateway's own settings and bench/keys_bench.py for the team-key
benchmark's),
BENCH_STEPS (the batch steps to run, comma-separated: ``preprocess``, ``postprocess``; default both; a run of one
step prints its tables and records nothing, as the batch section holds both steps' figures).

The memory part (bench/memory.py, then bench/local_memory.py) records two sections: ``memory`` (peak RSS of each
data-plane handler at 200k, 2M and 20M rows of preprocess input on every path, and of postprocess, resubmit and
finalize over runs of 200k and 2M rows) and ``local_memory`` (the local runtime's process tree at 200k and 2M rows).
BENCH_MEMORY_SCALE (default 1) multiplies every one of those sizes (0.01: a smoke run of a few minutes); at 20M rows
the inputs need up to ~25 GB of scratch disk, generated one path at a time and deleted after use. BENCH_MEMORY_REPEAT
(default 3) is how many times preprocess is called per path and size on the same input; the highest peak counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.local_memory import local_memory_section
from bench.memory import FULL, LOCAL_ROWS, MEMORY_REPEAT, memory_section, parse_repeat, parse_scale, scaled
from bench.production import PATHS, production_env
from bench.results import RESULTS_JSON, RESULTS_MD, Check, Section, at_least, at_most, record

ROOT = Path(__file__).resolve().parent.parent
# This process only starts others and must stay small: Linux keeps a process's peak RSS across fork and exec, so each
# child's peak RSS starts at this process's. Generating data, even importing pyarrow, happens in child processes.
TARGETS = {"faster_than_anchor": 3.0, "times_floor": 2.0}
STEPS = ("preprocess", "postprocess")  # the batch steps, in the order they run (BENCH_STEPS picks some)
# The preprocess variants' output goes to RAM when there is room (output_root): S3 in the bench is a folder of files,
# and the most the bench holds at once is the anchor's job files (the floor's reference) next to one variant's output
# (job files and records.parquet: about 2 KB a SimpleCoT row in all; 3 KB a row leaves room), plus RAM_MARGIN for the
# processes themselves.
RAM_DIR = Path("/dev/shm")
OUTPUT_BYTES_PER_ROW = 3 << 10
RAM_MARGIN = 4 << 30


def run(module: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """One variant in a fresh process, so its peak RSS is its own; ``env`` adds to this process's environment."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if done.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(module: str, *args: str) -> str:
    """Untimed work (generating data) in a child process; returns its last stdout line."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=False, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return (done.stdout.strip().splitlines() or [""])[-1]


def simplecot_like(path: Path, rows: int) -> Path:
    if not path.exists():
        child("bench.data", "parquet", str(path), str(rows))
    return path


def converted(kind: str, parquet: Path, path: Path) -> Path:
    if not path.exists():
        child("bench.data", kind, str(parquet), str(path))
    return path


def ratios(results: dict[str, dict]) -> tuple[float, float]:
    """(how many times faster ours is than the anchor, ours' time over the floor's)."""
    ours = results["ours"]["seconds"]
    return results["anchor"]["seconds"] / ours, ours / results["floor"]["seconds"]


def table(title: str, results: dict[str, dict]) -> None:
    ours = results["ours"]["seconds"]
    print(f"\n{title}")
    print(f"{'variant':<14} {'seconds':>9} {'CPU seconds':>12} {'peak RSS MB':>12} {'ours/x time':>12}")
    for name, result in results.items():
        print(
            f"{name:<14} {result['seconds']:>9.2f} {result['cpu_seconds']:>12.2f} {result['peak_rss_mb']:>12.0f} "
            f"{ours / result['seconds']:>12.2f}"
        )
    faster, floor = ratios(results)
    print(
        f"=> ours is {faster:.2f}x faster than the anchor (target >= {TARGETS['faster_than_anchor']:g}x) "
        f"{'pass' if faster >= TARGETS['faster_than_anchor'] else 'FAIL'} and takes {floor:.2f}x the floor's time "
        f"(target <= {TARGETS['times_floor']:g}x) {'pass' if floor <= TARGETS['times_floor'] else 'FAIL'}",
        flush=True,
    )


def inputs(scratch: Path, rows: int) -> dict[str, Path]:
    """The same rows on every input path (generated once, kept in BENCH_DIR): the hub serves the Parquet file."""
    source = simplecot_like(scratch / f"simplecot-{rows}.parquet", rows)
    return {
        "parquet": source,
        "csv": converted("csv", source, scratch / f"simplecot-{rows}.csv"),
        "jsonl": converted("jsonl", source, scratch / f"simplecot-{rows}.jsonl"),
        "hf": source,
    }


def meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    """The bytes of RAM the kernel can still give (``MemAvailable``), 0 where that cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0


def output_root(scratch: Path, rows: int, ram: Path = RAM_DIR) -> Path:
    """Where the preprocess variants write their output (S3's objects, the job files): BENCH_OUTPUT_DIR when set; a
    folder of ``ram`` (a RAM-backed file system) when it and the machine's free RAM have room for the most the bench
    holds at once (``OUTPUT_BYTES_PER_ROW`` a row), as S3 takes the bytes into its own memory and network, never into
    this machine's disk; ``scratch`` otherwise. Every variant writes to the same kind of storage either way: the
    local disk's write-back, which grows with what earlier variants left dirty, would be charged to whichever
    variant came later."""
    if chosen := os.environ.get("BENCH_OUTPUT_DIR"):
        return Path(chosen)
    needed = rows * OUTPUT_BYTES_PER_ROW
    if ram.is_dir() and shutil.disk_usage(ram).free >= needed and meminfo_available() >= needed + RAM_MARGIN:
        return ram / f"bench-output-{os.getpid()}"
    return scratch


def preprocess_path(output: Path, path: str, source: Path, rows: int, max_per_job: int) -> dict[str, dict]:
    """ours (the deployed function, production environment), the anchor and the floor on one input path, each
    writing under ``output``; a variant's output is deleted once checked (the anchor's job files, the floor's
    reference, once the floors have run)."""
    module, per_job, work = "bench.preprocess_variants", str(max_per_job), output / "preprocess" / path
    results = {
        "ours": run(
            module,
            "ours",
            path,
            str(source),
            str(work / "ours"),
            per_job,
            env=production_env("preprocess", max_per_job),
        ),
    }
    ours_bytes = sum(f.stat().st_size for f in (work / "ours" / "last").rglob("jobs/*.jsonl"))
    shutil.rmtree(work / "ours")
    results["anchor"] = run(module, "anchor", path, str(source), str(work / "anchor"), per_job)
    # the floor writes the bytes the anchor wrote (the same JSONL, the same total size)
    reference = work / "anchor" / "last"
    anchor_bytes = sum(f.stat().st_size for f in reference.glob("*.jsonl"))
    shards = len(list(reference.glob("*.jsonl")))
    floors = ["floor", "floor+records"] if path != "parquet" else ["floor"]  # records.parquet: not for Parquet
    for name in floors:
        results[name] = run(module, name, path, str(source), str(work / name), per_job, str(reference))
        shutil.rmtree(work / name)
    shutil.rmtree(work)
    counts = {name: result["rows"] for name, result in results.items()}
    if set(counts.values()) != {rows} or ours_bytes != anchor_bytes:
        raise RuntimeError(
            f"{path}: the variants did not do the same work: rows {counts} (expected {rows}), job file bytes "
            f"ours {ours_bytes:,} vs anchor {anchor_bytes:,}"
        )
    table(f"preprocess, {path} input: {rows:,} SimpleCoT-shaped rows -> {shards} job files", results)
    return results


def preprocess_bench(scratch: Path, rows: int, max_per_job: int, paths: list[str]) -> dict[str, dict[str, dict]]:
    sources = inputs(scratch, rows)
    output = output_root(scratch, rows)
    print(f"preprocess output: {output}", flush=True)
    try:
        results = {path: preprocess_path(output, path, sources[path], rows, max_per_job) for path in paths}
        if "parquet" in paths:  # memory must not grow with the row count: ours again on a quarter of the rows
            quarter = simplecot_like(scratch / f"simplecot-{rows // 4}.parquet", rows // 4)
            per_job = max(100, max_per_job // 4)
            target = output / "preprocess" / "ours-quarter"
            results["parquet"]["ours 1/4"] = run(
                "bench.preprocess_variants", "ours", "parquet", str(quarter), str(target), str(per_job),
                env=production_env("preprocess", per_job),
            )  # fmt: skip
            small, full = results["parquet"]["ours 1/4"]["peak_rss_mb"], results["parquet"]["ours"]["peak_rss_mb"]
            print(f"=> peak RSS {full:.0f} MB; with 1/4 of the rows {small:.0f} MB ({full / small:.2f}x for 4x rows)")
    finally:
        shutil.rmtree(output if output != scratch else output / "preprocess", ignore_errors=True)
    return results


def postprocess_bench(scratch: Path, rows: int, paths: list[str]) -> dict[str, dict]:
    """One job of ``rows`` records, per input path: the run's records.parquet is the one that path's preprocess
    wrote (a copy of a Parquet input; written by preprocess otherwise), so each path is prepared by running the
    deployed preprocess on the job's rows through it (untimed)."""
    workdir = scratch / "postprocess"
    child("bench.postprocess_variants", "prepare", str(workdir), str(rows))
    sources = {
        "parquet": workdir / "records.parquet",
        "csv": converted("csv", workdir / "records.parquet", workdir / f"records-{rows}.csv"),
        "jsonl": converted("jsonl", workdir / "records.parquet", workdir / f"records-{rows}.jsonl"),
        "hf": workdir / "records.parquet",
    }
    results: dict[str, dict] = {}
    for path in paths:
        job = workdir / path
        shutil.rmtree(job, ignore_errors=True)
        staging = scratch / "postprocess-staging" / path
        env = {**production_env("preprocess", rows), "BENCH_REPEAT": "1"}
        run("bench.preprocess_variants", "ours", path, str(sources[path]), str(staging), str(rows), env=env)
        (staging / "last").rename(job)
        context = json.loads((job / "run-context.json").read_text())
        (job / "records.parquet").symlink_to(job / "s3" / context["bucket"] / context["records_key"])
        (job / "output.jsonl.out").symlink_to(workdir / "output.jsonl.out")
        env = production_env("postprocess", rows)
        results[path] = {
            name: run("bench.postprocess_variants", name, str(job), env=env if name == "ours" else None)
            for name in ("ours", "anchor", "floor")
        }
        same = json.loads(child("bench.postprocess_variants", "same", str(job)))
        if not same["equal"]:
            raise RuntimeError(f"postprocess {path}: ours and the floor wrote different tables: {same}")
        results[path]["records"] = json.loads(
            child("bench.postprocess_variants", "describe", str(job / "records.parquet"))
        )
        shape = results[path]["records"]
        table(
            f"postprocess, {path} input: one job of {rows:,} records (shuffled output) -> joined Parquet; "
            f"records.parquet {shape['bytes']:,} bytes, {shape['row_groups']} row groups, {shape['compression']}",
            {name: results[path][name] for name in ("ours", "anchor", "floor")},
        )
    return results


def batch_section(pre: dict[str, dict], post: dict[str, dict], rows: int, job_records: int) -> Section:
    """The batch benchmarks' part of results.json: every variant's figures and the ratios, per input path."""
    table_rows, checks = [], []
    for step, results in (("preprocess", pre), ("postprocess", post)):
        for path, variants in results.items():
            faster, floor = ratios(variants)
            cells = [
                f"{variants[n]['seconds']:.2f} s (CPU {variants[n]['cpu_seconds']:.2f} s), "
                f"{variants[n]['peak_rss_mb']:.0f} MB"
                for n in ("ours", "anchor", "floor")
            ]
            with_records = variants.get("floor+records")
            extra = f"{variants['ours']['seconds'] / with_records['seconds']:.2f}x" if with_records else "-"
            table_rows.append([step, path, *cells, f"{faster:.2f}x", f"{floor:.2f}x", extra])
            checks.append(at_least(f"{step} {path}: faster than the anchor", faster, TARGETS["faster_than_anchor"]))
            checks.append(at_most(f"{step} {path}: time over the floor's", floor, TARGETS["times_floor"]))
    notes = [
        f"preprocess: {rows:,} SimpleCoT-shaped rows (source ~110 words, rationale ~70, target ~4) on each input path; "
        f"postprocess: one job of {job_records:,} records whose records.parquet comes from that path's preprocess.",
        "ours: the deployed handler (Powertools logging, metrics and tracer decorators, production environment) with "
        "S3 on the local disk; anchor: pandas reads everything, per-row dict, str.format, json.dumps (postprocess: "
        "pandas read + inner merge); floor: read the input once and write the output once (the job files; "
        "postprocess: read the records and the answers' fields, join, write the joined Parquet as ours does); "
        "floor+records (not a target): the floor plus writing the rows to a Parquet "
        "file, as preprocess writes records.parquet for inputs that are not Parquet objects.",
        "Each variant runs in its own process, best of BENCH_REPEAT runs (wall time; CPU: the process's CPU time, "
        "every thread, the least of the runs: steadier than wall time on a busy machine); peak RSS is the process's "
        "own high-water mark (VmHWM). The hf path's fake hub runs in a process of its own: neither the served file "
        "nor the hub's work counts for any variant.",
    ]
    if "ours 1/4" in pre.get("parquet", {}):
        small, full = pre["parquet"]["ours 1/4"]["peak_rss_mb"], pre["parquet"]["ours"]["peak_rss_mb"]
        notes.append(f"preprocess parquet peak RSS {full:.0f} MB; with 1/4 of the rows {small:.0f} MB.")
    return Section(
        title="Batch: preprocess and postprocess against the anchor and the floor",
        columns=["step", "input path", "ours", "anchor", "floor", "anchor/ours", "ours/floor", "ours/(floor+records)"],
        rows=table_rows,
        checks=checks,
        notes=notes,
        figures={"rows": rows, "job_records": job_records, "preprocess": pre, "postprocess": post},
    )


def gateway_section(results: dict) -> Section:
    """The gateway benchmark's figures (bench/gateway_bench.py's results) as its section of results.json. A case or
    a check the run left out (BENCH_GATEWAY_CASES) is "not measured"."""
    from bench.gateway_bench import AT_500, added_ok

    targets = results["checks"]["targets"]
    nan = float("nan")
    table_rows = []
    for level, pair in results["latency"].items():
        for name in ("direct", "gateway"):
            r = pair[name]
            cpu = (
                [f"{r['gateway_cpu_ms_per_answer']:.2f} ms", f"{r['gateway_cpu_us_per_frame']:.1f} us"]
                if name == "gateway" and "gateway_cpu_us_per_frame" in r
                else ["", ""]
            )
            table_rows.append(
                [
                    f"{name} @{level}",
                    *(
                        f"{r.get(k, nan):.2f} ms"
                        for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")
                    ),
                    str(r["errors"]),
                    f"{r['frames_per_answer']:.0f}" if "frames_per_answer" in r else "",
                    *cpu,
                ]
            )
        table_rows.append(
            [
                f"added @{level}",
                *(
                    f"{pair[f'added_{k}']:.2f} ms"
                    for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")
                ),
                "",
                "",
                "",
                "",
            ]
        )
    zip_mb = results["zip"].get("zip_mb")
    ramp = results.get("max_streams")

    def added(name: str, value: float | None, target: float) -> Check:
        """An added TTFT against its target; not judged when the direct baseline was slower by more than the target
        (``added_ok``: the machine, not the gateway, set the times)."""
        if value is None:
            return Check(name, "-", f"<= {target:g} ms", None)
        return Check(name, f"{value:.2f} ms", f"<= {target:g} ms", added_ok(value, target))

    checks = [
        added("added TTFT p50 @100 open streams", results["checks"]["added_ttft_p50_ms"], targets["added_ttft_p50_ms"]),
        added("added TTFT p99 @100 open streams", results["checks"]["added_ttft_p99_ms"], targets["added_ttft_p99_ms"]),
        added(
            f"added TTFT p50 @{AT_500}: 500 open streams of 20 s answers in one process",
            results["checks"].get("added_ttft_p50_ms_at_500"),
            targets["added_ttft_p50_ms_at_500"],
        ),
        at_least(
            "concurrent streams without errors",
            None if ramp is None else ramp["max_streams_without_errors"],
            targets["streams"],
            "",
            0,
        ),
        at_most("app import (cold)", results["import_s"], targets["import_s"], " s"),
        at_most("Lambda zip (deflated)", zip_mb, targets["zip_mb"], " MB", 1),
    ]
    notes = [
        f"topology {results['topology']}, text frames {results['pace_s']} s apart in the paced cases (@100, "
        f"@500 x 20 s: 1,000-frame answers, the target's workload; @500 x 2 s (stress): 90-frame answers, ten "
        "times the answers a second, not held to the target); gateway CPU: user + system time of the gateway's "
        "process over a case's run, per answer and per text frame it streamed; see bench/gateway_bench.py"
    ]
    if "tls" in results:
        notes.append(
            "emulator over HTTPS, as Bedrock" if results["tls"] else "emulator over plain HTTP (BENCH_GATEWAY_TLS=0)"
        )
    shared = "all three share them"
    if "placement" in results:
        notes.append(f"cores: {results['placement']['note']}")
        shared = "placed as above" if results["placement"]["gateway"] is not None else shared
    for level, pair in results["latency"].items():
        busy = pair["gateway"].get("cores_busy")
        if level.startswith("500") and busy:
            emulator = "-" if busy["emulator"] is None else f"{busy['emulator']:.2f}"
            notes.append(
                f"@{level}, gateway run: cores kept busy by the gateway {busy['gateway']:.2f}, the emulator "
                f"{emulator}, the load generator {busy['load_generator']:.2f}, of {busy['machine']} ({shared})"
                + (
                    f"; the gateway's core busy {core['busy']:.2f}, {core['others']:.2f} of it other processes"
                    if (core := pair["gateway"].get("gateway_core"))
                    else ""
                )
            )
    return Section(
        title="Gateway: streaming through the gateway vs ConverseStream straight to the emulator",
        columns=[
            "case",
            "TTFT p50",
            "TTFT p99",
            "total p50",
            "total p99",
            "errors",
            "frames/answer",
            "gateway CPU/answer",
            "gateway CPU/frame",
        ],
        rows=table_rows,
        checks=checks,
        notes=notes,
        figures=results,
    )


def gateway() -> int:
    """The gateway benchmark in its own process (it starts the gateway in another one); it prints its table and
    writes bench/results/gateway-*.json, recorded here as the gateway section."""
    started = time.time()
    code = subprocess.run([sys.executable, "-m", "bench.gateway_bench"], cwd=ROOT, check=False).returncode
    written = [f for f in (ROOT / "bench" / "results").glob("gateway-*.json") if f.stat().st_mtime >= started]
    if code == 0 and written:
        record("gateway", gateway_section(json.loads(max(written, key=lambda f: f.stat().st_mtime).read_text())))
    return code


def keys_section(results: dict) -> Section:
    """The team-key benchmark's figures (bench/keys_bench.py's results) as its section of results.json."""
    rows, checks = [], []
    for name, figures in results["passes"].items():
        for kind in ("no team key", "team key"):
            r = figures[kind]
            rows.append(
                [
                    name,
                    kind,
                    *(f"{r[k]:.2f} ms" for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")),
                    f"{r['dynamodb_calls_per_request']:.2f}",
                ]
            )
        rows.append(
            [
                name,
                "added",
                *(
                    f"{figures[f'added_{k}']:.2f} ms"
                    for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")
                ),
                f"TTFT p50 ratio {figures['ttft_p50_ratio']:.3f}x",
            ]
        )
        where = (
            "DynamoDB on moto over HTTP"
            if not figures["dynamodb_delay_ms"]
            else f"each DynamoDB call held {figures['dynamodb_delay_ms']:g} ms (AWS model)"
        )
        checks.append(
            at_most(
                f"team key: added TTFT p50, {where}",
                figures["added_ttft_p50_ms"],
                results["checks"]["target_ms"],
                " ms",
            )
        )
    return Section(
        title="Team keys: the key check's added latency, against the same request without a team key",
        columns=["pass", "key", "TTFT p50", "TTFT p99", "total p50", "total p99", "DynamoDB calls/request"],
        rows=rows,
        checks=checks,
        notes=[
            f"{results['requests']} streamed requests per key kind and pass, one at a time, interleaved; the team key "
            f"has every limit ({results['team_key_limits']}); the gateway runs with the deployed function's logging "
            "and metrics. Total includes the team key's spend, written before the last byte (one UpdateItem). "
            "See bench/keys_bench.py."
        ],
        figures=results,
    )


def keys() -> int:
    """The team-key benchmark in its own process; recorded as the keys section."""
    started = time.time()
    code = subprocess.run([sys.executable, "-m", "bench.keys_bench"], cwd=ROOT, check=False).returncode
    written = [f for f in (ROOT / "bench" / "results").glob("keys-*.json") if f.stat().st_mtime >= started]
    if code == 0 and written:
        record("keys", keys_section(json.loads(max(written, key=lambda f: f.stat().st_mtime).read_text())))
    return code


PARTS = ("batch", "memory", "gateway", "keys")


def main() -> int:
    only = [part.strip() for part in os.environ.get("BENCH_ONLY", ",".join(PARTS)).split(",") if part.strip()]
    if not only or not set(only) <= set(PARTS):
        print(f"BENCH_ONLY takes a comma-separated subset of {list(PARTS)}, not {only}", file=sys.stderr)
        return 2
    parts = {"batch": batch, "memory": memory, "gateway": gateway, "keys": keys}
    codes = [parts[part]() for part in PARTS if part in only]  # a part that misses a target never skips the next
    return max(codes, default=0)


def memory() -> int:
    """bench/memory.py and bench/local_memory.py in child processes (they start the measured ones), each recorded
    as its own section whether its targets pass or not; non-zero when a run failed or a target was missed."""
    try:
        scale = parse_scale(os.environ.get("BENCH_MEMORY_SCALE", "1"))
        sizes = scaled(FULL, scale)
        repeat = parse_repeat(os.environ.get("BENCH_MEMORY_REPEAT", str(MEMORY_REPEAT)))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    scratch = Path(os.environ.get("BENCH_DIR") or ROOT / "bench" / ".data")
    scratch.mkdir(parents=True, exist_ok=True)
    figures, codes = scratch / "memory.json", []
    for kind, command, section in (
        (
            "memory",
            [
                "bench.memory",
                f"--dir={scratch / 'memory'}",
                "--sizes=" + ",".join(map(str, sizes.preprocess)),
                "--run-sizes=" + ",".join(map(str, sizes.runs)),
                f"--per-job={sizes.per_job}",
                f"--repeat={repeat}",
                f"--json={figures}",
            ],
            lambda found, seconds: memory_section(found, seconds, sizes.per_job),
        ),
        (
            "local_memory",
            [
                "bench.local_memory",
                "--rows=" + ",".join(str(round(rows * scale)) for rows in LOCAL_ROWS),
                f"--data-dir={scratch}",
                f"--json={figures}",
            ],
            local_memory_section,
        ),
    ):
        figures.unlink(missing_ok=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, check=False).returncode
        seconds = time.monotonic() - started
        print(f"{kind}: {seconds / 60:.1f} min", flush=True)
        if figures.exists():  # a failed run still records what it measured
            record(kind, section(json.loads(figures.read_text()), seconds))
        codes.append(code)
    return max(codes)


def batch() -> int:
    rows = int(os.environ.get("BENCH_ROWS", "2240000"))
    max_per_job = int(os.environ.get("BENCH_MAX_PER_JOB", str(max(100, rows // 45 + 1))))
    job_records = int(os.environ.get("BENCH_JOB_RECORDS", "50000"))
    paths = os.environ.get("BENCH_PATHS", ",".join(PATHS)).split(",")
    if not set(paths) <= set(PATHS):
        print(f"BENCH_PATHS takes a comma-separated subset of {list(PATHS)}, not {paths}", file=sys.stderr)
        return 2
    steps = os.environ.get("BENCH_STEPS", ",".join(STEPS)).split(",")
    if not steps or not set(steps) <= set(STEPS):
        print(f"BENCH_STEPS takes a comma-separated subset of {list(STEPS)}, not {steps}", file=sys.stderr)
        return 2
    scratch = Path(os.environ.get("BENCH_DIR") or ROOT / "bench" / ".data")
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"scratch: {scratch}", flush=True)
    pre = preprocess_bench(scratch, rows, max_per_job, paths) if "preprocess" in steps else {}
    post = postprocess_bench(scratch, job_records, paths) if "postprocess" in steps else {}
    if set(steps) != set(STEPS):
        print(f"\nBENCH_STEPS={','.join(steps)}: a partial run, not recorded")
        return 0
    record("batch", batch_section(pre, post, rows, job_records))
    print(f"\nrecorded in {RESULTS_JSON.relative_to(ROOT)} and {RESULTS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
