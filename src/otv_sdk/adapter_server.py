"""Serve adapters over gRPC, so a gateway can reach a PVS that runs elsewhere.

A vendor whose PVS is written in Python runs this next to its PVS; the gateway then reads and
writes the PVS's data through PracticeDataService (the data ports: the "remote" transport of the
same ports a plugin offers), and computes everything partners ask from it. The gateway has already
authenticated the partner and forwards who it is in `otv-partner-id` metadata; the link itself is
to be protected with mutual TLS (pass `credentials`), so only the gateway can make such claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import grpc

from otv_sdk.errors import NotFound, Unauthenticated
from otv_sdk.ports import Adapter, CallContext
from otv_sdk.practice_data_service import DEFAULT_HEARTBEAT_SECONDS, PARTNER_METADATA_KEY, add_practice_data_servicer
from otv_sdk.server import OtvServer, build_server
from otv_sdk.servicers import deadline_of

__all__ = ["PARTNER_METADATA_KEY", "AdapterServer", "serve_adapters"]


class _StaticResolver:
    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self._adapters = dict(adapters)

    async def resolve(self, practice_id: str, ctx: CallContext, field: str) -> Adapter:
        adapter = self._adapters.get(practice_id)
        if adapter is None:
            raise NotFound.field(field, "this adapter server does not serve that practice")
        return adapter


def _forwarded_identity(context: grpc.aio.ServicerContext[object, object], request_id: str | None) -> CallContext:
    partner = dict(context.invocation_metadata() or ()).get(PARTNER_METADATA_KEY)
    if not isinstance(partner, str) or not partner:
        raise Unauthenticated(f"calls must carry the {PARTNER_METADATA_KEY} metadata set by the gateway")
    return CallContext(partner_id=partner, deadline=deadline_of(context), request_id=request_id)


class AdapterServer:
    """A started adapter server; `port` is the bound port (useful with port 0)."""

    def __init__(self, otv_server: OtvServer, port: int, adapters: Mapping[str, Adapter]) -> None:
        self._otv = otv_server
        self.port = port
        self._adapters = adapters

    async def stop(self, grace: float | None = 5.0) -> None:
        await self._otv.set_serving(False)
        await self._otv.server.stop(grace)
        for adapter in self._adapters.values():
            await adapter.aclose()

    async def wait_for_termination(self) -> None:
        await self._otv.server.wait_for_termination()


async def serve_adapters(
    adapters: Mapping[str, Adapter],
    address: str = "127.0.0.1:0",
    *,
    credentials: grpc.ServerCredentials | None = None,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> AdapterServer:
    """Start serving `{practice_id: adapter}` on address; `heartbeat_seconds` is how often an
    idle WatchDataChanges stream says it is alive. `interceptors` wrap every call, for example
    otv_sdk.tracing.TracingServerInterceptor() to continue the gateway's traces."""
    # PracticeDataService, and SandboxService (UNIMPLEMENTED for practices without a sandbox port).
    data_service = partial(add_practice_data_servicer, adapters=adapters, heartbeat_seconds=heartbeat_seconds)
    otv_server = build_server(
        _StaticResolver(adapters),
        _forwarded_identity,
        sandbox=True,
        partner_services=False,
        extra_services=[data_service],
        interceptors=interceptors,
    )
    if credentials is None:
        port = otv_server.server.add_insecure_port(address)
    else:
        port = otv_server.server.add_secure_port(address, credentials)
    await otv_server.server.start()
    await otv_server.set_serving(True)
    return AdapterServer(otv_server, port, adapters)
