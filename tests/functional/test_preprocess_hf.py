"""Preprocess reading a Hugging Face dataset through the real ``datasets`` library, from a fake hub on 127.0.0.1."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.preprocess import handler
from lambdas.shared.errors import InputValidationError
from tests.fakehub import FakeHub, HubEscapeError, fake_hub, parquet_bytes
from tests.functional.conftest import BUCKET

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
DATASET = "w601sxs/simpleCoT"
SCRIPTED = "w601sxs/scriptedCoT"  # an old-style repo with a loading script next to its data
TRAIN_FILE = "data/train-00000-of-00001.parquet"
TEST_FILE = "data/test-00000-of-00001.parquet"
# question_answering from prompt_templates.py, written out so the test does not reuse the renderer it checks
QA_PREFIX = (
    "Answer the following question. Think step by step, then give the final answer on the last line.\n\nQuestion: "
)


def simple_cot(split: str, rows: int) -> pa.Table:
    """simpleCoT-like rows; sources carry quotes, braces and non-ASCII to check they reach the prompt unchanged."""
    return pa.table(
        {
            "source": [f'[{split} {i}] What is {i} + {i}? Say "{{answer}}" — é' for i in range(rows)],
            "rationale": [f"{i} plus {i} is {2 * i}." for i in range(rows)],
            "target": [str(2 * i) for i in range(rows)],
        }
    )


TRAIN, TEST = simple_cot("train", 250), simple_cot("test", 120)


@pytest.fixture
def hub(tmp_path: Any) -> Iterator[FakeHub]:
    repos = {DATASET: {"train": TRAIN, "test": TEST}, SCRIPTED: {"train": TRAIN}}
    with fake_hub(tmp_path, datasets=repos, extra_files={SCRIPTED: {"scriptedCoT.py": b"import datasets\n"}}) as h:
        yield h


def run(lambda_context: Any, **execution_input: Any) -> dict[str, Any]:
    event = {
        "input": {"model_id": CLAUDE, "prompt_id": "question_answering", **execution_input},
        "execution_name": "hf-run",
    }
    return handler.lambda_handler(event, lambda_context)


def read_jsonl(s3: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()]


def test_train_split_is_read_from_the_hub_rendered_and_split_into_jobs(s3, lambda_context, hub):
    # GIVEN a hub dataset with 250 train and 120 test rows (source, rationale, target)
    # WHEN preprocess runs on its train split with at most 125 records per job
    run_ctx = run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
    # THEN every train row is a record, in 2 jobs
    assert run_ctx["total_records"] == 250 and run_ctx["num_jobs"] == 2
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    assert [job["input_key"] for job in manifest] == ["runs/hf-run/jobs/0000.jsonl", "runs/hf-run/jobs/0001.jsonl"]
    assert [job["record_count"] for job in manifest] == [125, 125]
    # AND the shards hold every row once, in order, with the question_answering prompt of that row's source
    lines = [line for job in manifest for line in read_jsonl(s3, job["input_key"])]
    assert [line["recordId"] for line in lines] == [f"{i:011d}" for i in range(250)]
    prompts = [line["modelInput"]["messages"][0]["content"][0]["text"] for line in lines]
    assert prompts == [QA_PREFIX + source for source in TRAIN.column("source").to_pylist()]
    # AND records.parquet keeps the dataset's columns, types and values (a row's record id is its row number)
    body = s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read()
    records = pq.read_table(io.BytesIO(body))
    assert records.column_names == ["source", "rationale", "target"]
    assert all(records.schema.field(name).type == pa.string() for name in records.column_names)
    assert records.select(["source", "rationale", "target"]).equals(TRAIN)
    # AND the rows came through the hub: the train file was downloaded, the test file was not needed
    downloaded = hub.downloaded(DATASET)
    assert TRAIN_FILE in downloaded and TEST_FILE not in downloaded
    assert hub.unrouted == [] and hub.blocked == []


def test_test_split_gives_its_own_rows(s3, lambda_context, hub):
    # GIVEN the same hub dataset
    # WHEN preprocess runs on the test split
    run_ctx = run(lambda_context, dataset_id=DATASET, split="test")
    # THEN the run has the 120 test rows, in one job
    assert run_ctx["total_records"] == 120 and run_ctx["num_jobs"] == 1
    lines = read_jsonl(s3, "runs/hf-run/jobs/0000.jsonl")
    prompts = [line["modelInput"]["messages"][0]["content"][0]["text"] for line in lines]
    assert prompts == [QA_PREFIX + source for source in TEST.column("source").to_pylist()]
    # AND the test file was downloaded (datasets also reads the first split's file, to infer the features)
    assert TEST_FILE in hub.downloaded(DATASET)


def test_a_parquet_split_is_read_by_row_group_with_its_jobs_planned_first(s3, lambda_context, tmp_path, monkeypatch):
    # GIVEN a hub dataset whose train split is one Parquet file of 3 row groups, and preprocess's planned path watched
    from lambdas.preprocess import logic

    planned: list[dict[str, Any] | None] = []
    original = logic.stage_planned

    def watched(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        planned.append(None if result is None else {"jobs": len(result[1])})
        return result

    monkeypatch.setattr(logic, "stage_planned", watched)
    with fake_hub(tmp_path, datasets={DATASET: {"train": TRAIN}}, row_group_size=100) as hub:
        # WHEN preprocess runs on it with at most 125 records per job
        run_ctx = run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
        requests = list(hub.requests)
    # THEN the jobs were planned from the file's footer and streamed (the planned path took the run)
    assert planned == [{"jobs": 2}]
    # AND the file was read in ranges, never whole
    reads = [r for r in requests if r.method == "GET" and r.path.endswith(TRAIN_FILE)]
    assert reads and all(r.range for r in reads)
    # AND every row is a record, in order, with its prompt; records.parquet holds the rows as they are
    lines = [line for i in range(2) for line in read_jsonl(s3, f"runs/hf-run/jobs/{i:04d}.jsonl")]
    assert [line["recordId"] for line in lines] == [f"{i:011d}" for i in range(250)]
    prompts = [line["modelInput"]["messages"][0]["content"][0]["text"] for line in lines]
    assert prompts == [QA_PREFIX + source for source in TRAIN.column("source").to_pylist()]
    records = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read()))
    assert records.equals(TRAIN)


def test_a_split_of_jsonl_files_is_streamed_by_datasets(s3, lambda_context, tmp_path):
    # GIVEN a hub dataset whose only data is a JSON Lines file (no Parquet: datasets' json builder reads it)
    body = b"".join(json.dumps({"source": f"question {i}"}).encode() + b"\n" for i in range(150))
    files = {"jsonl/corpus": {"data/train.jsonl": body}}
    with fake_hub(tmp_path, datasets={"jsonl/corpus": {}}, extra_files=files):
        # WHEN preprocess runs on its train split
        run_ctx = run(lambda_context, dataset_id="jsonl/corpus", split="train")
    # THEN every line is a record, in order
    assert run_ctx["total_records"] == 150
    prompts = [
        line["modelInput"]["messages"][0]["content"][0]["text"]
        for line in read_jsonl(s3, "runs/hf-run/jobs/0000.jsonl")
    ]
    assert prompts == [f"{QA_PREFIX}question {i}" for i in range(150)]


@pytest.mark.parametrize(
    ("dataset_id", "split", "message"),
    [
        pytest.param(
            "nobody/missing", "train", r"dataset_id 'nobody/missing' with split 'train'", id="unknown dataset"
        ),
        pytest.param(
            DATASET, "validation", r"dataset_id 'w601sxs/simpleCoT' with split 'validation'", id="unknown split"
        ),
        pytest.param(
            SCRIPTED,
            "train",
            r"dataset_id 'w601sxs/scriptedCoT'",
            id="script-based dataset",
        ),
    ],
)
def test_unknown_dataset_or_split_is_rejected_naming_it(s3, lambda_context, hub, dataset_id, split, message):
    # GIVEN a hub that does not have this dataset or split
    # WHEN preprocess runs THEN it raises InputValidationError naming them, and no job file exists
    with pytest.raises(InputValidationError, match=message):
        run(lambda_context, dataset_id=dataset_id, split=split)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/hf-run/")
    # AND the answer came from the hub (not from offline mode)
    assert any(dataset_id in request.path for request in hub.requests)


def test_fake_hub_refuses_any_other_host(tmp_path):
    # GIVEN a fake hub
    from huggingface_hub.utils import get_session

    with pytest.raises(HubEscapeError, match="requests left the fake hub"):  # noqa: SIM117 - the exit is checked
        with fake_hub(tmp_path, datasets={}) as h:
            # WHEN a request goes to huggingface.co
            with pytest.raises(HubEscapeError, match="huggingface.co"):
                get_session().get("https://huggingface.co/api/datasets/w601sxs/simpleCoT")
            # THEN it is refused and recorded, and leaving the fake hub fails even if the error was swallowed
            assert h.blocked == ["GET https://huggingface.co/api/datasets/w601sxs/simpleCoT"]


def records_bytes(s3: Any, run_ctx: dict[str, Any]) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read())


def test_a_split_of_one_parquet_file_is_copied_as_the_records(s3, lambda_context, tmp_path):
    # GIVEN a hub dataset whose train split is one Parquet file (3 row groups), no features declared
    with fake_hub(tmp_path, datasets={DATASET: {"train": TRAIN}}, row_group_size=100) as hub:
        served = bytes(hub.repos[DATASET].files[TRAIN_FILE].data)
        # WHEN preprocess runs on it
        run_ctx = run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
        requests = list(hub.requests)
    # THEN records.parquet is the hub's file, byte for byte (neither decoded nor encoded)
    assert records_bytes(s3, run_ctx) == served
    # AND every row is a record, in order, with its prompt
    lines = [line for i in range(2) for line in read_jsonl(s3, f"runs/hf-run/jobs/{i:04d}.jsonl")]
    assert [line["recordId"] for line in lines] == [f"{i:011d}" for i in range(250)]
    prompts = [line["modelInput"]["messages"][0]["content"][0]["text"] for line in lines]
    assert prompts == [QA_PREFIX + source for source in TRAIN.column("source").to_pylist()]
    # AND the file was only ever read in ranges
    reads = [r for r in requests if r.method == "GET" and r.path.endswith(TRAIN_FILE)]
    assert reads and all(r.range for r in reads)


def test_a_copied_split_whose_jobs_are_staged_again_still_gets_its_records(s3, lambda_context, tmp_path, monkeypatch):
    # GIVEN a hub split of one Parquet file, and a plan the byte quotas refuse (stage_planned gives up: staged again)
    from lambdas.preprocess import logic

    monkeypatch.setattr(logic, "stage_planned", lambda *args, **kwargs: None)
    with fake_hub(tmp_path, datasets={DATASET: {"train": TRAIN}}) as hub:
        served = bytes(hub.repos[DATASET].files[TRAIN_FILE].data)
        # WHEN preprocess runs on it
        run_ctx = run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
    # THEN the staged run's records are the hub's file too, and every row is in a job
    assert records_bytes(s3, run_ctx) == served
    assert run_ctx["total_records"] == 250 and run_ctx["num_jobs"] == 2


def test_a_copied_split_whose_plan_the_byte_quotas_change_leaves_no_upload_open(
    s3, lambda_context, tmp_path, monkeypatch
):
    # GIVEN a hub split of one Parquet file (250 rows, planned as 2 jobs of 125) whose lines the byte quotas would
    # split into 3 jobs (fit_job_sizes stands in for the quota arithmetic)
    from lambdas.preprocess import logic

    monkeypatch.setattr(logic, "fit_job_sizes", lambda *args, **kwargs: [84, 83, 83])
    with fake_hub(tmp_path, datasets={DATASET: {"train": TRAIN}}) as hub:
        served = bytes(hub.repos[DATASET].files[TRAIN_FILE].data)
        # WHEN preprocess runs on it
        run_ctx = run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
    # THEN the first pass's uploads (the job files and the records being copied) were aborted, none left open
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)
    # AND the run has the 3 jobs of the byte plan, every row once, and the file as its records
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    assert [job["record_count"] for job in manifest] == [84, 83, 83]
    lines = [line for job in manifest for line in read_jsonl(s3, job["input_key"])]
    assert [line["recordId"] for line in lines] == [f"{i:011d}" for i in range(250)]
    assert records_bytes(s3, run_ctx) == served


def test_a_split_of_several_parquet_files_writes_its_records_from_the_rows(s3, lambda_context, tmp_path):
    # GIVEN a hub dataset whose train split is two Parquet files (no single file can be the records)
    first, second = TRAIN.slice(0, 100), TRAIN.slice(100)
    files = {
        DATASET: {
            "data/train-00000-of-00002.parquet": parquet_bytes(first),
            "data/train-00001-of-00002.parquet": parquet_bytes(second),
        }
    }
    with fake_hub(tmp_path, datasets={DATASET: {}}, extra_files=files):
        # WHEN preprocess runs on it
        run_ctx = run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
    # THEN records.parquet holds both files' rows, in order, and every row is a record
    records = pq.read_table(io.BytesIO(records_bytes(s3, run_ctx)))
    assert records.equals(TRAIN)
    lines = [line for i in range(2) for line in read_jsonl(s3, f"runs/hf-run/jobs/{i:04d}.jsonl")]
    assert [line["recordId"] for line in lines] == [f"{i:011d}" for i in range(250)]


CARD_TARGET_INT = b"""---
dataset_info:
  features:
  - name: source
    dtype: string
  - name: rationale
    dtype: string
  - name: target
    dtype: int64
---
"""


def test_a_split_whose_features_need_a_cast_writes_the_cast_rows_as_records(s3, lambda_context, tmp_path):
    # GIVEN a hub split of one Parquet file whose card declares `target` as int64 (the file holds strings)
    with fake_hub(
        tmp_path, datasets={DATASET: {"train": TRAIN}}, extra_files={DATASET: {"README.md": CARD_TARGET_INT}}
    ):
        # WHEN preprocess runs on it
        run_ctx = run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
    # THEN records.parquet holds the rows cast as datasets casts them (target as int64), not the file's bytes
    records = pq.read_table(io.BytesIO(records_bytes(s3, run_ctx)))
    assert records.schema.field("target").type == pa.int64()
    assert records.column("target").to_pylist() == [2 * i for i in range(250)]
    assert run_ctx["total_records"] == 250


def test_an_invalid_row_in_a_copied_split_leaves_nothing_in_s3(s3, lambda_context, tmp_path):
    # GIVEN a hub split of one Parquet file with a null prompt column in its last row
    broken = TRAIN.set_column(0, "source", pa.array([*TRAIN.column("source").to_pylist()[:-1], None], pa.string()))
    # WHEN preprocess runs on it THEN it fails naming the null
    with fake_hub(tmp_path, datasets={DATASET: {"train": broken}}), pytest.raises(InputValidationError, match="null"):
        run(lambda_context, dataset_id=DATASET, split="train", max_records_per_job=125)
    # AND nothing became visible: no records, no job file, no manifest, no upload left open
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/hf-run/")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)
