"""Server interceptors that watch calls begin and end, for metrics and traces.

`ObservingInterceptor` wraps every registered handler once per method (the handler's types and
serializers are kept) and tells `begin` when a call starts; the function `begin` returns is told
the call's final status code when it ends: OK, the code a handler aborted with, CANCELLED when the
client went away, UNKNOWN for an exception no one turned into a status.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

__all__ = ["Begin", "End", "ObservingInterceptor", "final_code"]

_Context = grpc.aio.ServicerContext[Any, Any]
End = Callable[[grpc.StatusCode], None]
# (full method name, call context) -> the function told the call's final code
Begin = Callable[[str, _Context], End]


def final_code(context: _Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the client sees: what the handler set or aborted with, else OK or UNKNOWN."""
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


async def _results(outcome: Any) -> AsyncIterator[Any]:
    if hasattr(outcome, "__aiter__"):
        async for item in outcome:
            yield item
    elif inspect.isawaitable(outcome):
        await outcome
    elif outcome is not None:
        for item in outcome:
            yield item


def _observed(handler: Any, method: str, begin: Begin) -> grpc.RpcMethodHandler[Any, Any]:
    decode = handler.request_deserializer
    encode = handler.response_serializer

    def single(call: Callable[[Any, _Context], Any]) -> Callable[[Any, _Context], Awaitable[Any]]:
        async def answer(request: Any, context: _Context) -> Any:
            end = begin(method, context)
            error: BaseException | None = None
            try:
                outcome = call(request, context)
                return await outcome if inspect.isawaitable(outcome) else outcome
            except BaseException as failure:
                error = failure
                raise
            finally:
                end(final_code(context, error))

        return answer

    def streaming(call: Callable[[Any, _Context], Any]) -> Callable[[Any, _Context], AsyncIterator[Any]]:
        # grpc.aio tells an async generator handler from the others by its function: this must be one.
        async def stream(request: Any, context: _Context) -> AsyncIterator[Any]:
            end = begin(method, context)
            error: BaseException | None = None
            try:
                async for item in _results(call(request, context)):
                    yield item
            except BaseException as failure:
                error = failure
                raise
            finally:
                end(final_code(context, error))

        return stream

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(single(handler.unary_unary), decode, encode)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), decode, encode)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(single(handler.stream_unary), decode, encode)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), decode, encode)


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Calls `begin(method, context)` as each call starts and its result as the call ends.

    `unknown(method)`, when given, is told of calls to methods no handler serves (the server then
    answers UNIMPLEMENTED)."""

    def __init__(self, begin: Begin, unknown: Callable[[str], None] | None = None) -> None:
        self._begin = begin
        self._unknown = unknown
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            if self._unknown is not None:
                self._unknown(method)
            return None
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = _observed(handler, method, self._begin)
            self._wrapped[method] = wrapped
        return wrapped
