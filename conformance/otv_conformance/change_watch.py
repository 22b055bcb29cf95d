"""Following what an adapter announces: its outbox in-process, its WatchDataChanges stream remotely.

The change cases compare announcements with the writes and deletes they make, so they need every
announcement with the moment it arrived, whichever transport carries it. A remote adapter's stream
is read straight from its adapter server, as the gateway reads it (as `otv-gateway`): the gateway
consumes its own stream and turns it into partner events, so heartbeats and the exact intervals
announced are only visible this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from otv.v1 import practice_data_service_pb2 as pd
from otv.v1 import practice_data_service_pb2_grpc as pd_grpc
from otv_sdk import data_conversion as dc
from otv_sdk.changes import Change, ChangeOutbox
from otv_sdk.errors import OtvError
from otv_sdk.practice_data_service import PARTNER_METADATA_KEY
from otv_sdk.resources import format_name

__all__ = ["GATEWAY_USER", "ChangeWatch", "watch_outbox", "watch_stream"]

GATEWAY_USER = "otv-gateway"  # who the gateway watches as (docs/vendor-guide.md, WatchDataChanges)


@dataclass(slots=True)
class ChangeWatch:
    """Everything announced since the watch began, each with its arrival (monotonic seconds)."""

    opened: float = field(default_factory=time.monotonic)
    received: list[tuple[float, Change]] = field(default_factory=list)
    ended: str | None = None  # why the stream ended, if it did: a watch must stay open
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, change: Change) -> None:
        self.received.append((time.monotonic(), change))
        self._arrived.set()

    def end(self, reason: str) -> None:
        self.ended = reason
        self._arrived.set()

    async def wait_for(self, wanted: Callable[[Change], bool], seconds: float) -> tuple[float, Change] | None:
        """The first announcement (from the start of the watch) that is wanted, waiting at most
        `seconds` for it; None when none came in time or the stream ended."""
        deadline = time.monotonic() + seconds
        scanned = 0
        while True:
            for arrival, change in self.received[scanned:]:
                if wanted(change):
                    return arrival, change
            scanned = len(self.received)
            remaining = deadline - time.monotonic()
            if self.ended is not None or remaining <= 0:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)


@contextlib.asynccontextmanager
async def watch_outbox(outbox: ChangeOutbox) -> AsyncIterator[ChangeWatch]:
    """An in-process adapter's announcements, as the gateway subscribes to them."""
    watch = ChangeWatch()
    deliver = watch.add
    outbox.subscribe(deliver)
    try:
        yield watch
    finally:
        outbox.unsubscribe(deliver)


@contextlib.asynccontextmanager
async def watch_stream(channel: grpc.aio.Channel, practice: str) -> AsyncIterator[ChangeWatch]:
    """A remote adapter's WatchDataChanges stream, heartbeats included, read in the background."""
    stub = pd_grpc.PracticeDataServiceStub(channel)
    call = stub.WatchDataChanges(
        pd.WatchDataChangesRequest(parent=format_name(practice)), metadata=((PARTNER_METADATA_KEY, GATEWAY_USER),)
    )
    watch = ChangeWatch()

    async def read() -> None:
        try:
            async for response in call:
                try:
                    watch.add(dc.data_change_from_proto(practice, response))
                except OtvError as error:
                    watch.end(f"a malformed announcement: {error.message}")
                    return
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                watch.end(f"the stream ended with {error.code().name}: {error.details()}")
            return
        watch.end("the stream ended (it must stay open)")

    reader = asyncio.get_running_loop().create_task(read())
    try:
        yield watch
    finally:
        call.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
