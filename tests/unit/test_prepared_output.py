"""A prepared run's outputs: each record's raw modelOutput text, and the per-model summary and cost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.finalize.logic import MergeReport, Resubmission, model_summaries, prepared_cost
from lambdas.postprocess.logic import UNPARSABLE_OUTPUT, JoinedOutput, raw_members
from lambdas.shared.models import JobResult, JobSpec, RunContext, RunModel
from lambdas.shared.pricing import PriceTable
from lambdas.shared.run_files import MODEL_OUTPUT

RAW_LINES = [
    '{"recordId": "00000000000", "modelInput": {"a": 1}, "modelOutput": {"output": {"message": {"content": '
    '[{"text": "caf\\u00e9 \u00e9"}]}}, "usage": {"inputTokens": 3}}}',
    '{ "modelOutput" :\t{"embedding":[0.1, 2e-3 ,-1.0]} , "recordId":"00000000001"}',
    '{"recordId": "00000000002", "modelInput": {}, "modelOutput": []}',
]


@pytest.mark.parametrize("text", RAW_LINES)
def test_raw_members_keep_each_values_text_as_written(text: str) -> None:
    # GIVEN an output line with its own spacing, escapes and number forms
    # WHEN its members are read
    members = raw_members(text)
    # THEN each value equals json.loads' and its text is the exact slice of the line
    parsed = json.loads(text)
    assert {key: value for key, (value, _) in members.items()} == parsed
    for _key, (value, raw) in members.items():
        assert raw in text and json.loads(raw) == value


def test_raw_members_of_the_empty_object_and_a_repeated_key() -> None:
    # GIVEN an empty object and an object with a key twice WHEN read THEN as json.loads reads them
    assert raw_members(" {} ") == {}
    assert raw_members('{"a": 1, "a": [2]}') == {"a": ([2], "[2]")}


@pytest.mark.parametrize(
    "text", ['{"a": 1', '{"a" 1}', '{"a": 1,}', "[1]", '{"a": 1} x', "{a: 1}", '{"a": tru}', "", '{"a": 1 "b": 2}']
)
def test_raw_members_refuse_what_json_loads_refuses(text: str) -> None:
    # GIVEN text that is not one JSON object (invalid JSON, or JSON of another type)
    # WHEN read THEN ValueError, as json.loads raises for invalid JSON
    with pytest.raises(ValueError):
        raw_members(text)


def test_raw_lines_fill_each_records_row_with_its_model_output_or_its_error() -> None:
    # GIVEN a prepared job of rows 10-14 and its output lines in any order: an answer, a record error, a garbled line
    # whose id can be read, a line without modelOutput or error, and one line for a record of another job
    joined = JoinedOutput(first_row=10, count=5, kind=MODEL_OUTPUT)
    answer = '{"output":{"message":{"content":[{"text":"hi"}]}},   "stopReason":"end_turn"}'
    lines = [
        f'{{"recordId": "00000000012", "modelOutput": {answer}}}'.encode(),
        b'{"recordId": "00000000010", "error": {"errorCode": 400, "errorMessage": "bad input"}}',
        b'{"recordId": "00000000011", "modelOutput": {"output": ',
        b'{"recordId": "00000000013"}',
        b'{"recordId": "00000000099", "modelOutput": {}}',
        b"",
    ]
    # WHEN they are read
    joined.add_raw_lines(lines, "s3://b/out.jsonl.out")
    joined.fill_missing("MISSING_OUTPUT", "no output")
    values, codes, messages = (column.to_pylist() for column in joined.columns())
    # THEN each row has its own result: the answer's text exactly as written, the error, or the code saying why not
    assert values == [None, None, answer, None, None]
    assert codes == ["400", UNPARSABLE_OUTPUT, None, UNPARSABLE_OUTPUT, "MISSING_OUTPUT"]
    assert messages[0] == "bad input" and "not valid JSON" in messages[1] and "no modelOutput" in messages[3]
    assert joined.unmatched_lines == 1


def run_with(models: dict[str, RunModel]) -> RunContext:
    return RunContext(
        run_id="r",
        bucket="b",
        job_name_prefix="p",
        total_records=330,
        num_jobs=3,
        records_key="k",
        manifest_key="m",
        models=models,
    )


def result(index: int, model: str, records: int, tokens: tuple[int, int], **changes: Any) -> JobResult:
    fields: dict[str, Any] = {
        "index": index,
        "job_arn": None,
        "status": "Completed",
        "record_count": records,
        "succeeded": records,
        "failed": 0,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "output_key": f"o/{index}",
        "model": model,
    }
    return JobResult(**(fields | changes))


def test_the_per_model_summary_prices_batch_tokens_at_batch_and_on_demand_tokens_at_on_demand_prices() -> None:
    # GIVEN a run of Claude 3.5 Haiku (200 records in a batch job, 30 on demand, one resubmission job of 100) and an
    # unpriced model, with tokens on each
    prices = PriceTable.load(
        overrides={"anthropic.claude-3-5-haiku-20241022-v1:0": {"input_per_1m": 1.0, "output_per_1m": 10.0}}
    )
    haiku = RunModel(model_id="us.anthropic.claude-3-5-haiku-20241022-v1:0", family="converse", output_kind="text")
    other = RunModel(model_id="amazon.nova-unknown-v9:0", family="nova", output_kind="text")
    run = run_with({"haiku": haiku, "other": other})
    jobs = [
        JobSpec(index=0, input_key="j0", first_row=0, record_count=200, size_bytes=1, model="haiku"),
        JobSpec(index=1, input_key="j1", first_row=200, record_count=30, size_bytes=1, model="haiku", on_demand=True),
        JobSpec(index=2, input_key="j2", first_row=230, record_count=100, size_bytes=1, model="other"),
    ]
    results = {
        0: result(0, "haiku", 200, (1_000_000, 100_000), succeeded=190, failed=10, error_counts={"429": 10}),
        1: result(1, "haiku", 30, (100_000, 10_000), on_demand=True),
        2: result(2, "other", 100, (5, 5)),
    }
    retry = Resubmission(results={0: result(0, "haiku", 100, (200_000, 20_000), resubmission=True)})
    merge = MergeReport(error_counts={})
    # WHEN the models section and the cost are computed
    models = model_summaries(run, jobs, results, retry, merge, prices)
    cost = prepared_cost(models, prices)
    # THEN batch tokens (planned and resubmitted) are at half price, on-demand tokens at the full price
    batch = (1_200_000 * 1.0 + 120_000 * 10.0) / 1e6 * 0.5
    on_demand = (100_000 * 1.0 + 10_000 * 10.0) / 1e6
    entry = models["haiku"]
    assert entry["estimated_cost_usd"] == pytest.approx(batch + on_demand)
    assert "on-demand records' tokens at the on-demand price (no batch discount)" in entry["estimated_cost"]
    assert (entry["records"], entry["succeeded"], entry["failed"], entry["on_demand_records"]) == (230, 220, 10, 30)
    assert (entry["input_tokens"], entry["output_tokens"]) == (1_300_000, 130_000)
    # AND a model without a price has no estimate and says where to add one; the run's total is then None
    assert models["other"]["estimated_cost_usd"] is None and "no price for model" in models["other"]["estimated_cost"]
    assert cost["total_usd"] is None and "['other']" in cost["message"]


def test_the_run_total_is_the_sum_of_its_models_and_says_on_demand_records() -> None:
    # GIVEN two priced models' entries, one with on-demand records WHEN the run's cost is computed
    models = {
        "a": {"estimated_cost_usd": 1.5, "records": 10, "on_demand_records": 10},
        "b": {"estimated_cost_usd": 0.25, "records": 100, "on_demand_records": 0},
    }
    cost = prepared_cost(models, PriceTable.load())
    # THEN it is their sum, and the message says the on-demand records were priced without the batch discount
    assert cost["total_usd"] == 1.75 and cost["models"] == {"a": 1.5, "b": 0.25}
    assert "10 on-demand records at on-demand prices (no batch discount)" in cost["message"]
