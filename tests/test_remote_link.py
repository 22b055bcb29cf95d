"""What a failed link to a practice's adapter server means to partners: the gateway's fault
(INTERNAL) when the server rejects the gateway's credentials, UNAVAILABLE when it cannot be reached."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import grpc
import pytest

from gateway.remote import RemoteAdapterSource
from otv_sdk.errors import InternalError, Unavailable
from otv_sdk.ports import CallContext

CTX = CallContext("alpha", deadline=None)


class _RefusingHandler(grpc.GenericRpcHandler):
    """An adapter server that refuses the gateway's credentials on every method."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        async def refuse(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown client certificate")
            raise AssertionError("abort raises")

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.fixture
async def refusing_server() -> AsyncIterator[int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_RefusingHandler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(0)


async def test_rejected_credentials_are_the_gateways_fault(refusing_server: int) -> None:
    source = RemoteAdapterSource(grpc.aio.insecure_channel(f"127.0.0.1:{refusing_server}"), "demo")
    try:
        with pytest.raises(InternalError) as caught:
            await source.get(CTX)
        assert "credentials" in caught.value.message
    finally:
        await source.aclose()


def _closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_practice_is_unavailable() -> None:
    port = _closed_port()
    source = RemoteAdapterSource(grpc.aio.insecure_channel(f"127.0.0.1:{port}"), "demo")
    try:
        with pytest.raises(Unavailable) as caught:
            await source.get(CTX)
        assert caught.value.message == "the practice's system cannot be reached right now"
    finally:
        await source.aclose()
