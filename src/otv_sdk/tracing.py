"""OpenTelemetry traces over gRPC: a server interceptor and client interceptors, W3C trace context.

Optional: needs `opentelemetry-api` (import this module only when tracing is wanted). Spans carry
only the RPC's service, method and status code, never a request's content. The server side takes
the caller's `traceparent` from the metadata, so a gateway's call to an adapter server continues
the partner call's trace; the client side sends the current span's context with every call.

A vendor's adapter server traces with its own tracer provider (or the global one)::

    serve_adapters(adapters, interceptors=[TracingServerInterceptor()])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from otv_sdk.call_observation import End, ObservingInterceptor

__all__ = ["TracingServerInterceptor", "client_interceptors"]

_INSTRUMENTATION = "otv"
_EMPTY = otel_context.Context()  # no caller's span: the call starts a trace


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service or "unknown", name or "unknown"


def _finish(span: Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def _tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    return (provider or trace.get_tracer_provider()).get_tracer(_INSTRUMENTATION)


class TracingServerInterceptor(ObservingInterceptor):
    """One SERVER span per call, child of the caller's span when it sent one, current while the
    handler runs (each grpc.aio call runs in a task, with a context, of its own)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        tracer = _tracer(tracer_provider)

        def begin(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> End:
            service, name = _split(method)
            metadata = context.invocation_metadata() or ()
            parent = _EMPTY
            if any(key == "traceparent" for key, _ in metadata):
                parent = propagate.extract({k: v for k, v in metadata if isinstance(v, str)})
            span = tracer.start_span(
                f"{service}/{name}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            )
            otel_context.attach(trace.set_span_in_context(span, parent))  # never detached: the task ends
            return lambda code: _finish(span, code)

        super().__init__(begin)


class _Client:
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[Span, grpc.aio.ClientCallDetails]:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        service, name = _split(method)
        span = self._tracer.start_span(
            f"{service}/{name}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in carrier.items():
            metadata.add(key, value)
        return span, details._replace(metadata=metadata)  # type: ignore[attr-defined]


class _UnaryUnary(_Client, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        span, details = self._start(client_call_details)
        try:
            call = await continuation(details, request)
            response = await call
        except grpc.aio.AioRpcError as error:
            _finish(span, error.code())
            raise
        except BaseException:
            _finish(span, grpc.StatusCode.CANCELLED)
            raise
        _finish(span, grpc.StatusCode.OK)
        return response


class _UnaryStream(_Client, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        span, details = self._start(client_call_details)
        call = await continuation(details, request)

        async def responses() -> AsyncIterator[Any]:
            code = grpc.StatusCode.OK
            try:
                async for item in call:
                    yield item
            except grpc.aio.AioRpcError as error:
                code = error.code()
                raise
            except BaseException:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                _finish(span, code)

        return responses()


def client_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[grpc.aio.ClientInterceptor]:
    """For a grpc.aio channel: a CLIENT span per call, its context sent in `traceparent`."""
    tracer = _tracer(tracer_provider)
    return [_UnaryUnary(tracer), _UnaryStream(tracer)]
