"""The restJson1 wire protocol, driven by botocore's service models, independent of any HTTP server.

A ``RouteTable`` maps (method, path) to a botocore ``OperationModel`` and a handler. ``RouteTable.dispatch`` turns an
``HttpRequest`` into handler parameters (URI labels, query string, headers, JSON body or payload, named and typed as
in the model), validates them against the model's constraints, calls the handler and serialises its result with the
operation's output shape (members the installed model does not know are dropped). Handler errors (``ApiError``)
become restJson1 errors: a JSON body with ``message``, the ``X-Amzn-ErrorType`` header and the HTTP status of the
error shape in the model.

Adding an operation of any restJson1 service (e.g. ``bedrock-runtime``) is one call::

    routes.add(service_model("bedrock-runtime").operation_model("Converse"), handler)

A handler takes the parameter dict and returns a dict for the output shape, or a ready ``HttpResponse`` (whose body
may be an iterable of chunks, e.g. an eventstream).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from local.emulator.errors import ApiError, validation_error
from local.emulator.validation import check_request

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], "dict[str, Any] | HttpResponse"]

# Errors the protocol itself raises, which no service model declares.
_PROTOCOL_ERROR_STATUS = {"UnknownOperationException": 404, "SerializationException": 400}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # still percent-encoded, without the query string
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class PacedBody:
    """A streamed body whose chunks each come with the seconds to wait before sending it, ``(wait, chunk)``, produced
    as they are sent. The HTTP server sends every paced body from one thread (``local.emulator.server``), so many
    slow streams do not hold as many threads, each waking for every chunk."""

    chunks: Iterator[tuple[float, bytes]]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes | Iterable[bytes] | PacedBody  # an iterable (or paced body) is sent with chunked transfer encoding


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    labels: tuple[str, ...]
    operation: OperationModel
    handler: Handler


@cache
def service_model(name: str) -> ServiceModel:
    """The installed botocore model of a service (e.g. ``bedrock``, ``bedrock-runtime``)."""
    return botocore.session.get_session().get_service_model(name)


def compile_request_uri(request_uri: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """``/job/{id}/stop`` -> a regex over the encoded path with one group per label (``{key+}`` spans slashes)."""
    path = request_uri.split("?", 1)[0]
    labels: list[str] = []
    regex = ""
    for literal, label in re.findall(r"([^{]*)(?:\{([^}]+)\})?", path):
        regex += re.escape(literal)
        if label:
            greedy = label.endswith("+")
            labels.append(label.rstrip("+"))
            regex += f"(?P<l{len(labels) - 1}>{'.+' if greedy else '[^/]+'})"
    return re.compile(f"^{regex}$"), tuple(labels)


@dataclass
class RouteTable:
    routes: list[Route] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # operation name -> requests received
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # awsJson1_1 operations (e.g. Service Quotas): ``X-Amz-Target`` value -> (operation, handler)
    targets: dict[str, tuple[OperationModel, Handler]] = field(default_factory=dict)

    def add_json_service(self, service: str, handlers: Mapping[str, Handler]) -> None:
        """Serve operations of an awsJson1_1 service (``POST /``, named by the ``X-Amz-Target`` header)."""
        model = service_model(service)
        for name, handler in handlers.items():
            self.targets[f"{model.metadata['targetPrefix']}.{name}"] = (model.operation_model(name), handler)

    def add(self, operation: OperationModel, handler: Handler) -> None:
        pattern, labels = compile_request_uri(operation.http["requestUri"])
        self.routes.append(Route(operation.http["method"], pattern, labels, operation, handler))

    def add_service(self, service: str, handlers: Mapping[str, Handler]) -> None:
        """Route each operation name in ``handlers`` (e.g. ``GetModelInvocationJob``) of ``service``."""
        model = service_model(service)
        for name, handler in handlers.items():
            self.add(model.operation_model(name), handler)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            found = route.pattern.match(path) if route.method == method else None
            if found:
                return route, {name: unquote(found.group(f"l{i}")) for i, name in enumerate(route.labels)}
        return None

    def call_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)

    def dispatch(self, request: HttpRequest) -> HttpResponse:
        if "x-amz-target" in request.headers:
            return self._dispatch_target(request)
        matched = self.match(request.method, request.path)
        if matched is None:
            message = f"No operation of this emulator matches {request.method} {request.path}"
            return error_response(ApiError("UnknownOperationException", message), None)
        route, labels = matched
        with self._lock:
            self.calls[route.operation.name] += 1
        try:
            params = parse_input(route.operation, labels, request)
            check_request(params, route.operation.input_shape)
            result = route.handler(params)
        except ApiError as error:
            return error_response(error, route.operation.service_model)
        except Exception:
            logger.exception("emulator handler failed: %s", route.operation.name)
            failure = ApiError("InternalServerException", f"The emulator failed on {route.operation.name}; see its log")
            return error_response(failure, route.operation.service_model)
        if isinstance(result, HttpResponse):
            return result
        return serialize_output(route.operation, result)

    def _dispatch_target(self, request: HttpRequest) -> HttpResponse:
        """awsJson1_1: the operation is the ``X-Amz-Target`` header, the input is the JSON body, errors carry
        ``__type`` in the body."""
        target = request.headers["x-amz-target"]
        found = self.targets.get(target) if request.method == "POST" and request.path == "/" else None
        if found is None:
            message = f"No operation of this emulator matches {request.method} {request.path} {target}"
            return json_error_response(ApiError("UnknownOperationException", message), None)
        operation, handler = found
        with self._lock:
            self.calls[operation.name] += 1
        try:
            params = _json_body(request.body)
            check_request(params, operation.input_shape)
            result = handler(params)
        except ApiError as error:
            return json_error_response(error, operation.service_model)
        except Exception:
            logger.exception("emulator handler failed: %s", operation.name)
            failure = ApiError("ServiceException", f"The emulator failed on {operation.name}; see its log")
            return json_error_response(failure, operation.service_model)
        if isinstance(result, HttpResponse):
            return result
        headers = {"x-amzn-requestid": str(uuid.uuid4()), "content-type": "application/x-amz-json-1.1"}
        body = to_wire(result, operation.output_shape) if operation.output_shape is not None else {}
        return HttpResponse(200, headers, json.dumps(body).encode())


# ---------------------------------------------------------------- requests


def parse_input(operation: OperationModel, labels: Mapping[str, str], request: HttpRequest) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None:
        return {}
    query = parse_qs(request.query, keep_blank_values=True)
    payload_name = shape.serialization.get("payload")
    params: dict[str, Any] = {} if payload_name else _json_body(request.body)
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri" and wire_name in labels:
            params[name] = _from_text(labels[wire_name], member, name)
        elif location == "querystring" and wire_name in query:
            values = query[wire_name]
            is_list = member.type_name == "list"
            params[name] = (
                [_from_text(v, member.member, name) for v in values] if is_list else _from_text(values[0], member, name)
            )
        elif location == "header" and wire_name.lower() in request.headers:
            params[name] = _from_text(request.headers[wire_name.lower()], member, name)
    if payload_name:
        payload = shape.members[payload_name]
        params[payload_name] = request.body if payload.type_name == "blob" else _json_body(request.body)
    return params


def _json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except ValueError as error:
        raise ApiError("SerializationException", f"The request body is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise ApiError("SerializationException", "The request body must be a JSON object")
    return parsed


def _from_text(text: str, shape: Shape, name: str) -> Any:
    """Convert a URI label, query value or header to the member's type."""
    try:
        return _TEXT_PARSERS.get(shape.type_name, str)(text)
    except ValueError:
        raise validation_error(f"Value '{text}' at '{name}' is not a valid {shape.type_name}") from None


def parse_timestamp(text: str) -> datetime:
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(text)
    return text == "true"


_TEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "long": int,
    "double": float,
    "float": float,
    "boolean": _parse_bool,
    "timestamp": parse_timestamp,
}


# ---------------------------------------------------------------- responses


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as AWS sends it: ``2024-08-28T22:47:53.583Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_wire(value: Any, shape: Shape) -> Any:
    """Serialise ``value`` for a JSON body, keeping only the members the shape declares."""
    if shape.metadata.get("document"):
        return value
    if shape.type_name == "structure":
        return {
            name: to_wire(value[name], member)
            for name, member in shape.members.items()
            if value.get(name) is not None and "location" not in member.serialization
        }
    if shape.type_name == "list":
        return [to_wire(item, shape.member) for item in value]
    if shape.type_name == "map":
        return {key: to_wire(item, shape.value) for key, item in value.items()}
    if shape.type_name == "timestamp":
        if shape.serialization.get("timestampFormat", "unixTimestamp") == "unixTimestamp":
            return value.timestamp()
        return format_timestamp(value)
    if shape.type_name == "blob":
        return base64.b64encode(value).decode()
    return value


def serialize_output(operation: OperationModel, result: dict[str, Any]) -> HttpResponse:
    shape = operation.output_shape
    status = int(operation.http.get("responseCode", 200))
    headers = {"x-amzn-requestid": str(uuid.uuid4()), "content-type": "application/json"}
    if shape is None:
        return HttpResponse(status, headers, b"{}")
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if result.get(name) is not None and location == "header":
            headers[member.serialization.get("name", name).lower()] = str(result[name])
        elif result.get(name) is not None and location == "statusCode":
            status = int(result[name])
    payload_name = shape.serialization.get("payload")
    if payload_name is None:
        return HttpResponse(status, headers, json.dumps(to_wire(result, shape)).encode())
    payload, member = result.get(payload_name), shape.members[payload_name]
    if member.type_name == "blob":
        return HttpResponse(status, headers, payload or b"")
    return HttpResponse(status, headers, json.dumps(to_wire(payload or {}, member)).encode())


def error_status(code: str, model: ServiceModel | None) -> int:
    if code in _PROTOCOL_ERROR_STATUS:
        return _PROTOCOL_ERROR_STATUS[code]
    default = 500 if code == "InternalServerException" else 400
    if model is None or code not in model.shape_names:
        return default
    return int(model.shape_for(code).metadata.get("error", {}).get("httpStatusCode", default))


def error_response(error: ApiError, model: ServiceModel | None) -> HttpResponse:
    headers = {
        "x-amzn-requestid": str(uuid.uuid4()),
        "x-amzn-errortype": error.code,
        "content-type": "application/json",
    }
    body = json.dumps({"message": error.message}).encode()
    return HttpResponse(error_status(error.code, model), headers, body)


def json_error_response(error: ApiError, model: ServiceModel | None) -> HttpResponse:
    """An awsJson1_1 error: ``{"__type": code, "message": ...}`` (botocore reads the code from ``__type``)."""
    headers = {
        "x-amzn-requestid": str(uuid.uuid4()),
        "x-amzn-errortype": error.code,
        "content-type": "application/x-amz-json-1.1",
    }
    body = json.dumps({"__type": error.code, "message": error.message}).encode()
    return HttpResponse(error_status(error.code, model), headers, body)
