"""Errors the app answers itself, in the shape of the API the path belongs to.

A route answers its own errors in its API's shape. What no route handles is answered here: an unknown path (404),
a method the path does not take (405, with ``Allow``), a request FastAPI's own validation refused (400, as OpenAI
answers; never FastAPI's 422 ``{"detail": ...}``) and an unexpected exception (500). The shape is chosen by path
prefix through ``ERROR_SHAPES`` (first match wins; OpenAI's ``{"error": {message, type, param, code}}`` otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from lambdas.gateway.errors import GatewayError, internal_error
from lambdas.shared.observability import logger

Shape = Callable[[GatewayError], dict[str, Any]]


def openai_shape(error: GatewayError) -> dict[str, Any]:
    return error.openai_body()


def poe_shape(error: GatewayError) -> dict[str, Any]:
    return {"error": error.message, "code": error.code}


def anthropic_error_type(status: int) -> tuple[int, str]:
    """(HTTP status, Anthropic error type) for a gateway status (Anthropic's "Errors" page): 503 is
    ``overloaded_error`` 529, other 5xx ``api_error`` 500, 422 a 400, other 4xx keep their status."""
    if status == 503:
        return 529, "overloaded_error"
    if status >= 500:
        return 500, "api_error"
    known = {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
    }
    if status == 422:
        return 400, "invalid_request_error"
    return status, known.get(status, "invalid_request_error")


def anthropic_shape(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_error_type(error.status)[1], "message": error.message}}


# path prefix -> error body shape; the first prefix that matches wins, ``openai_shape`` otherwise
ERROR_SHAPES: tuple[tuple[str, Shape], ...] = (
    ("/v1/messages", anthropic_shape),  # the Anthropic Messages routes ({"type": "error", "error": {type, message}})
    ("/poe/", poe_shape),
    ("/admin/", poe_shape),  # the admin API answers the same flat shape: {"error": message, "code": code}
)


def shape_for(path: str) -> Shape:
    return next((shape for prefix, shape in ERROR_SHAPES if path.startswith(prefix)), openai_shape)


def shaped_response(path: str, error: GatewayError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        shape_for(path)(error), status_code=error.status, headers={**error.headers(), **(headers or {})}
    )


def field_path(location: Sequence[Any]) -> str | None:
    """A pydantic error location as a dotted field path (``messages.0.role``), without the leading ``body``."""
    parts = [str(part) for part in location if part != "body"]
    return ".".join(parts) or None


def invalid_body(errors: Sequence[Any]) -> GatewayError:
    """HTTP 400 naming the first offending field (``param``) and up to five problems."""
    problems = "; ".join(f"{field_path(item['loc']) or 'body'}: {item['msg']}" for item in errors[:5])
    first = field_path(errors[0]["loc"]) if errors else None
    return GatewayError(400, f"Invalid request body: {problems}", code="invalid_body", param=first)


def error_response(error: GatewayError, *, openai: bool) -> JSONResponse:
    body = error.openai_body() if openai else {"error": error.message, "code": error.code}
    return JSONResponse(body, status_code=error.status, headers=error.headers())


def validation_failed(error: ValidationError) -> GatewayError:
    """HTTP 422 for a Poe request body (the OpenAI routes answer 400 through ``invalid_body``)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()[:5]
    )
    return GatewayError(422, f"Invalid request body: {problems}", code="invalid_body")


def install(app: FastAPI) -> None:
    """The app-level handlers: unknown routes, wrong methods, FastAPI validation errors, unexpected exceptions."""

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 404:
            error = GatewayError(404, f"Invalid URL: no route takes {request.method} at this path.", code="unknown_url")
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            error = GatewayError(
                405,
                f"Method {request.method} is not allowed at this path; use {allowed or 'another method'}.",
                code="method_not_allowed",
            )
        else:
            error = GatewayError(exc.status_code, str(exc.detail), code="http_error")
        return shaped_response(path, error, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return shaped_response(request.url.path, invalid_body(exc.errors()))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled gateway error", path=request.url.path)
        return shaped_response(request.url.path, internal_error())
