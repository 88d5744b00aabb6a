"""The emulator's parts without HTTP (model families, shuffling, record parsing, wire helpers), and the standalone
server (moto S3 server + emulator) end to end."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lambdas.shared.model_families import (
    ADAPTERS,
    INVOCATION_TYPE_FAMILIES,
    MODEL_ID_PREFIXES,
    InferenceSettings,
    ModelAdapter,
    adapter_for_family,
    family_of,
)
from local.emulator import standalone
from local.emulator.batch_io import JobFailure, answer_record, parse_record, shuffled
from local.emulator.families import FAMILIES, RecordError, base_model_id, embed, family_for_model, invoke
from local.emulator.protocol import compile_request_uri, serialize_output, service_model

CLAUDE_INPUT = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 10,
    "system": "be brief",
    "messages": [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": [{"type": "text", "text": "an answer"}]},
        {"role": "user", "content": [{"type": "text", "text": "  exact   spacing\n kept "}]},
    ],
}


@pytest.mark.parametrize(
    ("model_id", "base"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
        ("us.anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v2:0"),
        ("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
    ],
)
def test_base_model_id_strips_arns_and_profile_prefixes(model_id: str, base: str) -> None:
    # GIVEN a model id in any accepted form WHEN reduced THEN the foundation-model id remains
    assert base_model_id(model_id) == base


def test_family_comes_from_the_invocation_type_then_the_model_id() -> None:
    # GIVEN ids of known, unknown and Converse-type jobs WHEN resolved THEN the registries decide
    assert family_for_model("global.anthropic.claude-sonnet-4-20250514-v1:0") == "anthropic-messages"
    assert family_for_model("meta.llama3-1-8b-instruct-v1:0") == "llama"
    assert family_for_model("meta.llama3-1-8b-instruct-v1:0", "Converse") == "converse"
    assert family_for_model("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc") is None


def test_anthropic_echoes_the_last_user_text_exactly() -> None:
    # GIVEN a conversation WHEN answered THEN the text is the last user text as sent, with token estimates
    result = invoke("anthropic-messages", "anthropic.claude-3-haiku-20240307-v1:0", CLAUDE_INPUT)
    assert result.output["content"] == [{"type": "text", "text": "  exact   spacing\n kept "}]
    assert result.output["usage"] == {"input_tokens": 9, "output_tokens": 3}
    assert (result.input_tokens, result.output_tokens) == (9, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "required key [max_tokens] not found"),
        ({"max_tokens": "10"}, "#/max_tokens: expected type: Integer"),
        ({"messages": []}, "expected minimum item count: 1"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "robot is not a valid enum value"),
        ({"prompt": "x"}, "extraneous key [prompt] is not permitted"),
    ],
)
def test_anthropic_input_errors_read_like_the_service(change: dict[str, Any], message: str) -> None:
    # GIVEN a Claude input with one mistake
    model_input = {k: v for k, v in (CLAUDE_INPUT | change).items() if v is not None}
    # WHEN answered THEN a RecordError explains it in the service's words
    with pytest.raises(RecordError, match="Malformed input request") as error:
        invoke("anthropic-messages", "anthropic.claude-3-haiku-20240307-v1:0", model_input)
    assert message in str(error.value)


def test_nova_llama_and_shape_detection() -> None:
    # GIVEN inputs of other families WHEN answered THEN each echoes in its own format
    nova = invoke(
        "nova-messages", "amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": [{"text": "a b"}]}]}
    )
    assert nova.output["output"]["message"]["content"] == [{"text": "a b"}] and "metrics" not in nova.output
    llama = invoke("llama", "meta.llama3-1-8b-instruct-v1:0", {"prompt": "say this", "max_gen_len": 5})
    assert llama.output["generation"] == "say this" and llama.output["generation_token_count"] == 2
    # AND with no family from the model id, the input's telltale key decides
    custom = "arn:aws:bedrock:us-east-1:123456789012:custom-model/m/abcdefabcdef"
    assert "embedding" in invoke(None, custom, {"inputText": "hello"}).output
    assert "outputs" in invoke(None, custom, {"prompt": "<s>[INST] x [/INST]", "max_tokens": 5}).output
    assert "choices" in invoke(None, custom, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}).output
    assert "embeddings" in invoke(None, custom, {"texts": ["x"], "input_type": "clustering"}).output
    with pytest.raises(RecordError):
        invoke(None, custom, {"unknown": 1})


@pytest.mark.parametrize(
    "model_input", [{"inputText": ""}, {"inputText": "x", "dimensions": 100}, {"inputText": "x", "normalize": "yes"}]
)
def test_titan_rejects_bad_parameters(model_input: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        invoke("titan-embed-text-v2", "amazon.titan-embed-text-v2:0", model_input)


def test_embeddings_are_deterministic_and_normalised_on_request() -> None:
    # GIVEN the same text twice WHEN embedded THEN the vectors are equal; normalize=False skips the unit norm
    assert embed("same", 256) == embed("same", 256) != embed("other", 256)
    assert abs(sum(x * x for x in embed("same", 512)) - 1.0) < 1e-9
    assert abs(sum(x * x for x in embed("same", 512, normalize=False)) - 1.0) > 1e-3


# ---------------------------------------------------------------- every family: adapter -> emulator -> adapter

ECHO = '  exact   spacing\n kept: ✓ {braces} "quotes" \\ [INST] '
SYSTEM = InferenceSettings(max_tokens=64, temperature=0.1, system="answer briefly")
# (model id, invocation type, settings, vector length or None for text)
ROUND_TRIPS = [
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", "InvokeModel", SYSTEM, None),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "InvokeModel", SYSTEM, None),
    ("amazon.nova-micro-v1:0", "InvokeModel", InferenceSettings(top_k=20, system="answer briefly"), None),
    ("us.amazon.nova-premier-v1:0", "InvokeModel", SYSTEM, None),
    ("meta.llama3-3-70b-instruct-v1:0", "InvokeModel", SYSTEM, None),
    ("meta.llama4-maverick-17b-instruct-v1:0", "InvokeModel", SYSTEM, None),
    ("mistral.mistral-small-2402-v1:0", "InvokeModel", InferenceSettings(top_k=10), None),  # system joins the text
    ("mistral.mistral-large-2407-v1:0", "InvokeModel", SYSTEM, None),
    ("meta.llama3-1-8b-instruct-v1:0", "Converse", SYSTEM, None),
    ("amazon.nova-lite-v1:0", "Converse", SYSTEM, None),
    ("amazon.titan-embed-text-v2:0", "InvokeModel", InferenceSettings(dimensions=512), 512),
    ("amazon.titan-embed-text-v2:0", "InvokeModel", InferenceSettings(), 1024),
    ("amazon.titan-embed-image-v1", "InvokeModel", InferenceSettings(dimensions=384), 384),
    ("cohere.embed-multilingual-v3", "InvokeModel", InferenceSettings(input_type="search_query"), 1024),
    ("amazon.nova-2-multimodal-embeddings-v1:0", "InvokeModel", InferenceSettings(dimensions=256), 256),
    ("us.amazon.nova-2-multimodal-embeddings-v1:0", "InvokeModel", InferenceSettings(), 3072),
]


def records_adapter(model_id: str, invocation_type: str) -> ModelAdapter:
    """The adapter that formats the model's records (Cohere Embed is no batch model, so not through ``resolve``)."""
    return adapter_for_family(INVOCATION_TYPE_FAMILIES[invocation_type] or family_of(model_id))


def test_round_trips_cover_every_family() -> None:
    covered = {records_adapter(model_id, kind).family for model_id, kind, _, _ in ROUND_TRIPS}
    assert covered == set(ADAPTERS)


@pytest.mark.parametrize(("model_id", "invocation_type", "settings", "length"), ROUND_TRIPS)
def test_each_family_round_trips_through_the_emulator(
    model_id: str, invocation_type: str, settings: InferenceSettings, length: int | None
) -> None:
    # GIVEN the project's adapter for the model and a record built by it
    adapter = records_adapter(model_id, invocation_type)
    adapter.check_settings(settings)
    model_input = adapter.build_model_input(ECHO, settings)
    # WHEN the emulator answers it as the job would (family from the invocation type, else the model id)
    result = invoke(family_for_model(model_id, invocation_type), model_id, model_input)
    parsed = adapter.parse_model_output(result.output)
    # THEN text families get the user text back exactly, embeddings a unit vector of the requested length
    if length is None:
        assert parsed == ECHO and result.output_tokens == len(ECHO.split())
    else:
        assert len(parsed) == length and abs(sum(x * x for x in parsed) - 1.0) < 1e-9
        assert parsed == adapter.parse_model_output(invoke(None, model_id, model_input).output)  # deterministic


def test_the_emulator_knows_every_model_the_project_supports() -> None:
    for prefix in MODEL_ID_PREFIXES:
        assert family_for_model(f"us.{prefix}-v1:0") is not None, prefix


ANTHROPIC_INPUT: dict[str, Any] = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "x"}],
}
NOVA_INPUT: dict[str, Any] = {
    "schemaVersion": "messages-v1",
    "messages": [{"role": "user", "content": [{"text": "x"}]}],
}
LLAMA_INPUT: dict[str, Any] = {"prompt": "x", "max_gen_len": 5}
MISTRAL_CHAT_INPUT: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
TITAN_INPUT: dict[str, Any] = {"inputText": "x"}
COHERE_INPUT: dict[str, Any] = {"texts": ["x"], "input_type": "search_document"}
# For each emulated family, inputs of other families: each is a record-level 400, as the real service answers.
WRONG_SHAPES: dict[str, list[dict[str, Any]]] = {
    "anthropic-messages": [NOVA_INPUT, LLAMA_INPUT, TITAN_INPUT],
    "nova-messages": [ANTHROPIC_INPUT, MISTRAL_CHAT_INPUT, LLAMA_INPUT],
    "llama": [NOVA_INPUT, {"prompt": "x", "max_tokens": 5}, COHERE_INPUT],
    "mistral-text": [LLAMA_INPUT, MISTRAL_CHAT_INPUT],
    "mistral-chat": [NOVA_INPUT, ANTHROPIC_INPUT, {"prompt": "x"}],
    "titan-embed-text-v2": [COHERE_INPUT, {"inputText": "x", "embeddingConfig": {"outputEmbeddingLength": 256}}],
    "titan-embed-image-v1": [{"inputText": "x", "dimensions": 256}, COHERE_INPUT, {"embeddingConfig": {}}],
    "cohere-embed": [TITAN_INPUT, {"texts": ["x"]}, {"texts": "x", "input_type": "search_document"}],
    "converse": [NOVA_INPUT, ANTHROPIC_INPUT, MISTRAL_CHAT_INPUT],
    "nova-multimodal-embed": [TITAN_INPUT, COHERE_INPUT, {"taskType": "SINGLE_EMBEDDING"}],
}


def test_wrong_shapes_cover_every_emulated_family() -> None:
    assert set(WRONG_SHAPES) == set(FAMILIES)


@pytest.mark.parametrize(("family", "model_input"), [(f, i) for f, inputs in WRONG_SHAPES.items() for i in inputs])
def test_a_model_input_of_another_family_is_a_record_level_400(family: str, model_input: dict[str, Any]) -> None:
    # GIVEN a record whose modelInput fits another family WHEN the emulator answers it for this family
    line, tally = answer_record(
        {"recordId": "R1", "modelInput": model_input}, lambda r: invoke(family, "m", r["modelInput"])
    )
    # THEN the record fails alone, with a 400 in the service's words
    assert line["error"]["errorCode"] == 400 and "modelOutput" not in line and tally.error == 1


@pytest.mark.parametrize(
    ("family", "model_input", "message"),
    [
        ("converse", {**NOVA_INPUT, "schemaVersion": None, "toolConfig": {"tools": []}}, "tool calling"),
        ("converse", {"messages": NOVA_INPUT["messages"], "inferenceConfig": {"topK": 5}}, "extraneous key [topK]"),
        (
            "converse",
            {"messages": NOVA_INPUT["messages"], "inferenceConfig": {"max_new_tokens": 5}},
            "[max_new_tokens]",
        ),
        ("converse", {"messages": [{"role": "user", "content": "x"}]}, "expected type: JSONArray"),
        ("nova-messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, "key [type]"),
        ("nova-messages", {**NOVA_INPUT, "schemaVersion": "messages-v2"}, "messages-v2 is not a valid enum"),
        ("nova-messages", {**NOVA_INPUT, "inferenceConfig": {"maxTokens": "5"}}, "expected type: Integer"),
        ("llama", {"prompt": "x", "max_gen_len": 0}, "0 is not greater or equal to 1"),
        ("mistral-chat", {"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "expected type: String"),
        ("titan-embed-image-v1", {"inputText": "x", "embeddingConfig": {"outputEmbeddingLength": 512}}, "512 is not"),
        ("cohere-embed", {"texts": ["x"] * 97, "input_type": "clustering"}, "maximum item count: 96"),
        ("cohere-embed", {"texts": ["x" * 2049], "input_type": "clustering"}, "maxLength: 2048"),
        ("cohere-embed", {**COHERE_INPUT, "embedding_types": ["float16"]}, "float16 is not a valid enum"),
    ],
)
def test_family_checks_read_like_the_service(family: str, model_input: dict[str, Any], message: str) -> None:
    model_input = {key: value for key, value in model_input.items() if value is not None}
    with pytest.raises(RecordError) as error:
        invoke(family, "m", model_input)
    assert message in str(error.value)


def test_family_answers_have_the_real_shapes() -> None:
    # GIVEN one record per family WHEN answered THEN each output has the keys the real model returns
    nova = invoke("nova-messages", "amazon.nova-lite-v1:0", {**NOVA_INPUT, "inferenceConfig": {"max_new_tokens": 5}})
    assert set(nova.output) == {"output", "stopReason", "usage"}  # the first docs' key names are accepted too
    converse = invoke("converse", "m", {"messages": NOVA_INPUT["messages"], "inferenceConfig": {"maxTokens": 5}})
    assert set(converse.output) == {"output", "stopReason", "usage", "metrics"}
    llama = invoke("llama", "meta.llama3-1-8b-instruct-v1:0", LLAMA_INPUT)
    assert set(llama.output) == {"generation", "prompt_token_count", "generation_token_count", "stop_reason"}
    mistral = invoke("mistral-text", "m", {"prompt": "<s>[INST] x [/INST]"})
    assert mistral.output == {"outputs": [{"text": "x", "stop_reason": "stop"}]}
    chat = invoke(
        "mistral-chat", "m", {"messages": [{"role": "system", "content": "s"}, *MISTRAL_CHAT_INPUT["messages"]]}
    )
    assert chat.output["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "x"}, "stop_reason": "stop"}
    ]
    titan = invoke("titan-embed-text-v2", "m", TITAN_INPUT).output
    assert set(titan) == {"embedding", "inputTextTokenCount", "embeddingsByType"}
    cohere = invoke("cohere-embed", "m", COHERE_INPUT).output
    assert cohere["response_type"] == "embeddings_floats" and len(cohere["embeddings"]) == 1
    # AND Cohere with embedding types answers by type, float equal to the plain answer
    typed = invoke("cohere-embed", "m", {**COHERE_INPUT, "embedding_types": ["float", "int8", "binary"]}).output
    assert typed["response_type"] == "embeddings_by_type" and typed["embeddings"]["float"] == cohere["embeddings"]
    assert len(typed["embeddings"]["int8"][0]) == 1024 and len(typed["embeddings"]["binary"][0]) == 128


def test_shuffle_keeps_every_item_with_a_bounded_buffer() -> None:
    # GIVEN 1000 items and a buffer of 64 WHEN shuffled THEN all items come out once, in another order, reproducibly
    items = list(range(1000))
    first = list(shuffled(items, random.Random("seed"), buffer_size=64))
    assert sorted(first) == items and first != items
    assert first == list(shuffled(items, random.Random("seed"), buffer_size=64))


def test_records_without_an_id_get_one_and_errors_become_error_lines() -> None:
    # GIVEN a line without recordId WHEN parsed THEN it gets the default id; blank lines are skipped
    record = parse_record(b'{"modelInput": {"inputText": "x"}}', "Line 1", "GENERATED01")
    assert record == {"recordId": "GENERATED01", "modelInput": {"inputText": "x"}}
    assert parse_record(b"   ", "Line 2", "X") is None
    with pytest.raises(JobFailure, match="recordId"):
        parse_record(b'{"recordId": 7, "modelInput": {}}', "Line 3", "X")
    # AND a record the model refuses becomes an error line that counts as an error

    def refuse(_: dict[str, Any]) -> Any:
        raise RecordError("bad request")

    line, tally = answer_record(record, refuse)
    assert line["error"] == {"errorCode": 400, "errorMessage": "bad request"} and tally.error == 1


def test_request_uris_compile_to_label_regexes() -> None:
    # GIVEN a template with a label WHEN compiled THEN a label matches one encoded segment only
    pattern, labels = compile_request_uri("/model-invocation-job/{jobIdentifier}/stop")
    assert labels == ("jobIdentifier",)
    assert pattern.match("/model-invocation-job/arn%3Aaws%3Abedrock%2Fx/stop")
    assert not pattern.match("/model-invocation-job/a/b/stop")


def test_responses_keep_only_members_of_the_installed_model() -> None:
    # GIVEN a handler result with a member the model lacks, a None and a datetime
    operation = service_model("bedrock").operation_model("GetModelInvocationJob")
    result = {"jobArn": "a", "notInModel": 1, "message": None, "submitTime": datetime(2025, 1, 1, tzinfo=UTC)}
    # WHEN serialised THEN only declared, non-null members remain, timestamps in ISO 8601 with milliseconds
    body = serialize_output(operation, result).body
    assert isinstance(body, bytes)
    assert json.loads(body) == {"jobArn": "a", "submitTime": "2025-01-01T00:00:00.000Z"}


def test_standalone_emulator_with_a_moto_s3_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the standalone emulator with a moto S3 server on free ports, and jobs' status steps of 0 s
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with standalone(port=0, s3_port=0, step_seconds=0) as emulator:
        s3_url = emulator.state.s3.meta.endpoint_url
        s3 = boto3.client(
            "s3", endpoint_url=s3_url, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
        )
        bedrock = boto3.client("bedrock", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
        s3.create_bucket(Bucket="standalone")
        lines = [{"recordId": f"R{i:010d}", "modelInput": {"inputText": f"t{i}"}} for i in range(100)]
        s3.put_object(Bucket="standalone", Key="in/x.jsonl", Body="\n".join(json.dumps(x) for x in lines).encode())
        # WHEN a job runs through the HTTP APIs of both
        arn = bedrock.create_model_invocation_job(
            jobName="standalone",
            roleArn="arn:aws:iam::123456789012:role/r",
            modelId="amazon.titan-embed-text-v2:0",
            inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://standalone/in/x.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://standalone/out"}},
        )["jobArn"]
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        # THEN it completes and its output is in the moto server's S3
        assert job["status"] == "Completed" and job["successRecordCount"] == 100
        listed = s3.list_objects_v2(Bucket="standalone", Prefix=f"out/{arn.rsplit('/', 1)[-1]}/")["Contents"]
        assert sorted(item["Key"].rsplit("/", 1)[-1] for item in listed) == ["manifest.json.out", "x.jsonl.out"]
