"""The Files API (``lambdas.gateway.routes_files``) with the openai SDK over HTTP, against a moto S3 server holding the
batch bucket: upload, list, retrieve, download (streamed) and delete, each key seeing only its own files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import httpx
import openai
import pytest
from fastapi import FastAPI
from openai.types import FileDeleted, FileObject

from lambdas.gateway.app import create_app
from lambdas.gateway.batch_store import BatchStore, batch_file_id
from lambdas.gateway.config import GatewaySettings
from tests.functional.gateway.conftest import KEY, TEAM_KEY, moto_server, openai_client

pytestmark = pytest.mark.anyio
BUCKET = "batch-data"
LINES = b"".join(
    json.dumps(
        {
            "custom_id": f"req-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "claude-3-haiku", "messages": [{"role": "user", "content": f"question {n}"}]},
        }
    ).encode()
    + b"\n"
    for n in range(3)
)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    yield from moto_server(BUCKET)


@pytest.fixture
async def files_app(
    settings: GatewaySettings, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    application = create_app(replace(settings, batch_bucket=BUCKET, max_upload_bytes=4096))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def sdk(files_app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(files_app, KEY) as client:
        yield client


@pytest.fixture
async def other_sdk(files_app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(files_app, TEAM_KEY) as client:
        yield client


def http(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_upload_retrieve_download_and_delete_with_the_sdk(files_app: FastAPI, sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a JSONL batch file uploaded with the SDK
    created = await sdk.files.create(file=("questions.jsonl", LINES), purpose="batch")
    # WHEN it is retrieved, downloaded and deleted
    retrieved = await sdk.files.retrieve(created.id)
    content = await sdk.files.content(created.id)
    async with http(files_app) as client:
        raw = (await client.get(f"/v1/files/{created.id}", headers={"Authorization": f"Bearer {KEY}"})).json()
    deleted = await sdk.files.delete(created.id)
    # THEN the file object has OpenAI's fields, the bytes come back unchanged and the deletion has OpenAI's shape
    FileObject.model_validate(raw)
    assert created.id.startswith("file-") and created.object == "file"
    assert (retrieved.filename, retrieved.purpose, retrieved.bytes) == ("questions.jsonl", "batch", len(LINES))
    assert content.content == LINES
    FileDeleted.model_validate(deleted.model_dump())
    assert (deleted.id, deleted.deleted) == (created.id, True)
    # AND the deleted file is gone
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve(created.id)


async def test_another_keys_file_is_not_found_and_not_listed(
    sdk: openai.AsyncOpenAI, other_sdk: openai.AsyncOpenAI
) -> None:
    # GIVEN a file of one key
    mine = await sdk.files.create(file=("mine.jsonl", LINES), purpose="batch")
    # WHEN another key asks for it, its content, its deletion, and lists its own files
    # THEN each is a 404, as for a file that does not exist, and the list does not show it
    with pytest.raises(openai.NotFoundError):
        await other_sdk.files.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        await other_sdk.files.content(mine.id)
    with pytest.raises(openai.NotFoundError):
        await other_sdk.files.delete(mine.id)
    theirs = [file.id async for file in other_sdk.files.list()]
    assert mine.id not in theirs
    # AND the owner still has it, listed newest first
    newer = await sdk.files.create(file=("newer.jsonl", LINES), purpose="batch")
    listed = [file.id async for file in sdk.files.list()]
    assert listed.index(newer.id) < listed.index(mine.id)


async def test_list_pages_with_after_and_limit(sdk: openai.AsyncOpenAI, files_app: FastAPI) -> None:
    # GIVEN three files of the key
    ids = [(await sdk.files.create(file=(f"f{n}.jsonl", LINES), purpose="batch")).id for n in range(3)]
    # WHEN it lists one file per page
    async with http(files_app) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        first = (await client.get("/v1/files", params={"limit": 1}, headers=auth)).json()
        second = (await client.get("/v1/files", params={"limit": 1, "after": first["last_id"]}, headers=auth)).json()
    # THEN the pages follow each other, newest first, with OpenAI's list fields
    assert first["object"] == "list" and first["has_more"] is True
    assert first["data"][0]["id"] == ids[2] and second["data"][0]["id"] == ids[1]


async def test_a_purpose_other_than_batch_is_refused_naming_batch(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN / WHEN a file uploaded for fine-tuning
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.files.create(file=("train.jsonl", LINES), purpose="fine-tune")
    # THEN it is a 400 naming the purpose and the accepted value
    assert refused.value.code == "invalid_purpose" and "purpose=batch" in refused.value.message


async def test_a_file_that_is_not_jsonl_is_refused_naming_its_line(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN / WHEN a file whose second line is not a JSON object
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.files.create(file=("bad.jsonl", b'{"custom_id": "a"}\nnot json\n'), purpose="batch")
    # THEN the 400 names the line
    assert refused.value.code == "invalid_file" and "Line 2" in refused.value.message


async def test_an_upload_over_the_limit_is_413_pointing_at_s3_references(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN / WHEN a file over the upload limit (4,096 bytes here)
    big = LINES * 40
    with pytest.raises(openai.APIStatusError) as refused:
        await sdk.files.create(file=("big.jsonl", big), purpose="batch")
    # THEN it is a 413 saying how to pass a larger file
    assert refused.value.status_code == 413
    assert "s3://" in refused.value.message


async def test_a_body_that_is_not_multipart_is_refused(files_app: FastAPI) -> None:
    # GIVEN / WHEN a JSON body sent to the upload route
    async with http(files_app) as client:
        answer = await client.post("/v1/files", json={"purpose": "batch"}, headers={"Authorization": f"Bearer {KEY}"})
    # THEN it is a 400 naming the content type it takes
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_content_type"


async def test_without_a_key_the_files_routes_answer_401(files_app: FastAPI) -> None:
    # GIVEN / WHEN the list asked for without a key
    async with http(files_app) as client:
        answer = await client.get("/v1/files")
    # THEN it is OpenAI's 401
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"


async def test_without_a_batch_bucket_the_files_routes_answer_503(settings: GatewaySettings) -> None:
    # GIVEN a gateway deployed without the batch bucket
    application = create_app(settings)
    async with application.router.lifespan_context(application), http(application) as client:
        # WHEN a file is uploaded
        answer = await client.post(
            "/v1/files",
            files={"file": ("a.jsonl", LINES)},
            data={"purpose": "batch"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    # THEN the 503 says what the Batch API needs
    assert answer.status_code == 503
    assert "the batch stack's bucket" in answer.json()["error"]["message"]


async def test_a_batch_output_file_is_served_to_its_owner_only(
    files_app: FastAPI, sdk: openai.AsyncOpenAI, other_sdk: openai.AsyncOpenAI
) -> None:
    # GIVEN a batch's output file written by the store for the default key (key ref "default")
    store: BatchStore = files_app.state.batch_store
    written = await store.put_batch_file(batch_id="batch_abc123", kind="output", owner="key:default", body=LINES)
    # WHEN its owner and another key download it
    content = await sdk.files.content(batch_file_id("batch_abc123", "output"))
    # THEN the owner gets its bytes, with purpose batch_output; the other key a 404
    assert written.id == "file-batch_abc123-output" and content.content == LINES
    assert (await sdk.files.retrieve(written.id)).purpose == "batch_output"
    with pytest.raises(openai.NotFoundError):
        await other_sdk.files.content(written.id)


async def test_an_upload_that_does_not_arrive_in_time_is_408(
    settings: GatewaySettings, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a gateway whose body timeout is short, and an upload that sends its first part and then stalls
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    application = create_app(replace(settings, batch_bucket=BUCKET, body_timeout=0.05))

    async def stalled() -> AsyncIterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        await asyncio.Event().wait()  # never sends the rest

    async with application.router.lifespan_context(application), http(application) as client:
        # WHEN it is posted
        answer = await client.post(
            "/v1/files",
            content=stalled(),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "multipart/form-data; boundary=x"},
        )
    # THEN the body guard every route has answers 408
    assert answer.status_code == 408 and answer.json()["error"]["code"] == "request_timeout"
