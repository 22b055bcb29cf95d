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
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from otv_sdk.call_metadata import call_metadata
from otv_sdk.call_observation import Begin, End, ObservingInterceptor

__all__ = ["TracingServerInterceptor", "client_interceptors"]

_INSTRUMENTATION = "otv"
_EMPTY = otel_context.Context()  # no caller's span: the call starts a trace
_RANDOM_TRACE_ID = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
# (sampled, random trace id) -> the span's flags, made once
_FLAGS = {
    (sampled, random_id): TraceFlags((TraceFlags.SAMPLED if sampled else 0) | (_RANDOM_TRACE_ID if random_id else 0))
    for sampled in (False, True)
    for random_id in (False, True)
}


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service or "unknown", name or "unknown"


def _finish(span: Span, code: grpc.StatusCode) -> None:
    if not span.is_recording():  # carried, not recorded: nothing to write down
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def _root_decision(sampler: Any) -> Callable[[int], bool] | None:
    """For the SDK's usual sampler, `ParentBased` with its default delegates (a caller's decision
    is followed) around a ratio or a constant: the root's decision as a plain comparison, which
    is what `should_sample` computes for it (asking it costs a few µs per call). Else None."""
    try:
        from opentelemetry.sdk.trace import sampling
    except ImportError:  # the API alone: no SDK sampler to know
        return None
    if type(sampler) is not sampling.ParentBased:
        return None
    delegates = (fields := vars(sampler)).get("_remote_parent_sampled"), fields.get("_local_parent_sampled")
    refusals = fields.get("_remote_parent_not_sampled"), fields.get("_local_parent_not_sampled")
    if any(d is not sampling.ALWAYS_ON for d in delegates) or any(r is not sampling.ALWAYS_OFF for r in refusals):
        return None
    root = fields.get("_root")
    if type(root) is sampling.TraceIdRatioBased:
        bound, limit = root.bound, sampling.TraceIdRatioBased.TRACE_ID_LIMIT
        return lambda trace_id: trace_id & limit < bound
    if root is sampling.ALWAYS_ON or root is sampling.ALWAYS_OFF:
        decision = root is sampling.ALWAYS_ON
        return lambda trace_id: decision
    return None


class _Spans:
    """Starts the spans of calls with one provider.

    A recorded span costs the OpenTelemetry SDK some 10 to 30 µs; a gateway that traces without
    an exporter (to carry partners' trace context to its adapters and trace ids into its logs)
    would pay that on every call for spans no one ever sees. So when the provider is the SDK's and
    no span processor is registered (checked per call: one can be added later), a span is only
    carried: a non-recording span with the ids and sampling decision the SDK would have given it
    (the caller's trace id, or a new one; a new span id; the provider's sampler asked), which is
    what goes downstream in `traceparent` and into log lines. Any other provider starts its spans."""

    def __init__(self, provider: trace.TracerProvider | None) -> None:
        provider = provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer(_INSTRUMENTATION)
        # The SDK's TracerProvider keeps its processors here (not public API: checked, else recorded).
        self._processors: Any = getattr(provider, "_active_span_processor", None)
        self._sampler: Any = getattr(provider, "sampler", None)
        self._ids: Any = getattr(provider, "id_generator", None)
        layout_known = isinstance(getattr(self._processors, "_span_processors", None), tuple)
        if not layout_known or self._sampler is None or self._ids is None:
            self._processors = None
        self._root_sampled = _root_decision(self._sampler)
        self._random_ids = bool(self._ids is not None and self._ids.is_trace_id_random())

    def start(self, name: str, parent: otel_context.Context | None, kind: SpanKind, attributes: Any) -> Span:
        processors = self._processors
        if processors is None or processors._span_processors:
            return self._tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        return self._carried(name, parent, kind)

    def _carried(self, name: str, parent: otel_context.Context | None, kind: SpanKind) -> Span:
        ids = self._ids  # there: checked in __init__
        caller = INVALID_SPAN_CONTEXT if parent is _EMPTY else trace.get_current_span(parent).get_span_context()
        if caller.is_valid:
            trace_id = caller.trace_id
            random_id = bool(getattr(caller.trace_flags, "random_trace_id", False))
        else:
            trace_id = ids.generate_trace_id()
            random_id = self._random_ids
        root_sampled = self._root_sampled
        if root_sampled is None:  # a sampler of another kind: asked as the SDK asks it
            sampling = self._sampler.should_sample(parent, trace_id, name, kind)
            sampled, trace_state = sampling.decision.is_sampled(), sampling.trace_state
        elif caller.is_valid:  # ParentBased with its default delegates: the caller decided
            sampled, trace_state = caller.trace_flags.sampled, caller.trace_state
        else:
            sampled, trace_state = root_sampled(trace_id), None
        context = SpanContext(trace_id, ids.generate_span_id(), False, _FLAGS[sampled, random_id], trace_state)
        return NonRecordingSpan(context)


class TracingServerInterceptor(ObservingInterceptor):
    """One SERVER span per call, child of the caller's span when it sent one, current while the
    handler runs (each grpc.aio call runs in a task, with a context, of its own)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        spans = _Spans(tracer_provider)

        def hooks(method: str, kind: str) -> tuple[Begin, End]:
            service, name = _split(method)
            span_name = f"{service}/{name}"
            attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

            def begin(context: grpc.aio.ServicerContext[Any, Any]) -> Span:
                metadata = call_metadata(context)
                parent = _EMPTY
                for key, _ in metadata:
                    if key == "traceparent":
                        parent = propagate.extract({k: v for k, v in metadata if isinstance(v, str)})
                        break
                span = spans.start(span_name, parent, SpanKind.SERVER, attributes)
                otel_context.attach(trace.set_span_in_context(span, parent))  # never detached: the task ends
                return span

            return begin, _finish

        super().__init__(hooks)


class _Client:
    def __init__(self, spans: _Spans) -> None:
        self._spans = spans

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[Span, grpc.aio.ClientCallDetails]:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        service, name = _split(method)
        span = self._spans.start(
            f"{service}/{name}",
            None,
            SpanKind.CLIENT,
            {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
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
    spans = _Spans(tracer_provider)
    return [_UnaryUnary(spans), _UnaryStream(spans)]
