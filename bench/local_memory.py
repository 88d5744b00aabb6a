"""Peak memory of a local batch run (``python -m cli batch``, the local runtime) at several input sizes.

``python -m bench.local_memory --rows 200000,2000000`` writes a Parquet input per size (id, a short topic, 200-800
characters of other text; reused between runs), runs the CLI on it in a fresh process per size, samples the resident
memory of that process and all its descendants (the CDK synth's node process included) from /proc every
``--interval`` seconds, checks that every input row came back in the output Parquet files, and prints the peak RSS
per size and each size's ratio to the first. Memory, not time: the machine may be shared. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import Check, Section, at_most

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_TOPICS = ("rivers", "markets", "energy", "cities", "weather", "music", "trains", "bread", "chess", "birds")
_VOCABULARY = (
    "the of and to in is was for that with as on by be at from this which or an are it not have has had were but "
    "question answer number value total reason because therefore step first then next finally"
)
_WORDS = tuple(_VOCABULARY.split())
MAX_RATIO, MAX_PEAK_MIB = 1.3, 1500.0  # issue 11: the whole process tree under 1.5 GB, <= 1.3x from 200k to 2M rows


def write_input(path: Path, rows: int, *, seed: int = 11, chunk: int = 50_000) -> Path:
    """``rows`` rows of (id, topic, text): text of 200-800 characters, a slice of a random word stream at a random
    offset (fast, and every row's text its own). Kept when it already has ``rows`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    rng = random.Random(seed)
    stream = " ".join(rng.choices(_WORDS, k=2_000_000))  # ~11 MB of text to cut the rows from
    schema = pa.schema([("id", pa.int64()), ("topic", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            texts = []
            for _ in range(n):
                length = rng.randint(200, 800)
                offset = rng.randrange(len(stream) - length)
                texts.append(stream[offset : offset + length])
            table = pa.table(
                {
                    "id": pa.array(range(start, start + n), pa.int64()),
                    "topic": [rng.choice(_TOPICS) for _ in range(n)],
                    "text": texts,
                }
            )
            writer.write_table(table, row_group_size=chunk)
    return path


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every process descended from it (0 when it has gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
        children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):  # it has just exited
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE_SIZE
        todo.extend(children.get(current, []))
    return total


def measure(input_path: Path, output_dir: Path, interval: float, extra: list[str]) -> int:
    """Run the CLI on ``input_path``; the peak RSS of its process tree. Raises if the run fails."""
    command = [
        sys.executable,
        "-m",
        "cli",
        "batch",
        "--input",
        str(input_path),
        "--model-id",
        MODEL_ID,
        "--prompt-id",
        "joke_about_topic",
        "--step-seconds",
        "0.05",
        "--output",
        str(output_dir),
        "--quiet",
        *extra,
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(interval)
    if process.returncode != 0:
        raise SystemExit(f"the run over {input_path.name} failed (exit {process.returncode})")
    return peak


def rows_back(output_dir: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in output_dir.glob("*.parquet"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.local_memory", description=__doc__)
    parser.add_argument("--rows", default="200000,2000000", help="comma-separated input sizes (default 200000,2000000)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples (default 0.05)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / ".data", help="where the inputs are kept")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (make bench reads it)")
    parser.add_argument("cli_args", nargs="*", help="more `cli batch` arguments, after --")
    args = parser.parse_args(argv)
    sizes = [int(value) for value in args.rows.split(",") if value.strip()]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    peaks: list[tuple[int, int]] = []
    measured: list[dict[str, Any]] = []
    for rows in sizes:
        input_path = write_input(args.data_dir / f"local-memory-{rows}.parquet", rows)
        with tempfile.TemporaryDirectory(prefix="local-memory-") as scratch:
            output_dir = Path(scratch) / "out"
            peak = measure(input_path, output_dir, args.interval, args.cli_args)
            back = rows_back(output_dir)
        measured.append({"rows": rows, "peak_rss_mib": peak / 2**20, "rows_back": back})
        if args.json:
            args.json.write_text(json.dumps(measured, indent=1) + "\n")
        if back != rows:
            raise SystemExit(f"{rows} rows in, {back} rows back")
        peaks.append((rows, peak))
        ratio = peak / peaks[0][1]
        mib = peak / 2**20
        print(f"{rows:>10,} rows: peak RSS {mib:,.0f} MiB (x{ratio:.2f} of {peaks[0][0]:,} rows), all rows back")
    return 0


def local_memory_section(measured: list[dict[str, Any]], seconds: float) -> Section:
    """The local runtime's part of results.json: peak RSS of the whole process tree per size, its ratio to the
    smallest size, and whether every row came back; checks at the largest size (<= MAX_RATIO, < MAX_PEAK_MIB) and
    that every run returned every row."""
    from bench.memory import rows_label

    ordered = sorted(measured, key=lambda m: int(m["rows"]))
    base = ordered[0]["peak_rss_mib"] if ordered else None
    table = [
        [
            rows_label(int(m["rows"])),
            f"{m['peak_rss_mib']:,.0f} MiB",
            f"{m['peak_rss_mib'] / base:.2f}x" if base else "-",
            f"{m['rows_back']:,} of {int(m['rows']):,}",
        ]
        for m in ordered
    ]
    largest = ordered[-1] if len(ordered) > 1 else None  # one size: no ratio, "not measured"
    ratio = largest["peak_rss_mib"] / ordered[0]["peak_rss_mib"] if largest else None
    ratio_name = (
        f"peak at {rows_label(int(largest['rows']))} / at {rows_label(int(ordered[0]['rows']))}"
        if largest
        else "peak ratio"
    )
    top = max((m["peak_rss_mib"] for m in ordered), default=None)
    lost = "; ".join(f"{m['rows_back']:,} of {int(m['rows']):,}" for m in ordered if m["rows_back"] != m["rows"])
    checks = [
        at_most(ratio_name, ratio, MAX_RATIO),
        Check(
            "highest peak RSS (process tree)",
            "-" if top is None else f"{top:,.0f} MiB",
            f"< {MAX_PEAK_MIB:,.0f} MiB",
            None if top is None else top < MAX_PEAK_MIB,
        ),
        Check("every input row back", lost or ("all" if ordered else "-"), "all", not lost if ordered else None),
    ]
    return Section(
        title="Memory: the local runtime (python -m cli batch) as the input grows",
        columns=["rows", "peak RSS (process tree)", "ratio", "rows back"],
        rows=table,
        checks=checks,
        notes=[
            "The CLI's process and every process it starts (the CDK synth's node process included), sampled from "
            "/proc; rows: id, a short topic and 200-800 characters of text (bench/local_memory.py).",
            f"The local-runtime memory benchmark took {seconds / 60:.0f} min.",
        ],
        figures={"measurements": ordered, "seconds": round(seconds, 1)},
    )


if __name__ == "__main__":
    raise SystemExit(main())
