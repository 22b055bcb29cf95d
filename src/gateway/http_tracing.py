"""Traces of the HTTP snapshot upload: one SERVER span per request, the caller's W3C context honoured.

A PVS that uploads with curl can send a `traceparent` header like any gRPC caller (otv_sdk.tracing
does the same for gRPC metadata), and its upload joins the PVS's own trace; without one the
upload starts a trace, sampled by the gateway's ratio. The span is current while the request is
handled, so the JSON log lines of the upload carry its trace id.

Attributes follow OpenTelemetry's HTTP server conventions, restricted to what names no person:
the method, the route template (`/v1/practices/{practice}/snapshot:upload`, never the path with
its values, a query or a header), the scheme and the status code; and the gRPC method the route
stands for (`rpc.service`, `rpc.method`), so one query finds uploads over either transport.
Exceptions are not recorded on the span: their messages may quote the request. Only the routes
named are traced: the staff page and Prometheus' scrapes of /metrics are not.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["tracing_middleware"]

_INSTRUMENTATION = "otv"
_EMPTY = otel_context.Context()  # no caller's span: the request starts a trace


def tracing_middleware(provider: trace.TracerProvider, routes: Mapping[str, str]) -> Middleware:
    """`routes` maps a route template to the gRPC method it serves
    (`/otv.v1.SnapshotService/UploadSnapshot`); requests to any other route pass untraced.
    Put it first among the application's middlewares, so the span sees the status the caller got."""
    tracer = provider.get_tracer(_INSTRUMENTATION)

    @web.middleware
    async def trace_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else None
        method = routes.get(template) if template is not None else None
        if template is None or method is None:
            return await handler(request)
        service, _, name = method.lstrip("/").partition("/")
        parent = propagate.extract(request.headers) if "traceparent" in request.headers else _EMPTY
        span = tracer.start_span(
            f"{request.method} {template}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "http.route": template,
                "url.scheme": request.scheme,
                "rpc.service": service,
                "rpc.method": name,
            },
        )
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                response = await handler(request)
        except web.HTTPException as refused:  # an answer all the same (redirects, aiohttp's own refusals)
            _finish(span, refused.status)
            raise
        except BaseException as error:  # the connection dropped, or a bug: no status reached the caller
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            raise
        _finish(span, response.status)
        return response

    return trace_request


def _finish(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:  # a server span's error; a 4xx is the caller's (OpenTelemetry's HTTP conventions)
        span.set_status(Status(StatusCode.ERROR))
    span.end()
