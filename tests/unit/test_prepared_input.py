"""The execution input of a prepared run (input_format "prepared" with models) and the run context of several models."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.shared.errors import InputValidationError
from lambdas.shared.models import MAX_PREPARED_MODELS, ExecutionInput, JobResult, JobSpec, RunContext, RunModel
from lambdas.shared.quotas import BatchQuotas, QuotaValue

HAIKU = {"model_id": "us.anthropic.claude-3-5-haiku-20241022-v1:0", "invocation_type": "Converse"}
TITAN = {"model_id": "amazon.titan-embed-text-v2:0", "output_kind": "embedding"}
PREPARED: dict[str, Any] = {
    "input_format": "prepared",
    "s3_uri": "s3://bucket/openai/batches/batch_1/prepared.jsonl",
    "models": {"claude-haiku": HAIKU, "titan-embed": TITAN},
    "job_name_prefix": "oai-batch",
}


def test_a_prepared_input_is_accepted_with_its_models() -> None:
    # GIVEN the execution input the gateway starts a prepared run with
    # WHEN it is parsed
    inp = ExecutionInput.parse(PREPARED)
    # THEN it is a prepared run of two models, each with its own id and invocation type
    assert inp.prepared and inp.model_id is None
    assert inp.models is not None
    assert inp.models["claude-haiku"].invocation_type == "Converse"
    assert inp.models["titan-embed"].invocation_type == "InvokeModel"
    assert inp.models["titan-embed"].output_kind == "embedding"


def test_a_rows_input_is_unchanged() -> None:
    # GIVEN a rows input as before (no input_format)
    # WHEN it is parsed THEN it is a rows run of its model
    inp = ExecutionInput.parse({"model_id": "anthropic.claude-3-haiku-20240307-v1:0", "s3_uri": "s3://bucket/k.csv"})
    assert inp.input_format == "rows" and not inp.prepared and inp.models is None


REFUSED = {
    "model_id with prepared": ({**PREPARED, "model_id": "anthropic.claude-3-haiku-20240307-v1:0"}, "model_id"),
    "prompt_id with prepared": ({**PREPARED, "prompt_id": "joke_about_topic"}, "prompt_id"),
    "dataset_id with prepared": ({**PREPARED, "dataset_id": "w601sxs/simpleCoT"}, "dataset_id"),
    "split with prepared": ({**PREPARED, "split": "test"}, "split"),
    "inference_params with prepared": ({**PREPARED, "inference_params": {"max_tokens": 10}}, "inference_params"),
    "invocation_type with prepared": ({**PREPARED, "invocation_type": "Converse"}, "invocation_type"),
    "model_family with prepared": ({**PREPARED, "model_family": "anthropic"}, "model_family"),
    "max_num_jobs with prepared": ({**PREPARED, "max_num_jobs": 3}, "max_num_jobs"),
}


@pytest.mark.parametrize(("raw", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_a_prepared_input_refuses_the_fields_of_a_rows_run(raw: dict[str, Any], field: str) -> None:
    # GIVEN a prepared input with a field only a rows run takes
    # WHEN it is parsed THEN one error names the field, the format and the fix (remove it)
    with pytest.raises(InputValidationError) as error:
        ExecutionInput.parse(raw)
    message = str(error.value)
    assert f"field '{field}' = " in message
    assert "is not taken with input_format 'prepared'" in message and message.endswith("remove it")


INVALID = {
    "prepared without models": (
        {key: value for key, value in PREPARED.items() if key != "models"},
        "field 'models' is missing; input_format 'prepared' needs the models",
    ),
    "prepared without s3_uri": (
        {key: value for key, value in PREPARED.items() if key != "s3_uri"},
        "field 's3_uri' is missing; input_format 'prepared' reads a JSONL file",
    ),
    "models with rows": (
        {"model_id": "anthropic.claude-3-haiku-20240307-v1:0", "s3_uri": "s3://bucket/k.csv", "models": {"a": HAIKU}},
        "field 'models' is given with input_format 'rows'",
    ),
    "rows without model_id": ({"s3_uri": "s3://bucket/k.csv"}, "field 'model_id' is missing; a rows run needs"),
    "unknown input_format": ({**PREPARED, "input_format": "openai"}, "field 'input_format' = 'openai'"),
    "empty models": ({**PREPARED, "models": {}}, "field 'models' = {...}: names no model"),
    "bad model name": ({**PREPARED, "models": {"a b": HAIKU}}, "has a model named 'a b'"),
    "model without id": ({**PREPARED, "models": {"a": {"invocation_type": "Converse"}}}, "field 'models.a.model_id'"),
    "unknown model key": (
        {**PREPARED, "models": {"a": {**HAIKU, "prompt": "x"}}},
        "unknown field 'models.a.prompt'; remove it (known fields: model_id, invocation_type, model_family, "
        "output_kind)",
    ),
    "unknown family": ({**PREPARED, "models": {"a": {**HAIKU, "model_family": "gpt"}}}, "is not a model family"),
    "bad invocation type": (
        {**PREPARED, "models": {"a": {**HAIKU, "invocation_type": "Chat"}}},
        "field 'models.a.invocation_type' = 'Chat'",
    ),
    "too many models": (
        {**PREPARED, "models": {f"m{i}": HAIKU for i in range(MAX_PREPARED_MODELS + 1)}},
        f"more than the {MAX_PREPARED_MODELS} a run takes",
    ),
}


@pytest.mark.parametrize(("raw", "expected"), INVALID.values(), ids=INVALID.keys())
def test_every_invalid_combination_is_one_clear_error(raw: dict[str, Any], expected: str) -> None:
    # GIVEN an input whose format and fields do not go together
    # WHEN it is parsed THEN one InputValidationError names the field and the fix
    with pytest.raises(InputValidationError, match="invalid execution input") as error:
        ExecutionInput.parse(raw)
    assert expected in str(error.value)


def run_models() -> dict[str, RunModel]:
    small = BatchQuotas(max_concurrent_jobs=QuotaValue(value=3, source="service-quotas"))
    return {
        "claude-haiku": RunModel(
            model_id=HAIKU["model_id"], family="converse", invocation_type="Converse", output_kind="text", quotas=small
        ),
        "titan-embed": RunModel(model_id=TITAN["model_id"], family="titan-embed-text-v2", output_kind="embedding"),
    }


def prepared_run(**changes: Any) -> RunContext:
    fields: dict[str, Any] = {
        "run_id": "batch-1",
        "bucket": "b",
        "job_name_prefix": "oai-batch",
        "total_records": 300,
        "num_jobs": 2,
        "records_key": "runs/batch-1/records.parquet",
        "manifest_key": "runs/batch-1/jobs.json",
        "models": run_models(),
    }
    return RunContext(**(fields | changes))


def test_a_prepared_run_gives_each_job_its_own_model() -> None:
    # GIVEN a prepared run of two models and a job of each
    run = prepared_run()
    haiku = JobSpec(index=0, input_key="k", first_row=0, record_count=150, size_bytes=1, model="claude-haiku")
    titan = JobSpec(index=1, input_key="k", first_row=150, record_count=150, size_bytes=1, model="titan-embed")
    # WHEN each job's model is looked up THEN it is the job's, not the run's
    assert run.prepared
    assert run.model_for(haiku.model).invocation_type == "Converse"
    assert run.model_for(haiku.model).quotas.max_concurrent_jobs.value == 3
    assert run.model_for(titan.model).output_kind == "embedding"
    # AND the context survives the round trip through a state payload
    assert RunContext.model_validate(run.model_dump(mode="json")) == run


def test_a_job_naming_no_model_of_the_run_is_refused() -> None:
    # GIVEN a prepared run WHEN a job names another model THEN the error names the run's models
    with pytest.raises(ValueError, match=r"not one of run batch-1's models \['claude-haiku', 'titan-embed'\]"):
        prepared_run().model_for("nova")
    # AND a job without a model has none in a prepared run
    with pytest.raises(ValueError, match="not one of run"):
        prepared_run().model_for(None)


def test_a_rows_run_gives_its_one_model_to_every_job() -> None:
    # GIVEN a rows run
    run = RunContext(
        run_id="r",
        bucket="b",
        model_id="anthropic.claude-3-haiku-20240307-v1:0",
        family="anthropic",
        output_kind="text",
        job_name_prefix="p",
        total_records=100,
        num_jobs=1,
        records_key="k",
        manifest_key="m",
        max_concurrent_jobs=5,
    )
    # WHEN a job without a model looks up its model THEN it is the run's
    model = run.model_for(None)
    assert (model.model_id, model.family, model.max_concurrent_jobs) == (run.model_id, "anthropic", 5)
    assert not run.prepared
    # AND a job naming a model has none in a rows run
    with pytest.raises(ValueError, match="is a rows run of one model"):
        run.model_for("claude-haiku")


def test_a_run_context_is_either_one_model_or_models() -> None:
    # GIVEN a prepared run that also names a single model WHEN it is built THEN it is refused
    with pytest.raises(ValueError, match="a prepared run names its models in models"):
        prepared_run(model_id="x")
    # AND a run naming neither is refused
    with pytest.raises(ValueError, match="a rows run names its model_id"):
        prepared_run(models=None)


def test_a_job_result_says_its_model() -> None:
    # GIVEN a job result of a prepared run WHEN it is stored and read THEN model and on_demand are kept
    result = JobResult(
        index=0, job_arn=None, status="Completed", record_count=1, succeeded=1, failed=0, output_key="k", model="m"
    )
    again = JobResult.model_validate(result.model_dump(mode="json"))
    assert (again.model, again.on_demand) == ("m", False)


def test_a_rows_runs_jobs_are_written_as_before_and_a_prepared_runs_always_say_their_model() -> None:
    # GIVEN a rows run's job and a prepared run's batch job
    rows_job = JobSpec(index=0, input_key="k", first_row=0, record_count=100, size_bytes=1)
    prepared_job = JobSpec(index=0, input_key="k", first_row=0, record_count=100, size_bytes=1, model="m")
    # WHEN they are written to the manifest THEN the rows run's has no new keys, the prepared run's has both
    assert "model" not in rows_job.model_dump() and "on_demand" not in rows_job.model_dump(mode="json")
    assert (prepared_job.model_dump()["model"], prepared_job.model_dump()["on_demand"]) == ("m", False)
    # AND both read back as they were
    assert JobSpec.model_validate(rows_job.model_dump()) == rows_job
    assert JobSpec.model_validate(prepared_job.model_dump()) == prepared_job
