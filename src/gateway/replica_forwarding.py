"""Forwarding between replicas: a practice's PVS calls go to the replica holding its connector stream.

Partner calls for a connector practice are served by whichever replica receives them: it checks
the partner's signature and rate, runs the booking rules against the shared state store and keeps
its own last-known state for offline reads (offline.py). Only what must cross the connector's
stream, the calls to the practice's adapter, is relayed to the replica that holds the stream
(ReplicaService.RelayCall, served by replica_service.py), as already-serialized bytes with the
partner's id and the time left of its deadline. The channel carries the tracing interceptors,
so the relay is one more span of the partner call's trace.

Replicas authenticate each other with a token derived from the gateway secret, which every replica
of one deployment must share anyway (partner-scoped patient ids are derived from it); on networks
that others can read, configure TLS (mutual, with client_ca_file) for the internal listener.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from gateway.connector_registry import Holder
from otv.v1 import connector_service_pb2, replica_service_pb2, replica_service_pb2_grpc

if TYPE_CHECKING:
    from otv.v1.replica_service_pb2_grpc import ReplicaServiceAsyncStub

__all__ = ["TOKEN_METADATA_KEY", "HolderUnreachable", "ReplicaForwarder", "replica_token"]

TOKEN_METADATA_KEY = "otv-replica-token"


def replica_token(secret: bytes) -> str:
    """The replicas' shared token: derived, so the gateway secret itself never travels."""
    return hmac.new(secret, b"otv replica forwarding v1", hashlib.sha256).hexdigest()


def _failure(code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), message)


class HolderUnreachable(Exception):
    """The holding replica could not be reached: the registry may know a newer holder."""


class ReplicaForwarder:
    """Channels to the other replicas, one per address, opened on first use."""

    def __init__(
        self,
        token: str,
        credentials: grpc.ChannelCredentials | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        self._metadata = ((TOKEN_METADATA_KEY, token),)
        self._credentials = credentials
        self._interceptors = list(interceptors)
        self._channels: dict[str, tuple[grpc.aio.Channel, ReplicaServiceAsyncStub]] = {}

    def _stub(self, address: str) -> ReplicaServiceAsyncStub:
        known = self._channels.get(address)
        if known is None:
            channel = (
                grpc.aio.insecure_channel(address, interceptors=self._interceptors)
                if self._credentials is None
                else grpc.aio.secure_channel(address, self._credentials, interceptors=self._interceptors)
            )
            stub: ReplicaServiceAsyncStub = replica_service_pb2_grpc.ReplicaServiceStub(channel)
            known = (channel, stub)
            self._channels[address] = known
        return known[1]

    async def relay(
        self, holder: Holder, method: str, request: bytes, partner_id: str, timeout: float | None
    ) -> connector_service_pb2.CallResult | None:
        """The connector's answer; None when the holder no longer holds this epoch (nothing was sent)."""
        call = connector_service_pb2.ForwardedCall(method=method, request=request, partner_id=partner_id)
        if timeout is not None:
            call.timeout.FromNanoseconds(int(timeout * 1e9))
        relay = replica_service_pb2.RelayCallRequest(practice=holder.practice, epoch=holder.epoch, call=call)
        try:
            response = await self._stub(holder.address).RelayCall(relay, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code is grpc.StatusCode.UNAVAILABLE:
                raise HolderUnreachable(holder.address) from None
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _failure(code, "the practice's connector did not answer in time") from None
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                # The deployment's fault (replicas with different secrets or certificates), not the partner's.
                raise _failure(grpc.StatusCode.INTERNAL, "the gateway's replicas do not accept each other") from None
            raise _failure(grpc.StatusCode.INTERNAL, f"forwarding to another replica failed: {code.name}") from None
        if response.HasField("not_held"):
            return None
        return response.result

    async def aclose(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()
