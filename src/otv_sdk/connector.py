"""The outbound connector: serve a practice to a gateway without opening an inbound port.

Runs inside the practice network next to an adapter server (`serve_adapters`, on loopback). It
dials out to the gateway's ConnectorService, signs the stream with the practice's key (the
gateway must have granted that key `connector` for the practice), and relays every call the
gateway forwards to the local adapter server, answers and errors included, with the partner call's
trace context (so an adapter server that traces continues the partner call's trace). Given the adapter's
outbox it forwards the PVS's busy-time and configuration changes on the same stream (and, after
each reconnect, a configuration change, so that partners re-read what changed offline). When the
stream breaks it reconnects with exponential back-off and jitter (0.5 s doubling to 30 s), and treats
a stream on which it hears nothing, not even the gateway's pings, for three ping intervals as
broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

import grpc

from otv.v1 import connector_service_pb2, connector_service_pb2_grpc
from otv_sdk import conversion as cv
from otv_sdk.adapter_server import PARTNER_METADATA_KEY
from otv_sdk.changes import BusyTimeChanged, CalendarConfigChanged, Change, ChangeEvent, ChangeOutbox
from otv_sdk.resources import format_name
from otv_sdk.signing import Signer

__all__ = ["Backoff", "OutboundConnector"]

log = logging.getLogger("otv.connector")

_CONNECT = "/otv.v1.ConnectorService/Connect"
# Only W3C trace context goes on to the adapter server: gRPC refuses metadata keys it cannot send.
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.5
    factor: float = 2.0
    ceiling: float = 30.0

    def delay(self, attempt: int) -> float:
        """Full jitter: a random pause up to the attempt's exponential step."""
        return random.uniform(0, min(self.ceiling, self.first * self.factor**attempt))


def _identity(value: bytes) -> bytes:
    return value


class OutboundConnector:
    def __init__(
        self,
        gateway: str,
        practice_id: str,
        adapter_target: str,
        signer: Signer,
        *,
        local_practice: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        backoff: Backoff | None = None,
        changes: ChangeOutbox | None = None,
    ) -> None:
        """`practice_id` as the gateway names it; `adapter_target` the local adapter server;
        `changes` the adapter's outbox, whose busy-time and configuration changes are forwarded."""
        self._gateway = gateway
        self._practice = practice_id
        self._local_practice = local_practice or practice_id
        self._signer = signer
        self._credentials = credentials
        self._backoff = backoff or Backoff()
        self._adapter = grpc.aio.insecure_channel(adapter_target)
        self.connected = asyncio.Event()  # set while a stream is accepted
        self.disconnected = asyncio.Event()  # set while none is
        self.disconnected.set()
        self.sessions = 0  # streams the gateway accepted so far
        self._task: asyncio.Task[None] | None = None
        self._outgoing: asyncio.Queue[connector_service_pb2.ConnectRequest] | None = None
        if changes is not None:
            changes.subscribe(self._forward_change)

    def _forward_change(self, change: Change) -> None:
        """Forward while connected; what happens offline is covered by the re-read asked for on reconnect."""
        if self._outgoing is None or not self.connected.is_set():
            return
        if not isinstance(change, BusyTimeChanged | CalendarConfigChanged):
            return  # appointments with patient data never leave the practice this way
        event = cv.change_to_proto(self._practice, ChangeEvent("", datetime.now(UTC), change))
        self._outgoing.put_nowait(connector_service_pb2.ConnectRequest(change=event))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()
        await self._adapter.close()

    async def _run(self) -> None:
        attempt = 0
        while True:
            accepted = False
            try:
                accepted = await self._session()
            except grpc.aio.AioRpcError as error:
                log.warning("connector stream to %s ended: %s", self._gateway, error.code().name)
            except TimeoutError:
                log.warning("connector heard nothing from %s; reconnecting", self._gateway)
            finally:
                self.connected.clear()
                self.disconnected.set()
            attempt = 0 if accepted else attempt + 1
            await asyncio.sleep(self._backoff.delay(attempt))

    def _channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self._gateway)
        return grpc.aio.secure_channel(self._gateway, self._credentials)

    async def _session(self) -> bool:
        """One stream, until it breaks; True if the gateway accepted it."""
        hello = connector_service_pb2.ConnectRequest(
            hello=connector_service_pb2.ConnectorHello(
                parent=format_name(self._practice),
                local_practice=self._local_practice,
                user_agent=f"otv-connector/{metadata.version('otv')}",
            )
        )
        outgoing: asyncio.Queue[connector_service_pb2.ConnectRequest] = asyncio.Queue()
        outgoing.put_nowait(hello)

        async def requests() -> AsyncIterator[connector_service_pb2.ConnectRequest]:
            while True:
                yield await outgoing.get()

        accepted = False
        calls: set[asyncio.Task[None]] = set()
        async with self._channel() as channel:
            stub = connector_service_pb2_grpc.ConnectorServiceStub(channel)
            stream = stub.Connect(requests(), metadata=self._signer.headers(_CONNECT, hello.SerializeToString()))
            silence = 45.0
            try:
                while True:
                    async with asyncio.timeout(silence):
                        read = await stream.read()
                    if not isinstance(read, connector_service_pb2.ConnectResponse):  # grpc.aio.EOF
                        return accepted
                    message = read
                    if message.HasField("accepted"):
                        accepted = True
                        self.sessions += 1
                        silence = 3 * max(1.0, message.accepted.ping_interval.ToTimedelta().total_seconds())
                        self._outgoing = outgoing
                        self.disconnected.clear()
                        self.connected.set()
                        # Changes made while offline were not forwarded: partners should re-read.
                        self._forward_change(CalendarConfigChanged())
                        log.info("connector for practice %s is connected to %s", self._practice, self._gateway)
                    elif message.HasField("call"):
                        task = asyncio.get_running_loop().create_task(self._relay(message.call, outgoing))
                        calls.add(task)
                        task.add_done_callback(calls.discard)
            finally:
                self._outgoing = None
                for task in calls:
                    task.cancel()
                stream.cancel()

    async def _relay(
        self,
        call: connector_service_pb2.ForwardedCall,
        outgoing: asyncio.Queue[connector_service_pb2.ConnectRequest],
    ) -> None:
        result = connector_service_pb2.CallResult(call_id=call.call_id)
        timeout = call.timeout.ToTimedelta().total_seconds() if call.HasField("timeout") else None
        invoke = self._adapter.unary_unary(call.method, request_serializer=_identity, response_deserializer=_identity)
        try:
            trace_context = [(key, value) for key, value in call.trace_context.items() if key in _TRACE_KEYS]
            metadata = ((PARTNER_METADATA_KEY, call.partner_id), *trace_context)
            result.response = await invoke(call.request, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            result.status_code = error.code().value[0]
            result.status_message = error.details() or ""
            for key, value in error.trailing_metadata() or ():
                if key == "grpc-status-details-bin" and isinstance(value, bytes):
                    result.status_details = value
        outgoing.put_nowait(connector_service_pb2.ConnectRequest(result=result))
