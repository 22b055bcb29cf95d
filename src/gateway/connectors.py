"""Outbound connectors: practices whose adapter dials out to the gateway.

A practice network that accepts no incoming connections runs `otv_sdk.connector`, which opens
one long-lived ConnectorService.Connect stream to the gateway and answers the calls the gateway
forwards over it. Here that stream becomes a `ConnectorChannel`: a grpc.aio.Channel whose calls
travel over the practice's current stream. The remote transport (remote.py) works on it
unchanged, so a connected practice is one more transport of the same ports. Changes the PVS announces
travel the other way on the same stream into the practice's change feed.

A newer connection of the same practice replaces the older one (a reconnect after a half-open
TCP connection must not wait for the old one to time out). Calls pending on a stream that ends
fail UNAVAILABLE; whether the PVS applied them is for the idempotent retry (request_id) to settle.

With several replicas (`join`), the stream is held by one of them: every attach claims the
practice in the registry with a new epoch (connector_registry.py), and a replica without the
stream relays its calls to the holder (replica_forwarding.py). A holder that does not hold the
epoch asked for sends nothing, and the caller reads the registry again, so calls follow a
connector that reconnected elsewhere and never go to a stale entry's replica.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from typing import Any

import grpc
from google.protobuf import duration_pb2
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.connector_registry import ConnectorRegistry, Holder
from gateway.replica_forwarding import HolderUnreachable, ReplicaForwarder
from otv.v1 import connector_service_pb2, reader_service_pb2
from otv_sdk import conversion as cv
from otv_sdk.adapter_server import PARTNER_METADATA_KEY
from otv_sdk.changes import BusyTimeChanged, CalendarConfigChanged, Change
from otv_sdk.errors import OtvError

__all__ = ["ConnectorChannel", "ConnectorHub", "ConnectorLink", "serve_link"]

log = logging.getLogger("otv.gateway.connectors")

_Metadata = grpc.aio.Metadata

# Holders tried per call: the one known, and the newer ones a changing registry names meanwhile.
_MAX_HOLDERS_TRIED = 3
_TRACE_CONTEXT = TraceContextTextMapPropagator()


def _failure(code: grpc.StatusCode, message: str, details: bytes = b"") -> grpc.aio.AioRpcError:
    trailing = _Metadata(("grpc-status-details-bin", details)) if details else _Metadata()
    return grpc.aio.AioRpcError(code, _Metadata(), trailing, message)


class ConnectorLink:
    """One connected stream: calls go out through `outgoing`, results come back through `resolve`."""

    def __init__(self, practice_id: str, epoch: int = 0) -> None:
        self.practice_id = practice_id
        self.epoch = epoch  # in the registry; 0 for a gateway that is not one of several replicas
        # None tells the stream's sender that the link closed.
        self.outgoing: asyncio.Queue[connector_service_pb2.ConnectResponse | None] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[connector_service_pb2.CallResult]] = {}
        self._ids = itertools.count(1)
        self.closed = False

    async def call(
        self, method: str, request: bytes, partner_id: str, timeout: float | None
    ) -> connector_service_pb2.CallResult:
        if self.closed:
            raise _failure(grpc.StatusCode.UNAVAILABLE, "the practice's connector is offline")
        call_id = str(next(self._ids))
        future: asyncio.Future[connector_service_pb2.CallResult] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        forwarded = connector_service_pb2.ForwardedCall(
            call_id=call_id, method=method, request=request, partner_id=partner_id
        )
        if timeout is not None:
            forwarded.timeout.FromNanoseconds(int(timeout * 1e9))
        # The current span's W3C context, if the gateway traces (never a partner's baggage).
        _TRACE_CONTEXT.inject(forwarded.trace_context)
        self.outgoing.put_nowait(connector_service_pb2.ConnectResponse(call=forwarded))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise _failure(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the practice's connector did not answer in time"
            ) from None
        finally:
            self._pending.pop(call_id, None)

    def resolve(self, result: connector_service_pb2.CallResult) -> None:
        future = self._pending.get(result.call_id)
        if future is not None and not future.done():
            future.set_result(result)

    def close(self) -> None:
        if not self.closed:
            self.outgoing.put_nowait(None)
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_failure(grpc.StatusCode.UNAVAILABLE, "the practice's connector went offline"))
        self._pending.clear()


class ConnectorHub:
    """The current link of every connector practice, and where the others' streams are held."""

    def __init__(
        self,
        practices: Collection[str],
        ping_seconds: dict[str, float],
        publish: Callable[[str, Change], None] | None = None,
    ) -> None:
        self._practices = frozenset(practices)  # the practices configured with a connector
        self._ping = ping_seconds
        self._publish = publish  # into the practice's change feed
        self._links: dict[str, ConnectorLink] = {}
        self._changed = asyncio.Condition()
        self._registry: ConnectorRegistry | None = None
        self._forwarder: ReplicaForwarder | None = None
        self._elsewhere: dict[str, Holder] = {}  # holders on other replicas, as last read
        self._leases: asyncio.Task[None] | None = None

    def join(self, registry: ConnectorRegistry, forwarder: ReplicaForwarder) -> None:
        """Share streams with the other replicas of the registry's store; leases are renewed from now on."""
        self._registry = registry
        self._forwarder = forwarder
        self._leases = asyncio.get_running_loop().create_task(self._keep_leases(registry))

    def serves(self, practice_id: str) -> bool:
        return practice_id in self._practices

    def announce(self, practice_id: str, message: reader_service_pb2.WatchChangesResponse) -> None:
        """A change the connector's PVS announced: busy time or configuration only (no patient data)."""
        try:
            change = cv.change_from_proto(practice_id, message).change
        except OtvError as error:
            log.warning("dropped a malformed change from the connector of %s: %s", practice_id, error.message)
            return
        if self._publish is not None and isinstance(change, BusyTimeChanged | CalendarConfigChanged):
            self._publish(practice_id, change)

    def ping_seconds(self, practice_id: str) -> float:
        return self._ping.get(practice_id, 15.0)

    def online(self, practice_id: str) -> bool:
        """Connected to this replica, or to another as last read from the registry (see `locate`)."""
        return self.link(practice_id) is not None or self._held_elsewhere(practice_id) is not None

    def link(self, practice_id: str) -> ConnectorLink | None:
        link = self._links.get(practice_id)
        return None if link is None or link.closed else link

    def _held_elsewhere(self, practice_id: str) -> Holder | None:
        holder = self._elsewhere.get(practice_id)
        if holder is not None and holder.expires <= time.time():
            del self._elsewhere[practice_id]
            return None
        return holder

    async def locate(self, practice_id: str) -> ConnectorLink | Holder | None:
        """Where the practice's stream is: here, on another replica, or nowhere.

        A holder read from the registry is kept until its lease as read runs out or a call finds
        it stale; where none was known, every call reads the registry again, so a connector that
        attached to another replica a moment ago is found by the very next call."""
        link = self.link(practice_id)
        if link is not None or self._registry is None:
            return link
        holder = self._held_elsewhere(practice_id)
        if holder is None:
            holder = await self._registry.holder(practice_id)
            if holder is None or holder.replica == self._registry.replica:  # ours, but the link is gone
                return None
            self._elsewhere[practice_id] = holder
        return holder

    def _forget(self, holder: Holder) -> None:
        if self._elsewhere.get(holder.practice) == holder:
            del self._elsewhere[holder.practice]

    async def call(
        self, practice_id: str, method: str, request: bytes, partner_id: str, timeout: float | None
    ) -> connector_service_pb2.CallResult:
        """One call over the practice's stream, wherever it is held."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in range(_MAX_HOLDERS_TRIED):
            where = await self.locate(practice_id)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if where is None:
                break
            if isinstance(where, ConnectorLink):
                return await where.call(method, request, partner_id, left)
            assert self._forwarder is not None  # a holder elsewhere is only known after join
            try:
                result = await self._forwarder.relay(where, method, request, partner_id, left)
            except HolderUnreachable:
                log.warning("replica %s holding the connector of %s is unreachable", where.address, practice_id)
                self._forget(where)
                again = await self.locate(practice_id)
                if isinstance(again, Holder) and (again.replica, again.epoch) == (where.replica, where.epoch):
                    self._forget(again)  # its lease runs yet, and no newer holder to try
                    raise _failure(
                        grpc.StatusCode.UNAVAILABLE, "the replica holding the practice's connector is unreachable"
                    ) from None
                continue
            if result is not None:
                return result
            self._forget(where)  # a stale entry: the stream moved or ended since it was read
        raise _failure(grpc.StatusCode.UNAVAILABLE, "the practice's connector is offline")

    async def attach(self, practice_id: str) -> ConnectorLink:
        link = ConnectorLink(practice_id)
        if self._registry is not None:
            link.epoch = await self._registry.claim(practice_id)
            self._elsewhere.pop(practice_id, None)
        old = self._links.get(practice_id)
        if old is not None and old.epoch > link.epoch:  # a later attach of this replica claimed first
            link.close()
            return link
        if old is not None:
            old.close()
        self._links[practice_id] = link
        log.info("connector of practice %s is online (epoch %d)", practice_id, link.epoch)
        async with self._changed:
            self._changed.notify_all()
        return link

    async def detach(self, link: ConnectorLink) -> None:
        link.close()
        if self._links.get(link.practice_id) is link:
            del self._links[link.practice_id]
            log.warning("connector of practice %s is offline", link.practice_id)
            if self._registry is not None:
                try:
                    await self._registry.release(link.practice_id, link.epoch)
                except Exception as error:  # the store's own errors: the lease runs out instead
                    log.warning("could not release the connector of %s: %s", link.practice_id, type(error).__name__)
        async with self._changed:
            self._changed.notify_all()

    async def _keep_leases(self, registry: ConnectorRegistry) -> None:
        while True:
            await asyncio.sleep(registry.lease_seconds / 3)
            held = {practice_id: link.epoch for practice_id, link in self._links.items() if not link.closed}
            if not held:
                continue
            try:
                lost = await registry.renew(held)
            except Exception as error:  # the store's own errors: try again at the next renewal
                log.warning("could not renew the connector leases: %s", type(error).__name__)
                continue
            for practice_id in lost:
                link = self._links.get(practice_id)
                if link is not None and link.epoch == held[practice_id]:
                    log.warning("the connector of %s attached to another replica; closing this stream", practice_id)
                    await self.detach(link)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until predicate holds; it is checked whenever a connector comes or goes."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def wait_online(self, practice_id: str, timeout: float) -> None:
        """For operators and tests: wait until the practice's connector is connected."""
        async with asyncio.timeout(timeout):
            await self.wait_until(lambda: self.online(practice_id))

    def channel(self, practice_id: str) -> ConnectorChannel:
        return ConnectorChannel(self, practice_id)

    def close(self) -> None:
        if self._leases is not None:
            self._leases.cancel()
            self._leases = None
        for link in self._links.values():
            link.close()
        self._links.clear()


class _UnaryUnary:
    def __init__(self, channel: ConnectorChannel, method: str, serialize: Any, deserialize: Any) -> None:
        self._channel = channel
        self._method = method
        self._serialize = serialize
        self._deserialize = deserialize

    def __call__(
        self, request: Any, *, timeout: float | None = None, metadata: Any = None, **_: Any
    ) -> Coroutine[Any, Any, Any]:
        return self._invoke(request, timeout, metadata)

    async def _invoke(self, request: Any, timeout: float | None, metadata: Any) -> Any:
        partner = dict(metadata or ()).get(PARTNER_METADATA_KEY, "")
        body = self._serialize(request) if self._serialize else request
        result = await self._channel.hub.call(self._channel.practice_id, self._method, body, partner, timeout)
        if result.status_code != grpc.StatusCode.OK.value[0]:
            code = next((c for c in grpc.StatusCode if c.value[0] == result.status_code), grpc.StatusCode.UNKNOWN)
            raise _failure(code, result.status_message, result.status_details)
        return self._deserialize(result.response) if self._deserialize else result.response


class _Unsupported:
    """Streaming calls do not travel over a connector (the remote transport uses none)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _failure(grpc.StatusCode.UNIMPLEMENTED, "streaming calls are not forwarded to connectors")


class ConnectorChannel(grpc.aio.Channel):
    """A channel whose unary calls go over the practice's connector stream."""

    def __init__(self, hub: ConnectorHub, practice_id: str) -> None:
        self.hub = hub
        self.practice_id = practice_id

    def unary_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Any:
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Any:
        return _Unsupported()

    def stream_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Any:
        return _Unsupported()

    def stream_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any
    ) -> Any:
        return _Unsupported()

    async def close(self, grace: float | None = None) -> None:
        return None

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY if self.hub.online(self.practice_id) else grpc.ChannelConnectivity.IDLE

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.hub.wait_until(lambda: self.get_state() != last_observed_state)

    async def channel_ready(self) -> None:
        await self.hub.wait_until(lambda: self.hub.online(self.practice_id))

    async def __aenter__(self) -> ConnectorChannel:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


async def serve_link(
    hub: ConnectorHub,
    link: ConnectorLink,
    results: AsyncIterator[connector_service_pb2.ConnectRequest],
) -> AsyncIterator[connector_service_pb2.ConnectResponse]:
    """The gateway's side of one stream: accept, then forward calls and pings while reading results."""
    ping = hub.ping_seconds(link.practice_id)
    failures: list[OtvError] = []

    async def read() -> None:
        try:
            async for message in results:
                if message.HasField("result"):
                    link.resolve(message.result)
                elif message.HasField("change"):
                    hub.announce(link.practice_id, message.change)
        except OtvError as error:  # a message that does not parse: the stream ends with its status
            failures.append(error)
        finally:
            await hub.detach(link)

    reader = asyncio.get_running_loop().create_task(read())
    try:
        yield connector_service_pb2.ConnectResponse(
            accepted=connector_service_pb2.ConnectorAccepted(ping_interval=duration_pb2.Duration(seconds=int(ping)))
        )
        while True:
            try:
                item = await asyncio.wait_for(link.outgoing.get(), ping)
            except TimeoutError:
                item = connector_service_pb2.ConnectResponse(ping=connector_service_pb2.ConnectorPing())
            if item is None:
                if failures:
                    raise failures[0]
                return
            yield item
    finally:
        reader.cancel()
        await hub.detach(link)
