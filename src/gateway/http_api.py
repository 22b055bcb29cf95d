"""SnapshotService over plain HTTP + JSON, for a PVS that can only run curl.

    POST /v1/practices/{practice}/snapshot:window   body: GetUploadWindowRequest as JSON (may be {})
    POST /v1/practices/{practice}/snapshot:upload   body: UploadSnapshotRequest as JSON

Bodies and answers use protobuf's JSON mapping (camelCase names, RFC 3339 times); the practice
comes from the path. Authentication is the gateway's one scheme (otv_sdk.signing) with its six
headers sent as HTTP headers: the content hash covers the exact body bytes and the method in the
canonical string is the gRPC method (/otv.v1.SnapshotService/UploadSnapshot), so one signer works
for both transports. Errors are JSON, {"code", "message", "fieldViolations": [{"field",
"description"}]}, under the HTTP status Google's API design gives the gRPC code.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from aiohttp import web
from aiohttp.typedefs import Middleware
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from opentelemetry.trace import TracerProvider

from gateway.authentication import RateLimited, Refused, SignatureAuthenticator
from gateway.http_tracing import tracing_middleware
from gateway.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.snapshot_service import SnapshotCalls
from otv.v1 import snapshot_service_pb2
from otv_sdk.errors import OtvError
from otv_sdk.ports import CallContext
from otv_sdk.resources import format_name, is_valid_practice_id
from otv_sdk.server import MAX_MESSAGE_BYTES

__all__ = ["HttpApi"]

log = logging.getLogger("otv.gateway.http")

Req = TypeVar("Req", bound=Message)

_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def _error(code: str, message: str, violations: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if violations:
        body["fieldViolations"] = violations
    return web.json_response(body, status=_HTTP_STATUS.get(code, 500))


# json_format names where parsing failed in two ways: "... at UploadSnapshotRequest.columns[0].busyTimes[1]
# .startTime" (most errors), or only as a chain "Failed to parse requestId field: ..." (wrong types).
_PARSE_CHAIN = re.compile(r"Failed to parse (\w+) field: ")
_PATH_STEP = re.compile(r"\.(\w+)(?:\[(\d+)\])?")


def _parse_error_field(message_type: type[Message], error: str) -> str | None:
    """The request field a JSON parse error is about, named as gRPC errors name it
    (`columns[0].busy_times[1].start_time`, not JSON's camelCase), or None when it names none.

    Over gRPC a malformed timestamp reaches the gateway's own checks, which name the field; over
    HTTP json_format refuses it first (year 0, year 10000, month 13), so its error is translated
    here, and the PVS sees the same field name whichever transport it uses.
    """
    descriptor = cast(Descriptor, message_type.DESCRIPTOR)  # upb's class; isinstance agrees
    at = re.search(rf'\bat "?{re.escape(descriptor.name)}((?:\.\w+(?:\[\d+\])?)*)', error)
    steps = [(m[1], m[2]) for m in _PATH_STEP.finditer(at[1])] if at else []
    if not steps:  # no path, or only the message itself ("repeated field columns must be in []")
        steps = [(name, None) for name in _PARSE_CHAIN.findall(error)]
    names: list[str] = []
    current: Descriptor | None = descriptor
    for json_name, index in steps:
        found = None
        if current is not None:
            found = next((f for f in current.fields if json_name in (f.json_name, f.name)), None)
        if found is None:
            break
        names.append(found.name if index is None else f"{found.name}[{index}]")
        current = found.message_type
    return ".".join(names) or None


# aiohttp's own refusals (unknown path, wrong verb, body too large) as the same JSON errors.
_HTTP_CODES = {404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "RESOURCE_EXHAUSTED"}

# The snapshot routes, and the gRPC method each one stands for (in signatures and in traces).
_WINDOW = "/v1/practices/{practice}/snapshot:window"
_UPLOAD = "/v1/practices/{practice}/snapshot:upload"
_ROUTES = {_WINDOW: "/otv.v1.SnapshotService/GetUploadWindow", _UPLOAD: "/otv.v1.SnapshotService/UploadSnapshot"}


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as refused:
        if request.path.startswith("/practice/"):  # the staff web page answers in HTML (practice_web)
            raise
        code = _HTTP_CODES.get(refused.status, "INVALID_ARGUMENT")
        return web.json_response({"code": code, "message": refused.reason}, status=refused.status)


async def _metrics(metrics: GatewayMetrics, request: web.Request) -> web.Response:
    await metrics.refresh()
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


class HttpApi:
    """The HTTP listener; started and stopped with the gateway."""

    def __init__(
        self,
        calls: SnapshotCalls,
        authenticator: SignatureAuthenticator | None,
        practice_web: web.Application | None = None,
        metrics: GatewayMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """Without an authenticator (a test identity) there is no snapshot upload; `practice_web`
        is the staff web page, mounted under /practice/; with a `tracer_provider` every snapshot
        request is a span (http_tracing.py)."""
        self._calls = calls
        self._authenticator = authenticator
        self._runner: web.AppRunner | None = None
        self.port = 0
        middlewares: list[Middleware] = [_json_errors]
        if tracer_provider is not None:  # outermost: its span sees the status the JSON errors give
            middlewares.insert(0, tracing_middleware(tracer_provider, _ROUTES))
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES, middlewares=middlewares)
        if authenticator is not None:
            app.router.add_post(_WINDOW, self._window)
            app.router.add_post(_UPLOAD, self._upload)
        if practice_web is not None:
            app.add_subapp("/practice/", practice_web)
        if metrics is not None:  # Prometheus scrapes GET /metrics (docs/operations.md)
            app.router.add_get("/metrics", functools.partial(_metrics, metrics))
        self._app = app

    async def start(self, address: str, ssl_context: ssl.SSLContext | None = None) -> None:
        host, _, port = address.rpartition(":")
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, int(port), ssl_context=ssl_context)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _window(self, request: web.Request) -> web.Response:
        return await self._handle(
            request, "GetUploadWindow", snapshot_service_pb2.GetUploadWindowRequest, self._calls.get_upload_window
        )

    async def _upload(self, request: web.Request) -> web.Response:
        return await self._handle(
            request, "UploadSnapshot", snapshot_service_pb2.UploadSnapshotRequest, self._calls.upload_snapshot
        )

    async def _handle(
        self,
        request: web.Request,
        name: str,
        message_type: type[Req],
        call: Callable[[CallContext, Req], Awaitable[Message]],
    ) -> web.Response:
        practice = request.match_info["practice"]
        raw = await request.read()  # over client_max_size: 413 RESOURCE_EXHAUSTED (middleware)
        metadata = tuple(
            (key.lower(), value) for key, value in request.headers.items() if key.lower().startswith("x-otv-")
        )
        method = f"/otv.v1.SnapshotService/{name}"
        assert self._authenticator is not None  # the routes exist only with one
        try:
            partner = await self._authenticator.verify(
                raw, method, "snapshot", metadata, practice if is_valid_practice_id(practice) else None
            )
        except RateLimited as limited:  # HTTP's own way of saying when to come back
            refusal = _error(limited.code.name, limited.message)
            refusal.headers["Retry-After"] = str(max(1, math.ceil(limited.retry_after)))
            return refusal
        except Refused as refused:
            return _error(refused.code.name, refused.message)
        try:
            message = json_format.Parse(raw or b"{}", message_type())
        except (json_format.ParseError, UnicodeDecodeError, json.JSONDecodeError) as error:
            text = f"the body is not a {message_type.DESCRIPTOR.name} in JSON: {error}"
            field = _parse_error_field(message_type, str(error))
            violations = [{"field": field, "description": "cannot be parsed from JSON"}] if field else None
            return _error("INVALID_ARGUMENT", text, violations)
        parent = format_name(practice) if is_valid_practice_id(practice) else practice
        if getattr(message, "parent", "") not in ("", parent):
            return _error(
                "INVALID_ARGUMENT", "parent differs from the path", [{"field": "parent", "description": "must match"}]
            )
        message.parent = parent  # type: ignore[attr-defined]
        try:
            response = await call(CallContext(partner_id=partner), message)
        except OtvError as error:
            violations = [{"field": v.field, "description": v.description} for v in error.violations]
            return _error(error.code.value, error.message, violations)
        except Exception as error:  # a bug must not leak details or take the listener down
            error_id = secrets.token_hex(6)
            log.error("unexpected %s in HTTP %s (error id %s)", type(error).__name__, name, error_id)
            return _error(grpc.StatusCode.INTERNAL.name, f"the gateway failed (error id {error_id})")
        return web.Response(text=json_format.MessageToJson(response), content_type="application/json")
