"""Request bodies decoded where a failure is the caller's: INVALID_ARGUMENT, not UNKNOWN.

grpc.aio decodes a request before any handler runs and answers UNKNOWN, with the parser's
exception text, when the bytes are not a message of the method's type. That is a client's mistake
reported as a server fault, and it leaks internals. This interceptor takes the decoding over for
every handler that still has a deserializer (health checking, reflection, and our services where
no authenticator already decodes them after checking the signature).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

__all__ = ["RequestDecoding"]

_Context = grpc.aio.ServicerContext[Any, Any]
_NOT_A_MESSAGE = "the request is not a valid message for this method"


async def _decoded(decode: Callable[[bytes], Any], raw: bytes, context: _Context) -> Any:
    try:
        return decode(raw)
    except Exception:  # whatever the parser raises, the bytes were the caller's
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _NOT_A_MESSAGE)


async def _results(outcome: Any) -> AsyncIterator[Any]:
    """A streaming handler may be an async generator, a plain generator or a coroutine that writes."""
    if hasattr(outcome, "__aiter__"):
        async for item in outcome:
            yield item
    elif inspect.isawaitable(outcome):
        await outcome
    elif outcome is not None:
        for item in outcome:
            yield item


class RequestDecoding(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrap(handler)
            self._wrapped[method] = wrapped
        return wrapped

    @staticmethod
    def _wrap(handler: Any) -> grpc.RpcMethodHandler[Any, Any]:
        decode: Callable[[bytes], Any] = handler.request_deserializer
        serialize = handler.response_serializer
        if handler.unary_unary is not None:

            async def unary_unary(raw: bytes, context: _Context) -> Any:
                outcome = handler.unary_unary(await _decoded(decode, raw, context), context)
                return await outcome if inspect.isawaitable(outcome) else outcome

            return grpc.unary_unary_rpc_method_handler(unary_unary, response_serializer=serialize)
        if handler.unary_stream is not None:

            async def unary_stream(raw: bytes, context: _Context) -> AsyncIterator[Any]:
                async for item in _results(handler.unary_stream(await _decoded(decode, raw, context), context)):
                    yield item

            return grpc.unary_stream_rpc_method_handler(unary_stream, response_serializer=serialize)

        async def requests(raw_messages: AsyncIterator[bytes], context: _Context) -> AsyncIterator[Any]:
            async for raw in raw_messages:
                yield await _decoded(decode, raw, context)

        if handler.stream_unary is not None:

            async def stream_unary(raw_messages: AsyncIterator[bytes], context: _Context) -> Any:
                outcome = handler.stream_unary(requests(raw_messages, context), context)
                return await outcome if inspect.isawaitable(outcome) else outcome

            return grpc.stream_unary_rpc_method_handler(stream_unary, response_serializer=serialize)

        async def stream_stream(raw_messages: AsyncIterator[bytes], context: _Context) -> AsyncIterator[Any]:
            async for item in _results(handler.stream_stream(requests(raw_messages, context), context)):
                yield item

        return grpc.stream_stream_rpc_method_handler(stream_stream, response_serializer=serialize)
