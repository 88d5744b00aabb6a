"""Generate a SimpleCoT-shaped Parquet dataset (source, rationale, target) with realistic text lengths."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_VOCABULARY = (
    "the of and to in is was for that with as on by be at from this which or an are it not have has had "
    "were but question answer number value total reason because therefore step first then next finally "
    "compute result each people city river year country water energy price market model data system group "
    "example between during"
)
_WORDS = tuple(_VOCABULARY.split())


def _text(rng: random.Random, mean_words: int) -> str:
    n = max(3, int(rng.gauss(mean_words, mean_words / 3)))
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def simplecot_like(path: Path, rows: int, *, seed: int = 7, chunk: int = 50_000) -> Path:
    """Write ``rows`` rows in row groups of ``chunk``; source ~110 words, rationale ~70, target ~4 (SimpleCoT-like)."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    rng = random.Random(seed)
    schema = pa.schema([("source", pa.string()), ("rationale", pa.string()), ("target", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            writer.write_table(
                pa.table(
                    {
                        "source": [_text(rng, 110) for _ in range(n)],
                        "rationale": [_text(rng, 70) for _ in range(n)],
                        "target": [_text(rng, 4) for _ in range(n)],
                    },
                    schema=schema,
                )
            )
    return path


def as_csv(parquet: Path, path: Path) -> Path:
    """The same rows as a CSV file with a header (what a user uploads as ``.csv``); kept between runs."""
    import pyarrow.csv as pacsv

    if not path.exists():
        partial = path.with_suffix(".partial")
        source = pq.ParquetFile(parquet)
        with pacsv.CSVWriter(partial, source.schema_arrow) as writer:
            for batch in source.iter_batches(batch_size=50_000):
                writer.write_batch(batch)
        partial.rename(path)
    return path


def as_jsonl(parquet: Path, path: Path) -> Path:
    """The same rows as JSON Lines, one object per row (what a user uploads as ``.jsonl``); kept between runs."""
    import json

    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as out:
            for batch in pq.ParquetFile(parquet).iter_batches(batch_size=50_000):
                out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in batch.to_pylist())
        partial.rename(path)
    return path


def main() -> None:
    """``python -m bench.data parquet PATH ROWS [SEED]`` | ``csv PARQUET PATH`` | ``jsonl PARQUET PATH``: write a
    dataset in a process of its own, so the benchmark's parent process stays small (a child process starts with its
    parent's peak RSS as its own: Linux keeps the high-water mark across fork and exec)."""
    kind, *args = sys.argv[1:]
    if kind == "parquet":
        simplecot_like(Path(args[0]), int(args[1]), **({"seed": int(args[2])} if len(args) > 2 else {}))
    else:
        {"csv": as_csv, "jsonl": as_jsonl}[kind](Path(args[0]), Path(args[1]))


if __name__ == "__main__":
    main()
