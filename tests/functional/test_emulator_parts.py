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

from local.emulator import standalone
from local.emulator.batch_io import JobFailure, answer_record, parse_record, shuffled
from local.emulator.families import RecordError, base_model_id, embed, family_for_model, invoke
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
        lines = [{"recordId": f"R{i:04d}", "modelInput": {"inputText": f"t{i}"}} for i in range(100)]
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
