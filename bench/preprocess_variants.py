"""The preprocess variants the benchmark compares; each runs in its own process so peak RSS is its own.

``python -m bench.preprocess_variants VARIANT INPUT OUTDIR MAX_PER_JOB`` prints a JSON line with seconds and rows.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd  # imported before timing starts, like every variant's imports
import pyarrow as pa
import pyarrow.parquet as pq

from bench.timing import report
from lambdas.preprocess import logic
from lambdas.preprocess.sources import parquet_batches
from lambdas.shared.model_families import InferenceSettings, resolve
from lambdas.shared.s3io import FileRange
from prompt_templates import get_template, prompt_id_to_template

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT = "question_answering"


@dataclass
class LocalParquet:
    path: Path
    description: str = "bench input"
    records_object: tuple[str, str] | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from parquet_batches(pq.ParquetFile(self.path, pre_buffer=False))


def ours(source: Path, out: Path, max_per_job: int) -> int:
    """The project's preprocess as the Lambda runs it on a Parquet input: one streaming pass writing the JSONL lines,
    the input copied as the run's records (S3 does that server-side; here a local file copy), and each job's byte
    range read back as boto3's uploader reads it (the network transfer itself is not part of any variant)."""
    plan = logic.Plan(model=resolve(MODEL), template=get_template(PROMPT), max_per_job=max_per_job)
    staged = logic.stage(LocalParquet(source), plan, InferenceSettings(), out, write_records=False)
    jobs = logic.plan_jobs(staged, logic.fit_job_sizes(staged, max_per_job), "bench")
    shutil.copyfile(source, out / "records.parquet")
    with staged.lines_path.open("rb") as lines:
        for job in jobs:
            start, end = staged.byte_range(job.first_row, job.record_count)
            part = FileRange(lines, start, end)
            while part.read(8 << 20):
                pass
    return staged.rows


def anchor(source: Path, out: Path, max_per_job: int) -> int:
    """The approach of the public samples: pandas reads everything, per-row dict, str.format, json.dumps."""
    frame = pd.read_parquet(source)
    template = prompt_id_to_template[PROMPT]
    adapter = resolve(MODEL).adapter
    settings = InferenceSettings()
    rows = frame.to_dict("records")
    count = math.ceil(len(rows) / max_per_job)
    size = math.ceil(len(rows) / count)
    for index in range(count):
        lines = []
        for offset, row in enumerate(rows[index * size : (index + 1) * size]):
            record = {
                "recordId": f"{index * size + offset:011d}",
                "modelInput": adapter.build_model_input(template.format(**row), settings),
            }
            lines.append(json.dumps(record))
        (out / f"{index:04d}.jsonl").write_text("\n".join(lines) + "\n")
    return len(rows)


def floor(source: Path, out: Path, max_per_job: int, reference: Path) -> int:
    """What cannot be avoided: read the Parquet input with pyarrow and write the same JSONL bytes (a file copy)."""
    rows = sum(batch.num_rows for batch in pq.ParquetFile(source).iter_batches(batch_size=65_536))
    for shard in sorted(reference.glob("*.jsonl")):
        shutil.copyfile(shard, out / shard.name)
    return rows


def main() -> None:
    variant, source, out, max_per_job = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    if variant == "floor":
        reference = Path(sys.argv[5])
        report(variant, lambda target: floor(source, target, max_per_job, reference), out)
    else:
        chosen = {"ours": ours, "anchor": anchor}[variant]
        report(variant, lambda target: chosen(source, target, max_per_job), out)


if __name__ == "__main__":
    main()
