"""The postprocess variants the benchmark compares, each in its own process (peak RSS is its own).

Input: one job of N records: ``records.parquet`` (the job's input rows) and ``output.jsonl.out`` (Bedrock's answers
in the Anthropic shape, shuffled, as the service may return them).
``python -m bench.postprocess_variants VARIANT WORKDIR`` prints a JSON line with seconds and rows.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pandas as pd  # imported before timing starts, like every variant's imports
import pyarrow.json as pajson
import pyarrow.parquet as pq

from bench.data import simplecot_like
from bench.timing import report
from lambdas.postprocess import logic
from lambdas.shared.model_families import adapter_for_family


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


def ours(workdir: Path, target: Path) -> int:
    """The project's postprocess join (as in the Lambda, after the download): every output record into its row's
    slot, a left join by construction, then Parquet out."""
    records = pq.read_table(workdir / "records.parquet")
    joined = logic.JoinedOutput(first_row=0, count=records.num_rows, kind="text")
    joined.add_file(workdir / "output.jsonl.out", "anthropic", adapter_for_family("anthropic"), "output.jsonl.out")
    joined.fill_missing("MISSING_OUTPUT", "no output")
    pq.write_table(logic.build_table(records, joined), target / "ours.parquet", compression="zstd")
    return records.num_rows


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
    """What cannot be avoided: parse the JSONL with pyarrow and write Parquet (no join, no extraction)."""
    table = pajson.read_json(workdir / "output.jsonl.out")
    pq.write_table(table, target / "floor.parquet", compression="zstd")
    return table.num_rows


def main() -> None:
    variant, workdir = sys.argv[1], Path(sys.argv[2])
    chosen = {"ours": ours, "anchor": anchor, "floor": floor}[variant]
    report(variant, lambda target: chosen(workdir, target), workdir / variant)


if __name__ == "__main__":
    main()
