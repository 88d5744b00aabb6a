"""The postprocess variants the benchmark compares, each in its own process (peak RSS is its own).

Input: one job of N records: ``records.parquet`` (the job's input rows) and ``output.jsonl.out`` (Bedrock's answers
in the Anthropic shape, shuffled, as the service may return them). ``prepare`` writes the rows and the answers; the
benchmark then runs the deployed preprocess on those rows through each input path, so each path's WORKDIR holds the
run its preprocess left in (local) S3 (``s3/``, ``run-context.json``) and ``records.parquet`` is that run's records
(a copy of a Parquet input; written by preprocess for the other paths).
``python -m bench.postprocess_variants VARIANT WORKDIR`` prints a JSON line with seconds and rows.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd  # imported before timing starts, like every variant's imports
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from bench.data import simplecot_like
from bench.production import LambdaContext, LocalS3, use_local_aws
from bench.timing import report
from lambdas.postprocess import handler
from lambdas.shared import layout

JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/bench0000001"


def prepare(workdir: Path, rows: int) -> None:
    """Write the job's records and a shuffled Anthropic-shaped output file (untimed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    records = simplecot_like(workdir / "records.parquet", rows, seed=11)
    sources = pq.read_table(records, columns=["source"]).column("source").to_pylist()
    order = list(range(rows))
    random.Random(5).shuffle(order)
    with (workdir / "output.jsonl.out").open("w") as out:
        for i in order:
            line = {
                "recordId": f"{i:011d}",
                "modelInput": {
                    "anthropic_version": "bedrock-2023-05-31",
                    "max_tokens": 1024,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": sources[i]}]}],
                },
                "modelOutput": {
                    "id": "msg",
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": "Answer: " + sources[i][:400]}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": 100, "output_tokens": 80},
                },
            }
            out.write(json.dumps(line) + "\n")


def job_event(workdir: Path) -> dict:
    """Postprocess's event for job 0 of the run in ``workdir``, completed, its output where Bedrock writes it."""
    run = json.loads((workdir / "run-context.json").read_text())
    s3 = LocalS3(workdir / "s3")
    manifest = json.loads((s3.root / run["bucket"] / run["manifest_key"]).read_text())
    prefix = f"{layout.job_output_prefix(run['run_id'], 0)}{layout.job_id_from_arn(JOB_ARN)}/"
    out = s3.root / run["bucket"] / prefix / "0000.jsonl.jsonl.out"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.symlink_to((workdir / "output.jsonl.out").resolve())
        (out.parent / "manifest.json.out").write_text(
            json.dumps({"totalRecordCount": manifest[0]["record_count"], "inputTokenCount": 0, "outputTokenCount": 0})
        )
    return {"run": run, "job": manifest[0], "job_arn": JOB_ARN, "status": "Completed", "terminal": True}


def ours(workdir: Path, target: Path) -> int:
    """The deployed postprocess function (``lambda_handler`` in the production environment, see bench/production.py)
    on job 0: the job's rows read from the run's records by row group, every output record into its row's slot (a
    left join by construction), Parquet written and uploaded to (local) S3."""
    event = job_event(workdir)
    use_local_aws(LocalS3(workdir / "s3"))
    result = handler.lambda_handler(event, LambdaContext())
    if result["failed"]:
        raise RuntimeError(f"postprocess found {result['failed']} rows without an answer: {result['error_counts']}")
    return int(result["record_count"])


def anchor(workdir: Path, target: Path) -> int:
    """The public samples' approach: pandas reads both, extracts the text per row, inner-merges on record id."""
    records = pd.read_parquet(workdir / "records.parquet")
    records["record_id"] = [f"{i:011d}" for i in range(len(records))]
    output = pd.read_json(workdir / "output.jsonl.out", lines=True, dtype={"recordId": str})
    output["response"] = output["modelOutput"].apply(lambda o: o["content"][0]["text"])
    merged = records.merge(output[["recordId", "response"]], left_on="record_id", right_on="recordId", how="inner")
    merged.drop(columns=["record_id", "recordId"]).to_parquet(target / "anchor.parquet")
    return len(merged)


def floor(workdir: Path, target: Path) -> int:
    """What any correct postprocess must do, and nothing more: read the job's records and, from the output, the
    fields the join needs (Arrow's JSON reader told to skip every other field: the echoed ``modelInput`` is most of
    a line), put each answer in its record's row (the output is shuffled), and write the joined Parquet as ours
    writes it (the same columns, codec and dictionary settings; the error columns are empty, as every record has an
    answer). It assumes what holds for this data and not in general: one text block per answer, no record errors,
    every record answered once; it keeps no memory bound and has no logging, metrics or checks."""
    records = pq.read_table(workdir / "records.parquet")
    block = pa.struct([("text", pa.string())])
    fields = pa.schema([("recordId", pa.string()), ("modelOutput", pa.struct([("content", pa.list_(block))]))])
    options = pajson.ParseOptions(explicit_schema=fields, unexpected_field_behavior="ignore")
    output = pajson.read_json(workdir / "output.jsonl.out", parse_options=options)
    content = pc.struct_field(output.column("modelOutput").combine_chunks(), "content")
    answers = pc.struct_field(pc.list_flatten(content), "text")
    line_of_row = np.empty(output.num_rows, dtype=np.int64)
    line_of_row[pc.cast(output.column("recordId"), pa.int64()).to_numpy()] = np.arange(output.num_rows)
    table = records.append_column("response", answers.take(pa.array(line_of_row)))
    for name in ("error_code", "error_message"):
        table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    dictionary = [name for name in table.column_names if name != "response"]
    pq.write_table(table, target / "floor.parquet", compression="zstd", use_dictionary=dictionary)
    return table.num_rows


def same_output(workdir: Path) -> dict:
    """Whether ours and the floor wrote the same table (the floor does the same work, not less): ours' output object
    in the run's (local) S3 and the floor's last output."""
    run = json.loads((workdir / "run-context.json").read_text())
    ours = pq.read_table(workdir / "s3" / run["bucket"] / layout.output_key(run["run_id"], 0))
    floor = pq.read_table(workdir / "floor" / "last" / "floor.parquet")
    return {"equal": ours.equals(floor), "ours_rows": ours.num_rows, "floor_rows": floor.num_rows}


def describe(records: Path) -> dict:
    """How a records.parquet is laid out (its size, row groups and compression)."""
    metadata = pq.ParquetFile(records).metadata
    return {
        "bytes": records.stat().st_size,
        "row_groups": metadata.num_row_groups,
        "compression": metadata.row_group(0).column(0).compression,
    }


def main() -> None:
    """Also ``prepare WORKDIR ROWS``, ``describe RECORDS`` and ``same WORKDIR``, so the benchmark's parent process
    stays small."""
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]), int(sys.argv[3]))
        return
    if sys.argv[1] == "describe":
        print(json.dumps(describe(Path(sys.argv[2]))))
        return
    if sys.argv[1] == "same":
        print(json.dumps(same_output(Path(sys.argv[2]))))
        return
    variant, workdir = sys.argv[1], Path(sys.argv[2])
    chosen = {"ours": ours, "anchor": anchor, "floor": floor}[variant]
    report(variant, lambda target: chosen(workdir, target), workdir / variant)


if __name__ == "__main__":
    main()
