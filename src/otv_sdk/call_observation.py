"""Server interceptors that watch calls begin and end, for metrics and traces.

`ObservingInterceptor` asks its `hooks(method, kind)` once per method for a `begin` and an `end`
function, and wraps the method's handler once (its types and serializers kept). Per call the
wrapper calls `begin(context)` as the call starts and `end(state, code)` as it ends, `state` being
what `begin` returned, `code` the call's final status: OK, the code a handler aborted with,
CANCELLED when the client went away, UNKNOWN for an exception no one turned into a status.

Observation sits on every call, so its cost is kept to plain calls: no closure, coroutine or
lock per call, and observers stacked in one server share one wrapper. When an observing
interceptor's continuation is another's wrapper (metrics outside tracing, say), it wraps the
handler underneath once with both observers' hooks (its own begin first, end last) instead of
adding a second layer of coroutines around the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from otv_sdk.call_metadata import remember

__all__ = ["Begin", "End", "Hooks", "ObservingInterceptor", "call_kind", "final_code", "joined"]

_Context = grpc.aio.ServicerContext[Any, Any]
# told the call's context as it starts; returns the call's state
Begin = Callable[[_Context], Any]
# told that state and the call's final code as it ends
End = Callable[[Any, grpc.StatusCode], None]
# (full method name, call kind) -> the method's begin and end
Hooks = Callable[[str, str], tuple[Begin, End]]


def final_code(context: _Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the client sees: what the handler set or aborted with, else OK or UNKNOWN."""
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


def call_kind(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    """unary, server_stream, client_stream or bidi_stream (the grpc_type label's values)."""
    if handler.unary_unary is not None:
        return "unary"
    if handler.unary_stream is not None:
        return "server_stream"
    return "client_stream" if handler.stream_unary is not None else "bidi_stream"


def _joined(outer: tuple[Begin, End], inner: tuple[Begin, End]) -> tuple[Begin, End]:
    first_begin, first_end = outer
    then_begin, then_end = inner

    def begin(context: _Context) -> tuple[Any, Any]:
        return first_begin(context), then_begin(context)

    def end(states: tuple[Any, Any], code: grpc.StatusCode) -> None:
        try:
            then_end(states[1], code)
        finally:
            first_end(states[0], code)

    return begin, end


async def _results(outcome: Any) -> AsyncIterator[Any]:
    if hasattr(outcome, "__aiter__"):
        async for item in outcome:
            yield item
    elif hasattr(outcome, "__await__"):
        await outcome
    elif outcome is not None:
        for item in outcome:
            yield item


class _Observed(grpc.RpcMethodHandler):  # type: ignore[type-arg]
    """A handler wrapped with hooks; `inner` and `hooks` let an outer observer join them."""

    def __init__(self, inner: Any, hooks: tuple[Begin, End]) -> None:
        self.inner = inner
        self.hooks = hooks
        self.request_streaming = inner.request_streaming
        self.response_streaming = inner.response_streaming
        self.request_deserializer = inner.request_deserializer
        self.response_serializer = inner.response_serializer
        self.unary_unary: Any = None
        self.unary_stream: Any = None
        self.stream_unary: Any = None
        self.stream_stream: Any = None
        begin, end = hooks
        if inner.unary_unary is not None:
            self.unary_unary = _single(inner.unary_unary, begin, end)
        elif inner.unary_stream is not None:
            self.unary_stream = _streaming(inner.unary_stream, begin, end)
        elif inner.stream_unary is not None:
            self.stream_unary = _single(inner.stream_unary, begin, end)
        else:
            self.stream_stream = _streaming(inner.stream_stream, begin, end)


def _single(call: Callable[[Any, _Context], Any], begin: Begin, end: End) -> Callable[[Any, _Context], Awaitable[Any]]:
    async def answer(request: Any, context: _Context) -> Any:
        state = begin(context)
        try:
            outcome = call(request, context)
            if hasattr(outcome, "__await__"):
                outcome = await outcome
        except BaseException as failure:
            end(state, final_code(context, failure))
            raise
        end(state, final_code(context, None))
        return outcome

    return answer


def _streaming(call: Callable[[Any, _Context], Any], begin: Begin, end: End) -> Callable[[Any, _Context], Any]:
    # grpc.aio tells an async generator handler from the others by its function: this must be one.
    async def stream(request: Any, context: _Context) -> AsyncIterator[Any]:
        state = begin(context)
        error: BaseException | None = None
        try:
            async for item in _results(call(request, context)):
                yield item
        except BaseException as failure:
            error = failure
            raise
        finally:
            end(state, final_code(context, error))

    return stream


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Calls each method's `begin` as its calls start and `end` as they end (see the module).

    `unknown(method)`, when given, is told of calls to methods no handler serves (the server then
    answers UNIMPLEMENTED)."""

    def __init__(self, hooks: Hooks, unknown: Callable[[str], None] | None = None) -> None:
        self._hooks = hooks
        self._unknown = unknown
        # per method: the handler the continuation gave, and its wrapper
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        remember(handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            if self._unknown is not None:
                self._unknown(method)
            return None
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        hooks = self._hooks(method, call_kind(handler))
        if isinstance(handler, _Observed):  # another observer's wrapper: one wrapper for both
            wrapped = _Observed(handler.inner, _joined(hooks, handler.hooks))
        else:
            wrapped = _Observed(handler, hooks)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def joined(*interceptors: grpc.aio.ServerInterceptor) -> grpc.aio.ServerInterceptor:
    """One interceptor doing what observing `interceptors` do, in their order (the first begins
    first, ends last). Stacked separately they already share one wrapper around each call;
    joined, a call also passes one interceptor instead of several on its way to its handler
    (grpc.aio awaits each, every call)."""
    observers = [i for i in interceptors if isinstance(i, ObservingInterceptor)]
    if len(observers) != len(interceptors):
        raise TypeError("only ObservingInterceptors can be joined")
    if len(observers) == 1:
        return observers[0]

    def hooks(method: str, kind: str) -> tuple[Begin, End]:
        pairs = [observer._hooks(method, kind) for observer in observers]
        joint = pairs[-1]
        for pair in reversed(pairs[:-1]):
            joint = _joined(pair, joint)
        return joint

    def unknown(method: str) -> None:
        for observer in observers:
            if observer._unknown is not None:
                observer._unknown(method)

    return ObservingInterceptor(hooks, unknown)
