"""Preprocess of a prepared input (input_format "prepared"): JSONL records of several models, grouped by model into
records.parquet and job files, planned per model with each model's own quotas."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.preprocess import handler, prepared
from lambdas.shared.errors import InputValidationError
from local.emulator import Quotas
from tests.functional.conftest import BUCKET
from tests.prepared_records import (
    HAIKU_ID,
    MODELS,
    TITAN_ID,
    execution_input,
    interleaved,
    jsonl,
    line,
)

KEY = "openai/batches/batch_1/prepared.jsonl"


def put_lines(s3: Any, body: bytes, key: str = KEY) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def run(lambda_context: Any, execution: dict[str, Any], name: str = "batch_1") -> dict[str, Any]:
    return handler.lambda_handler({"input": execution, "execution_name": name}, lambda_context)


def read_json(s3: Any, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def read_jsonl(s3: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(item) for item in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()]


def read_records(s3: Any, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def test_records_are_grouped_by_model_in_input_order_and_planned_per_model(s3, lambda_context):
    # GIVEN 250 Claude, 120 Titan and 30 Nova records, interleaved as in a user's batch file
    lines = interleaved({"claude-haiku": 250, "titan-embed": 120, "nova-micro": 30})
    uri = put_lines(s3, jsonl(lines))
    # WHEN preprocess runs with at most 200 records per job
    run_ctx = run(lambda_context, execution_input(uri, max_records_per_job=200))
    # THEN records.parquet holds every line once, one model's rows together, in input order within a model
    records = read_records(s3, run_ctx["records_key"])
    assert records.column_names == ["record_id", "custom_id", "line", "model", "model_input"]
    expected = [item for model in MODELS for item in lines if item["model"] == model]
    assert records.column("custom_id").to_pylist() == [item["custom_id"] for item in expected]
    assert records.column("record_id").to_pylist() == [f"{row:011d}" for row in range(400)]
    assert records.schema.field("line").type == pa.int64()
    # AND model_input is kept as the JSON text of the record's modelInput
    assert [json.loads(text) for text in records.column("model_input").to_pylist()] == [
        item["model_input"] for item in expected
    ]
    # AND the jobs never mix models: Claude in 2 balanced jobs (125 + 125), Titan in 1, and Nova's 30 records, under
    # the 100-record minimum of a batch job, in one on-demand job
    manifest = read_json(s3, run_ctx["manifest_key"])
    assert [(job["model"], job["record_count"], job["on_demand"]) for job in manifest] == [
        ("claude-haiku", 125, False),
        ("claude-haiku", 125, False),
        ("titan-embed", 120, False),
        ("nova-micro", 30, True),
    ]
    assert [job["first_row"] for job in manifest] == [0, 125, 250, 370]
    assert [job["index"] for job in manifest] == [0, 1, 2, 3]
    # AND each job file holds its rows' records: recordId (the row number) and the line's model_input as is
    for job in manifest:
        records_of_job = read_jsonl(s3, job["input_key"])
        rows = range(job["first_row"], job["first_row"] + job["record_count"])
        assert [record["recordId"] for record in records_of_job] == [f"{row:011d}" for row in rows]
        assert [record["modelInput"] for record in records_of_job] == [expected[row]["model_input"] for row in rows]
        assert (
            sum(
                len(item) + 1 for item in s3.get_object(Bucket=BUCKET, Key=job["input_key"])["Body"].read().splitlines()
            )
            == job["size_bytes"]
        )
    # AND the run context carries each model with its own id, invocation type, family and output kind
    assert run_ctx["model_id"] is None and run_ctx["total_records"] == 400 and run_ctx["num_jobs"] == 4
    models = run_ctx["models"]
    assert (models["claude-haiku"]["model_id"], models["claude-haiku"]["invocation_type"]) == (HAIKU_ID, "Converse")
    assert models["claude-haiku"]["family"] == "converse" and models["claude-haiku"]["output_kind"] == "text"
    assert (models["titan-embed"]["family"], models["titan-embed"]["output_kind"]) == (
        "titan-embed-text-v2",
        "embedding",
    )


def test_each_model_is_planned_with_its_own_quotas_and_concurrency_cap(s3, lambda_context, emulator):
    # GIVEN Service Quotas giving Claude 3.5 Haiku at most 150 records per job and 2 jobs in flight, Titan defaults
    emulator.state.model_quotas["anthropic.claude-3-5-haiku-20241022-v1:0"] = Quotas(
        max_records_per_job=150, max_active_jobs_per_model=2
    )
    uri = put_lines(s3, jsonl(interleaved({"claude-haiku": 250, "titan-embed": 250})))
    # WHEN preprocess runs without a record limit of its own
    run_ctx = run(lambda_context, execution_input(uri, models=["claude-haiku", "titan-embed"]))
    # THEN Claude's 250 records are 2 jobs within its quota, Titan's one job, each model with its own cap
    manifest = read_json(s3, run_ctx["manifest_key"])
    assert [(job["model"], job["record_count"]) for job in manifest] == [
        ("claude-haiku", 125),
        ("claude-haiku", 125),
        ("titan-embed", 250),
    ]
    models = run_ctx["models"]
    assert models["claude-haiku"]["max_concurrent_jobs"] == 2
    assert models["claude-haiku"]["quotas"]["max_records_per_job"] == {
        "value": 150,
        "source": "service-quotas",
        "quota_code": models["claude-haiku"]["quotas"]["max_records_per_job"]["quota_code"],
    }
    assert models["titan-embed"]["max_concurrent_jobs"] == 20
    assert models["titan-embed"]["quotas"]["max_records_per_job"]["value"] == 50_000


def test_other_keys_are_input_columns_typed_from_their_values(s3, lambda_context):
    # GIVEN lines with extra keys: a number on every line, an object, a key only some lines have, mixed types
    lines = [
        line(i, "titan-embed", score=i / 2, meta={"tag": i}, note="x" if i % 2 else None, mixed=i if i % 3 else "s")
        for i in range(1, 101)
    ]
    uri = put_lines(s3, jsonl(lines))
    # WHEN preprocess runs
    run_ctx = run(lambda_context, execution_input(uri, models=["titan-embed"]))
    # THEN each key is a column: one scalar type keeps its type, objects and mixed types are JSON text
    records = read_records(s3, run_ctx["records_key"])
    assert records.schema.field("score").type == pa.float64()
    assert records.column("meta").to_pylist()[:2] == ['{"tag":1}', '{"tag":2}']
    assert records.column("note").to_pylist()[:2] == ["x", None]
    assert records.column("mixed").to_pylist()[:3] == ["1", "2", '"s"']


BAD_LINES: dict[str, tuple[bytes, str]] = {
    "not JSON": (b'{"model": "titan-embed", "model_input": {}\n', r"line 2 of s3://.* is not valid JSON"),
    "not an object": (b"[1, 2]\n", r"line 2 of .* is a JSON array, not an object; give one JSON object per line"),
    "no model": (b'{"model_input": {"inputText": "x"}}\n', r"line 2 of .* has no 'model'; set 'model' to one of"),
    "unknown model": (
        b'{"model": "gpt-4o", "model_input": {"inputText": "x"}}\n',
        r"line 2 of .* has 'model' = \"gpt-4o\", not a key of models; set 'model' to one of the execution input's "
        r"models \['titan-embed'\]",
    ),
    "model not a string": (
        b'{"model": ["titan-embed"], "model_input": {}}\n',
        r"line 2 of .* has 'model' = \[\"titan-embed\"\], not a key of models",
    ),
    "model_input missing": (b'{"model": "titan-embed"}\n', r"line 2 of .* has no 'model_input'; give the record's"),
    "model_input not an object": (
        b'{"model": "titan-embed", "model_input": "hello"}\n',
        r"line 2 of .* has a 'model_input' that is not a JSON object",
    ),
    "reserved key": (
        b'{"model": "titan-embed", "model_input": {}, "error_code": 1}\n',
        r"line 2 of .* has key\(s\) \['error_code'\], names of columns the run adds; rename them",
    ),
    "not UTF-8": (
        b'{"model": "titan-embed", "model_input": {"inputText": "\xff"}}\n',
        r"line 2 of .* is not valid UTF-8",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_is_refused_with_its_number_and_the_fix(s3, lambda_context, case):
    # GIVEN a prepared file whose second line is bad
    bad, expected = BAD_LINES[case]
    uri = put_lines(s3, jsonl([line(1, "titan-embed")]) + bad + jsonl([line(3, "titan-embed")]))
    # WHEN preprocess runs THEN it names the line and the fix, and nothing of the run is in S3
    with pytest.raises(InputValidationError, match=expected):
        run(lambda_context, execution_input(uri, models=["titan-embed"]))
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_a_record_over_its_models_file_limit_is_refused(s3, lambda_context, emulator):
    # GIVEN a model whose input file quota is 3 KB (scaled down from 1 GB) and a record of 5 KB on line 3
    emulator.state.model_quotas[TITAN_ID] = Quotas(max_file_bytes=3_000)
    lines = [line(1, "titan-embed"), line(2, "titan-embed"), line(3, "titan-embed")]
    lines[2]["model_input"]["inputText"] = "x" * 5_000
    uri = put_lines(s3, jsonl(lines))
    # WHEN preprocess runs THEN the error names the line, the size, the model's limit and the fix
    with pytest.raises(InputValidationError, match=r"line 3 of .* makes a 5,0\d\d-byte record, over the 3,000-byte"):
        run(lambda_context, execution_input(uri, models=["titan-embed"]))


def test_a_line_longer_than_any_models_limit_is_refused_before_it_is_all_in_memory():
    # GIVEN a body whose second line goes on for chunk after chunk without a newline
    class Body:
        chunks = 0

        def iter_chunks(self, size: int):
            yield b'{"a": 1}\n{"b": "'
            while True:
                self.chunks += 1
                yield b"x" * 1_000

    body = Body()
    # WHEN it is split into lines with a limit of 10,000 bytes THEN line 2 is refused after about that many bytes
    with pytest.raises(InputValidationError, match=r"line 2 of x is longer than 10,000 bytes.*shorten it"):
        list(prepared.numbered_lines(body, 10_000, "x"))
    assert body.chunks == 10


def test_a_record_over_its_own_models_limit_is_refused_with_the_model(s3, lambda_context, emulator):
    # GIVEN Titan's file quota is 3 KB, Claude's the default, and a 4 KB Titan record next to a 4 KB Claude record
    emulator.state.model_quotas[TITAN_ID] = Quotas(max_file_bytes=3_000)
    big = [line(1, "claude-haiku"), line(2, "titan-embed")]
    big[0]["model_input"]["messages"][0]["content"][0]["text"] = "y" * 4_000
    big[1]["model_input"]["inputText"] = "x" * 4_000
    uri = put_lines(s3, jsonl(big))
    # WHEN preprocess runs THEN Claude's record passes and Titan's is refused with its model's limit
    with pytest.raises(InputValidationError, match=r"line 2 of .* over the 3,000-byte input file limit of model "):
        run(lambda_context, execution_input(uri, models=["claude-haiku", "titan-embed"]))


INVALID_RUNS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown model id": (
        {"models": {"x": {"model_id": "openai.gpt-9"}}},
        r"field 'models.x.model_id': model_id 'openai.gpt-9' belongs to no supported model family",
    ),
    "output kind disagrees": (
        {"models": {"x": {"model_id": TITAN_ID, "output_kind": "text"}}},
        r"field 'models.x.output_kind' = 'text', but 'amazon.titan-embed-text-v2:0' is a embedding model",
    ),
    "converse embedding": (
        {"models": {"x": {"model_id": TITAN_ID, "invocation_type": "Converse"}}},
        r"field 'models.x.invocation_type': 'Converse' jobs serve text models",
    ),
    "another bucket": ({"s3_uri": "s3://other-bucket/p.jsonl"}, r"is in bucket 'other-bucket'"),
    "a prefix": ({"s3_uri": f"s3://{BUCKET}/openai/"}, r"is a prefix; input_format 'prepared' reads one JSONL file"),
    "no such file": ({"s3_uri": f"s3://{BUCKET}/missing.jsonl"}, r"does not exist; upload the prepared JSONL"),
}


@pytest.mark.parametrize("case", sorted(INVALID_RUNS))
def test_an_invalid_prepared_run_is_refused_with_the_field_and_the_fix(s3, lambda_context, case):
    # GIVEN a valid prepared file and an execution input with one problem
    uri = put_lines(s3, jsonl([line(i, "titan-embed") for i in range(1, 101)]))
    changes, expected = INVALID_RUNS[case]
    # WHEN preprocess runs THEN the error names the field and the fix
    with pytest.raises(InputValidationError, match=expected):
        run(lambda_context, execution_input(uri, models=["titan-embed"]) | changes)


def test_a_model_not_enabled_in_the_deployment_is_refused(s3, lambda_context, monkeypatch):
    # GIVEN a deployment that enables Claude 3.5 Haiku only
    monkeypatch.setenv("ALLOWED_MODEL_IDS", HAIKU_ID)
    uri = put_lines(s3, jsonl([line(i, "titan-embed") for i in range(1, 101)]))
    # WHEN a prepared run names Titan THEN the field of that model is named with the fix
    with pytest.raises(InputValidationError, match=r"field 'models.titan-embed.model_id' = '.*' is not enabled"):
        run(lambda_context, execution_input(uri, models=["claude-haiku", "titan-embed"]))


def test_an_empty_or_blank_file_has_no_records(s3, lambda_context):
    # GIVEN a prepared file of blank lines WHEN preprocess runs THEN it says there are no records
    uri = put_lines(s3, b"\n  \n")
    with pytest.raises(InputValidationError, match=r"has no records; give one JSON object per line"):
        run(lambda_context, execution_input(uri, models=["titan-embed"]))


def test_lines_are_numbered_across_chunks_and_a_last_line_without_newline_counts():
    # GIVEN a body delivered in pieces that cut lines anywhere, the last line without its newline
    class Body:
        def iter_chunks(self, size: int):
            yield from (b'{"a"', b': 1}\n\n{"b": 2', b"}\r\n", b'{"c": 3}')

    # WHEN it is split into lines THEN every line has its number, blank ones included
    assert list(prepared.numbered_lines(Body(), 100, "x")) == [
        (1, b'{"a": 1}'),
        (2, b""),
        (3, b'{"b": 2}\r'),
        (4, b'{"c": 3}'),
    ]


def test_the_column_types_follow_the_json_values():
    # GIVEN the JSON types seen in a column WHEN its Arrow type is chosen THEN scalars keep theirs, the rest is JSON
    assert prepared.column_type({"str"}) == (pa.string(), False)
    assert prepared.column_type({"int"}) == (pa.int64(), False)
    assert prepared.column_type({"int", "float"}) == (pa.float64(), False)
    assert prepared.column_type({"bool"}) == (pa.bool_(), False)
    assert prepared.column_type(set()) == (pa.string(), False)
    assert prepared.column_type({"str", "int"}) == (pa.string(), True)
    assert prepared.column_type({"json"}) == (pa.string(), True)
    assert prepared.column_type({"bool", "int"}) == (pa.string(), True)
