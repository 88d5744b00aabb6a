"""OpenAI's Batch API over the batch orchestrator: ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches``
(``after``, ``limit``), ``POST /v1/batches/{id}/cancel``. The routes parse, authenticate and resolve the input file;
``lambdas.gateway.batches`` does the work.

Keys: any key of the gateway (team keys through the KeyGuard middleware, or a Secrets Manager key); a batch belongs to
the key that created it (``owner``: ``team:<name>`` or ``key:<ref>``, as its files), and another key's batch answers
404. Each line's bot must be one the key may use (a team key's bot list; a Secrets Manager key: the
bots of that key). Without the batch stack (no bucket or state machine configured) every route answers 501 saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lambdas.gateway.batch_executions import BatchExecutions
from lambdas.gateway.batch_lines import BotLookup
from lambdas.gateway.batch_records import INPUTS
from lambdas.gateway.batch_store import BatchStore
from lambdas.gateway.batches import Batches, BatchRequest, endpoint_problem
from lambdas.gateway.bodies import UNAUTHORIZED, bearer, key_matches, read_json
from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.error_shapes import error_response, invalid_body
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.factory import BotHandler
from lambdas.gateway.key_guard import current_caller
from lambdas.gateway.routes_files import key_owner

# OpenAI's metadata limits (openai.types.shared.Metadata): at most 16 pairs, keys up to 64 characters, values up to 512
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
NOT_DEPLOYED = "batch_api_not_deployed"


class CreateBatch(BaseModel):
    """``POST /v1/batches``: any other field is refused by name (none is ignored in silence)."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=2048)
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _openai_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > METADATA_PAIRS:
            raise ValueError(f"has {len(value)} pairs: at most {METADATA_PAIRS}")
        for key, text in value.items():
            if len(key) > METADATA_KEY_CHARS:
                raise ValueError(f"key {key[:80]!r} is over {METADATA_KEY_CHARS} characters")
            if len(text) > METADATA_VALUE_CHARS:
                raise ValueError(f"the value of {key!r} is over {METADATA_VALUE_CHARS} characters")
        return value


def batches_router(
    bots: Mapping[str, BotHandler],
    settings: GatewaySettings,
    store: BatchStore,
    clients: AwsClients,
    keys: Mapping[str, str],
) -> APIRouter:
    """The routes, with the app's bots, settings, file store, AWS clients and Secrets Manager keys (``keys``: ref ->
    key, filled at start)."""
    router = APIRouter()

    def owner_of(request: Request) -> str:
        """The name the key's files and batches are owned by (``routes_files.key_owner``), or the 401."""
        owner = key_owner(request, keys)
        if owner is None:
            raise GatewayError(401, UNAUTHORIZED, openai_type="authentication_error")
        return owner

    def lookup(request: Request) -> BotLookup:
        caller = current_caller()
        configs = {name: bot.config for name, bot in bots.items()}
        if caller is not None:
            return BotLookup(configs, caller.key.may_use)
        sent = bearer(request)

        def may_use(name: str) -> bool:
            bot = bots.get(name)
            return bot is not None and key_matches(sent, keys.get(bot.config.access_key_ref))

        return BotLookup(configs, may_use)

    async def service() -> Batches:
        if not settings.batch_bucket or not settings.batch_state_machine_arn:
            raise GatewayError(
                501,
                "The Batch API is not deployed with this gateway: deploy the gateway stack with the batch stack "
                "(python app.py / cdk deploy --all does; it sets GATEWAY_BATCH_BUCKET and "
                "GATEWAY_BATCH_STATE_MACHINE_ARN), or set both variables to a batch stack's bucket and state machine.",
                openai_type="not_implemented",
                code=NOT_DEPLOYED,
            )
        region = settings.batch_state_machine_arn.split(":")[3]
        states = await clients.client("stepfunctions", region)
        return Batches(
            s3=await store.s3(),
            bucket=settings.batch_bucket,
            executions=BatchExecutions(states, settings.batch_state_machine_arn),
            runtime=clients.bedrock_runtime,
            attachment_max_bytes=settings.attachment_max_bytes,
        )

    async def input_key(reference: str, owner: str, bucket: str) -> str:
        """The object key of the batch's input: a file of the key's (purpose ``batch``), or an s3:// URI under
        ``openai/inputs/<key name>/`` of the batch bucket."""
        if reference.startswith("s3://"):
            allowed = f"s3://{bucket}/{INPUTS}{owner}/"
            if not reference.startswith(allowed) or len(reference) == len(allowed) or ".." in reference:
                raise GatewayError(
                    400,
                    f"'input_file_id' {reference[:200]!r} is not an input of this key: put files too large for "
                    f"POST /v1/files under {allowed} (the batch bucket, this key's folder) and pass that s3:// URI.",
                    code="invalid_input_file",
                    param="input_file_id",
                )
            return reference[len(f"s3://{bucket}/") :]
        info = await store.get_file(reference, owner)
        if info is None:
            raise GatewayError(
                404, f"No file found with id {reference[:100]!r}.", code="file_not_found", param="input_file_id"
            )
        if info.purpose != "batch":
            raise GatewayError(
                400,
                f"File {reference!r} has purpose {info.purpose!r}: a batch's input is a file uploaded with purpose "
                "'batch'.",
                code="invalid_input_file",
                param="input_file_id",
            )
        return info.key

    def answer(error: GatewayError | ValidationError) -> JSONResponse:
        if isinstance(error, ValidationError):
            return error_response(invalid_body(error.errors()), openai=True)
        return error_response(error, openai=True)

    @router.post("/v1/batches", response_model=None)
    async def create(request: Request) -> JSONResponse:
        try:
            owner = owner_of(request)
            batches = await service()
            body = CreateBatch.model_validate(await read_json(request, settings.max_body_bytes, settings.body_timeout))
            problem = endpoint_problem(body.endpoint)
            if problem:
                raise GatewayError(400, problem, code="invalid_endpoint", param="endpoint")
            key = await input_key(body.input_file_id, owner, batches.bucket)
            batch_request = BatchRequest(body.input_file_id, key, body.endpoint, body.completion_window, body.metadata)
            created = await batches.create(batch_request, owner=owner, bots=lookup(request))
        except (GatewayError, ValidationError) as error:
            return answer(error)
        return JSONResponse(created)

    @router.get("/v1/batches", response_model=None)
    async def list_batches(
        request: Request,
        after: str | None = Query(default=None, max_length=200),
        limit: int = Query(default=20, ge=1, le=100),
    ) -> JSONResponse:
        try:
            owner = owner_of(request)
            page: dict[str, Any] = await (await service()).list(owner, after=after, limit=limit)
        except GatewayError as error:
            return answer(error)
        return JSONResponse(page)

    @router.get("/v1/batches/{batch_id}", response_model=None)
    async def retrieve(batch_id: str, request: Request) -> JSONResponse:
        try:
            owner = owner_of(request)
            batch = await (await service()).retrieve(batch_id, owner)
        except GatewayError as error:
            return answer(error)
        return JSONResponse(batch)

    @router.post("/v1/batches/{batch_id}/cancel", response_model=None)
    async def cancel(batch_id: str, request: Request) -> JSONResponse:
        try:
            owner = owner_of(request)
            batch = await (await service()).cancel(batch_id, owner)
        except GatewayError as error:
            return answer(error)
        return JSONResponse(batch)

    return router
