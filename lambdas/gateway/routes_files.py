"""OpenAI's Files API for the Batch API: ``POST /v1/files``, ``GET /v1/files``, ``GET /v1/files/{id}``,
``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}`` over ``lambdas.gateway.batch_store``.

Uploads are multipart (``file``, ``purpose``: ``batch`` only), JSONL, read within ``max_upload_bytes`` and
``body_timeout`` (``lambdas.gateway.bodies``, as every route's body); a larger input goes to the batch bucket and is
named by its ``s3://`` URI at batch creation. A key sees, downloads and deletes only its own files: another key's
file is a 404, as a missing one. Downloads stream from S3.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, create_form_parser

from lambdas.gateway.batch_lines import LineSplitter
from lambdas.gateway.batch_store import UPLOAD_PURPOSES, BatchStore, FileInfo
from lambdas.gateway.bodies import UNAUTHORIZED, bearer, key_matches, read_body
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.errors import USER_CAUSED, GatewayError
from lambdas.gateway.key_guard import current_caller

MAX_LIST = 10_000  # OpenAI's largest page of files


def key_owner(request: Request, keys: Mapping[str, str]) -> str | None:
    """The name files and batches are owned by: ``team:<name>`` for a team key, ``key:<ref>`` for a Secrets Manager
    key (its reference in the secret); None for no valid key."""
    caller = current_caller()
    if caller is not None:
        return f"team:{caller.key.name}"
    given = bearer(request)
    for ref in sorted(keys):
        if key_matches(given, keys[ref]):
            return f"key:{ref}"
    return None


def _invalid(message: str, code: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code=code, param=param)


def not_found(file_id: str) -> GatewayError:
    shown = file_id[:80] if file_id.isprintable() else "(an invalid id)"
    return GatewayError(404, f"No such file: '{shown}'.", code="file_not_found", param="file_id")


def check_jsonl(content: bytes) -> None:
    """An upload is UTF-8 JSONL: one JSON object per non-blank line (the lines' requests are checked when a batch
    is created from the file)."""
    if not content.strip():
        raise _invalid("The file is empty: upload one JSON request per line.", "invalid_file", "file")
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("The file is not UTF-8 text: upload JSONL (UTF-8).", "invalid_file", "file") from None
    splitter = LineSplitter()
    for number, line in [*splitter.feed(content), *splitter.end()]:
        try:
            parsed = json.loads(line)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            raise _invalid(
                f"Line {number} of the file is not a JSON object: a batch file holds one JSON request per line "
                "(JSONL).",
                "invalid_file",
                "file",
            )


async def read_upload(request: Request, settings: GatewaySettings) -> tuple[str, str, bytes]:
    """(purpose, filename, content) of a multipart upload, read within the upload limit and the body timeout."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _invalid(
            "POST /v1/files takes multipart/form-data with the fields 'file' and 'purpose'.", "invalid_content_type"
        )
    try:
        body = await read_body(request, settings.max_upload_bytes, settings.body_timeout)
    except GatewayError as error:
        if error.status != 413:
            raise
        raise GatewayError(
            413,
            f"The upload is over {settings.max_upload_bytes:,} bytes, the most one request through the API takes. "
            "Put a larger file in the batch bucket and create the batch with 'input_file_id' = "
            "'s3://<batch bucket>/<key>'.",
            code="file_too_large",
            param="file",
        ) from None
    fields: dict[str, bytes] = {}
    files: list[File] = []

    def on_field(field: Field) -> None:
        if field.field_name is not None:
            fields[field.field_name.decode("latin-1")] = field.value or b""

    def on_file(file: File) -> None:
        if file.field_name == b"file":
            files.append(file)

    config = {"MAX_MEMORY_FILE_SIZE": settings.max_upload_bytes + 1}  # in memory: the body is bounded already
    try:
        parser = create_form_parser({"Content-Type": content_type.encode("latin-1")}, on_field, on_file, config)
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as error:
        raise _invalid(f"The multipart body cannot be read ({error}).", "invalid_multipart") from None
    purpose = fields.get("purpose", b"").decode("utf-8", "replace")
    if not purpose:
        raise _invalid("'purpose' is missing: send purpose=batch.", "missing_purpose", "purpose")
    if purpose not in UPLOAD_PURPOSES:
        raise _invalid(
            f"'purpose' = {purpose[:40]!r} is not accepted: the gateway takes files for the Batch API only; send "
            f"purpose={UPLOAD_PURPOSES[0]}.",
            "invalid_purpose",
            "purpose",
        )
    if not files:
        raise _invalid("'file' is missing: send the JSONL file as the multipart field 'file'.", "missing_file", "file")
    file = files[0]
    file.file_object.seek(0)
    content = file.file_object.read()
    check_jsonl(content)
    filename = (file.file_name or b"").decode("utf-8", "replace") or "upload.jsonl"
    return purpose, filename[:255], content


def files_router(
    settings: GatewaySettings,
    store: BatchStore,
    authenticated: Callable[[Request], bool],
    keys: Mapping[str, str],
) -> APIRouter:
    """The Files routes, with the app's settings, the store, and its key check."""
    router = APIRouter()

    def owner_of(request: Request) -> str:
        owner = key_owner(request, keys) if authenticated(request) else None
        if owner is None:
            raise GatewayError(401, UNAUTHORIZED, openai_type="authentication_error")
        return owner

    async def owned(request: Request, file_id: str) -> FileInfo:
        owner = owner_of(request)
        info = await store.get_file(file_id, owner)
        if info is None:
            raise not_found(file_id)
        return info

    @router.post("/v1/files", response_model=None)
    async def upload(request: Request) -> JSONResponse:
        owner = owner_of(request)
        store.bucket  # noqa: B018 - a 503 before the body is read when the bucket is not configured
        purpose, filename, content = await read_upload(request, settings)
        info = await store.put_file(owner=owner, filename=filename, purpose=purpose, body=content)
        return JSONResponse(info.openai())

    @router.get("/v1/files", response_model=None)
    async def list_files(
        request: Request,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = Query(default=MAX_LIST, ge=1, le=MAX_LIST),
    ) -> JSONResponse:
        owner = owner_of(request)
        found, more = await store.list_files(owner, purpose=purpose, after=after, limit=limit)
        data: list[dict[str, Any]] = [info.openai() for info in found]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    @router.get("/v1/files/{file_id}", response_model=None)
    async def retrieve(request: Request, file_id: str) -> JSONResponse:
        return JSONResponse((await owned(request, file_id)).openai())

    @router.get("/v1/files/{file_id}/content", response_model=None)
    async def content(request: Request, file_id: str) -> StreamingResponse:
        info = await owned(request, file_id)
        headers = {"Content-Length": str(info.bytes), "Content-Disposition": f'attachment; filename="{info.id}.jsonl"'}
        return StreamingResponse(store.content(info), media_type="application/jsonl", headers=headers)

    @router.delete("/v1/files/{file_id}", response_model=None)
    async def delete(request: Request, file_id: str) -> JSONResponse:
        info = await owned(request, file_id)
        await store.delete_file(info)
        return JSONResponse({"id": info.id, "object": "file", "deleted": True})

    return router
