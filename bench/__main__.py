"""``make bench``: benchmarks with baselines measured in the same run; prints ratios, writes bench/results/*.json.

Environment: BENCH_ROWS (default 200,000), BENCH_MAX_PER_JOB (default 50,000 scaled so the job count matches the
reference case's shape), BENCH_DIR (scratch space, default a temp dir).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.data import simplecot_like

ROOT = Path(__file__).resolve().parent.parent


def run(module: str, *args: str) -> dict:
    """One variant in a fresh process, so its peak RSS is its own."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=True, capture_output=True, text=True)
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


def preprocess_bench(scratch: Path, rows: int, max_per_job: int) -> dict[str, dict]:
    source = simplecot_like(scratch / f"simplecot-{rows}.parquet", rows)
    module, args = "bench.preprocess_variants", (str(source), str(max_per_job))
    results = {
        "ours": run(module, "ours", args[0], str(scratch / "ours"), args[1]),
        "anchor": run(module, "anchor", args[0], str(scratch / "anchor"), args[1]),
    }
    # the floor writes the bytes the anchor wrote (the same JSONL, the same total size)
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


def main() -> int:
    rows = int(os.environ.get("BENCH_ROWS", "200000"))
    max_per_job = int(os.environ.get("BENCH_MAX_PER_JOB", str(max(100, rows // 45 + 1))))
    scratch = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="bench-"))
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
