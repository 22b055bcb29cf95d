"""A grpc.aio server carrying the four services, gRPC health checking and server reflection.

The gateway and a vendor's adapter server are both built here, so both answer health checks and
can be explored by tools such as `grpcurl` or `buf curl` without the .proto files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from otv_sdk.limits import MAX_REQUEST_BYTES
from otv_sdk.request_decoding import RequestDecoding
from otv_sdk.servicers import AdapterResolver, Identify, add_sandbox_servicer, add_servicers

__all__ = ["OtvServer", "build_server"]

# Metadata of 8 KiB is plenty for signatures and ids; gRPC's default (16 KiB) invites abuse.
MAX_METADATA_BYTES = 8 * 1024
MAX_MESSAGE_BYTES = MAX_REQUEST_BYTES


class OtvServer:
    """A built (not yet started) server and the handles that control its health."""

    def __init__(
        self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, services: Sequence[str]
    ) -> None:
        self.server = server
        self.health = health_servicer
        self.services = tuple(services)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.services):
            await self.health.set(name, status)


def build_server(
    resolver: AdapterResolver,
    identify: Identify,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    sandbox: bool = False,
    partner_services: bool = True,
    extra_services: Sequence[Callable[[grpc.aio.Server], str]] = (),
) -> OtvServer:
    """`sandbox` adds SandboxService: for adapter servers, never for the gateway. `partner_services`
    (the default) adds the four services partners call: for the gateway, never for adapter servers.

    `extra_services` register a server's own services (the gateway's snapshot uploads and
    connectors) and return their full names, for health and reflection."""
    server = grpc.aio.server(
        # Outermost: whatever no inner interceptor decodes itself is decoded with a proper status.
        interceptors=[RequestDecoding(), *interceptors],
        options=[
            # The soft limit alone refuses only some calls above it, at random; the absolute one all.
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    services = add_servicers(server, resolver, identify) if partner_services else []
    if sandbox:
        services.append(add_sandbox_servicer(server, resolver, identify))
    services.extend(register(server) for register in extra_services)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    return OtvServer(server, health_servicer, services)
