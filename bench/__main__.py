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


def run_variant(variant: str, source: Path, out: Path, max_per_job: int, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "bench.preprocess_variants", variant, str(source), str(out), str(max_per_job), *extra]
    done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    rows = int(os.environ.get("BENCH_ROWS", "200000"))
    max_per_job = int(os.environ.get("BENCH_MAX_PER_JOB", str(max(100, rows // 45 + 1))))
    scratch = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"generating {rows:,} SimpleCoT-shaped rows in {scratch} ...", flush=True)
    source = simplecot_like(scratch / f"simplecot-{rows}.parquet", rows)

    results = {}
    results["ours"] = run_variant("ours", source, scratch / "ours", max_per_job)
    results["anchor"] = run_variant("anchor", source, scratch / "anchor", max_per_job)
    # the floor writes the bytes the anchor wrote (the same JSONL, the same total size)
    results["floor"] = run_variant("floor", source, scratch / "floor", max_per_job, str(scratch / "anchor"))

    ours = results["ours"]["seconds"]
    print(f"\npreprocess: {rows:,} rows -> {len(list((scratch / 'anchor').glob('*.jsonl')))} shards")
    print(f"{'variant':<8} {'seconds':>9} {'peak RSS MB':>12} {'ours/x':>8}")
    for name, result in results.items():
        print(f"{name:<8} {result['seconds']:>9.2f} {result['peak_rss_mb']:>12.0f} {ours / result['seconds']:>8.2f}")
    print(
        f"\nours is {results['anchor']['seconds'] / ours:.2f}x faster than the anchor (target >= 3x) and takes "
        f"{ours / results['floor']['seconds']:.2f}x the floor's time (target <= 2x)"
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"preprocess-{stamp}.json").write_text(json.dumps({"rows": rows, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
