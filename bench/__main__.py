"""``make bench``: benchmarks with baselines measured in the same run; prints ratios, writes bench/results/*.json.

The reference case: SimpleCoT's 2.24 million rows into 45 jobs, and one job of 50,000 records back into Parquet.
Environment: BENCH_ROWS (default 2,240,000), BENCH_MAX_PER_JOB (default: rows / 45, the reference job count),
BENCH_JOB_RECORDS (default 50,000), BENCH_REPEAT (runs per variant, best kept; default 2), BENCH_DIR (scratch space
and the generated datasets, reused between runs; default bench/.data), BENCH_ONLY (``batch`` or ``gateway``: run one
part; default both, the gateway's after the batch's; see bench/gateway_bench.py for its own settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.data import simplecot_like

ROOT = Path(__file__).resolve().parent.parent


# The data-plane Lambda image sets the same (lambdas/Dockerfile): with Arrow's default mimalloc pool, peak RSS crept
# up with the row count although Arrow's allocations stayed flat; the system allocator keeps it flat.
OUR_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system"}


def run(module: str, *args: str) -> dict:
    """One variant in a fresh process, so its peak RSS is its own."""
    env = {**os.environ, **OUR_ENV} if args[0] == "ours" else None
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, check=True, capture_output=True, text=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(title: str, results: dict[str, dict]) -> None:
    ours = results["ours"]["seconds"]
    print(f"\n{title}")
    print(f"{'variant':<8} {'seconds':>9} {'peak RSS MB':>12} {'ours/x time':>12}")
    for name, result in results.items():
        print(f"{name:<8} {result['seconds']:>9.2f} {result['peak_rss_mb']:>12.0f} {ours / result['seconds']:>12.2f}")
    print(
        f"=> ours is {results['anchor']['seconds'] / ours:.2f}x faster than the anchor (target >= 3x) and takes "
        f"{ours / results['floor']['seconds']:.2f}x the floor's time (target <= 2x)"
    )
    if "ours 1/4" in results:
        small, full = results["ours 1/4"]["peak_rss_mb"], results["ours"]["peak_rss_mb"]
        print(
            f"=> peak RSS {full:.0f} MB (target < 1500 MB); with 1/4 of the rows {small:.0f} MB "
            f"(4x the rows -> {full / small:.2f}x the memory; proportional growth would be 4x)"
        )


def preprocess_bench(scratch: Path, rows: int, max_per_job: int) -> dict[str, dict]:
    source = simplecot_like(scratch / f"simplecot-{rows}.parquet", rows)
    module, args = "bench.preprocess_variants", (str(source), str(max_per_job))
    results = {
        "ours": run(module, "ours", args[0], str(scratch / "ours"), args[1]),
        "anchor": run(module, "anchor", args[0], str(scratch / "anchor"), args[1]),
    }
    # the floor writes the bytes the anchor wrote (the same JSONL, the same total size)
    # memory must not grow with the row count: ours again on a quarter of the rows (its own file)
    quarter = simplecot_like(scratch / f"simplecot-{rows // 4}.parquet", rows // 4)
    results["ours 1/4"] = run(
        module, "ours", str(quarter), str(scratch / "ours-quarter"), str(max(100, max_per_job // 4))
    )
    reference = scratch / "anchor" / "last"
    results["floor"] = run(module, "floor", args[0], str(scratch / "floor"), args[1], str(reference))
    shards = len(list(reference.glob("*.jsonl")))
    table(f"preprocess: {rows:,} SimpleCoT-shaped rows -> {shards} job files", results)
    return results


def postprocess_bench(scratch: Path, rows: int) -> dict[str, dict]:
    from bench.postprocess_variants import prepare

    workdir = scratch / "postprocess"
    prepare(workdir, rows)
    results = {name: run("bench.postprocess_variants", name, str(workdir)) for name in ("ours", "anchor", "floor")}
    table(f"postprocess: one job of {rows:,} records (shuffled output) -> joined Parquet", results)
    return results


def gateway() -> int:
    """The gateway benchmark in its own process (it starts the gateway in another one); it prints its table."""
    return subprocess.run([sys.executable, "-m", "bench.gateway_bench"], cwd=ROOT, check=False).returncode


def main() -> int:
    only = os.environ.get("BENCH_ONLY", "")
    if only not in ("", "batch", "gateway"):
        print(f"BENCH_ONLY must be batch or gateway, not {only!r}", file=sys.stderr)
        return 2
    code = 0 if only == "gateway" else batch()
    return code or (0 if only == "batch" else gateway())


def batch() -> int:
    rows = int(os.environ.get("BENCH_ROWS", "2240000"))
    max_per_job = int(os.environ.get("BENCH_MAX_PER_JOB", str(max(100, rows // 45 + 1))))
    scratch = Path(os.environ.get("BENCH_DIR") or ROOT / "bench" / ".data")
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"scratch: {scratch}", flush=True)
    results = {
        "preprocess": preprocess_bench(scratch, rows, max_per_job),
        "postprocess": postprocess_bench(scratch, int(os.environ.get("BENCH_JOB_RECORDS", "50000"))),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps({"rows": rows, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
