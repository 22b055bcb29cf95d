"""ReplicaService: the internal listener through which other replicas reach this one's connector streams.

On its own port ([gateway.replicas] listen), apart from the partners' port: a load balancer
publishes the partners' port only, and partners' signatures and rate limits do not apply to
replicas, which present the shared token instead (replica_forwarding.py). This module also joins
the replica's connector hub to the registry, with the address it advertises there.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider

from gateway.config import GatewayConfig, load_secret, read_file
from gateway.connector_registry import ConnectorRegistry
from gateway.connectors import ConnectorHub
from gateway.replica_forwarding import TOKEN_METADATA_KEY, ReplicaForwarder, replica_token
from gateway.state_store import StateStore
from otv.v1 import connector_service_pb2, replica_service_pb2, replica_service_pb2_grpc
from otv_sdk.tracing import TracingServerInterceptor, client_interceptors

__all__ = ["ReplicaListener"]

log = logging.getLogger("otv.gateway.replicas")


class _ReplicaServicer(replica_service_pb2_grpc.ReplicaServiceServicer):
    def __init__(self, hub: ConnectorHub, token: str) -> None:
        self._hub = hub
        self._token = token.encode()

    async def RelayCall(
        self, request: replica_service_pb2.RelayCallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> replica_service_pb2.RelayCallResponse:
        presented = dict(context.invocation_metadata() or ()).get(TOKEN_METADATA_KEY, "")
        if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), self._token):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "not a replica of this gateway")
        link = self._hub.link(request.practice)
        if link is None or link.epoch != request.epoch:
            held = 0 if link is None else link.epoch
            return replica_service_pb2.RelayCallResponse(not_held=replica_service_pb2.NotHeld(held_epoch=held))
        call = request.call
        try:
            result = await link.call(call.method, call.request, call.partner_id, context.time_remaining())
        except grpc.aio.AioRpcError as error:  # the stream ended or the connector did not answer in time
            result = connector_service_pb2.CallResult(
                status_code=error.code().value[0], status_message=error.details() or ""
            )
        return replica_service_pb2.RelayCallResponse(result=result)


class ReplicaListener:
    """This replica's internal listener, its registry entry point and its channels to the others."""

    def __init__(self, server: grpc.aio.Server, forwarder: ReplicaForwarder, registry: ConnectorRegistry) -> None:
        self._server = server
        self._forwarder = forwarder
        self.registry = registry

    @property
    def address(self) -> str:
        return self.registry.address

    @classmethod
    async def start(
        cls, config: GatewayConfig, hub: ConnectorHub, store: StateStore, tracing: TracerProvider | None = None
    ) -> ReplicaListener:
        """Bind and start the listener, then join the hub to the registry (config.gateway.replicas is set)."""
        replicas = config.gateway.replicas
        assert replicas is not None
        token = replica_token(load_secret(config))
        server = grpc.aio.server(interceptors=[TracingServerInterceptor(tracing)] if tracing is not None else [])
        replica_service_pb2_grpc.add_ReplicaServiceServicer_to_server(_ReplicaServicer(hub, token), server)
        if replicas.tls is None:
            port = server.add_insecure_port(replicas.listen)
        else:
            tls = replicas.tls
            where = "gateway.replicas.tls"
            server_credentials = grpc.ssl_server_credentials(
                [
                    (
                        read_file(config, tls.key_file, f"{where}.key_file"),
                        read_file(config, tls.cert_file, f"{where}.cert_file"),
                    )
                ],
                root_certificates=(
                    read_file(config, tls.client_ca_file, f"{where}.client_ca_file") if tls.client_ca_file else None
                ),
                require_client_auth=tls.client_ca_file is not None,
            )
            port = server.add_secure_port(replicas.listen, server_credentials)
        credentials = None
        if replicas.peer_tls is not None:
            peer = replicas.peer_tls
            where = "gateway.replicas.peer_tls"
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read_file(config, peer.ca_file, f"{where}.ca_file"),
                private_key=read_file(config, peer.key_file, f"{where}.key_file") if peer.key_file else None,
                certificate_chain=read_file(config, peer.cert_file, f"{where}.cert_file") if peer.cert_file else None,
            )
        forwarder = ReplicaForwarder(token, credentials, client_interceptors(tracing) if tracing is not None else ())
        advertised = replicas.advertise or f"{replicas.listen.rpartition(':')[0]}:{port}"
        registry = ConnectorRegistry(store, uuid.uuid4().hex, advertised, replicas.lease_seconds)
        await server.start()
        hub.join(registry, forwarder)
        log.info("replica %s forwards connector calls at %s", registry.replica, advertised)
        return cls(server, forwarder, registry)

    async def stop(self, grace: float | None = None) -> None:
        await self._server.stop(grace)
        await self._forwarder.aclose()
