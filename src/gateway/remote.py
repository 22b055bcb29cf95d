"""The remote transport: a practice whose PVS serves `otv.v1.PracticeDataService` over gRPC.

The remote's data ports (`otv_sdk.practice_data_client`) are the same ports an in-process plugin
offers, so the rest of the gateway cannot tell the two apart: it computes free time, slots and
patient decisions from them exactly as for a plugin. What the practice supports is learned from
the remote's GetPracticeProfile and cached briefly, so a vendor can enable a part without a
gateway restart.

A PVS that announces its changes (`DATA_CAPABILITY_CHANGES`) is watched: its WatchDataChanges
stream feeds the practice's change feed, so partners' WatchChanges see the PVS's own changes and
the gateway's engine for the practice stays current. After the stream breaks, a configuration
change is published on reconnect: whatever happened meanwhile is re-read.

A failure of the link is the gateway's problem, not the partner's: the remote rejecting the
gateway's credentials becomes INTERNAL, an unreachable remote UNAVAILABLE; the remote's own
answers about the request (INVALID_ARGUMENT, NOT_FOUND, ...) pass through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc

from otv_sdk.changes import CalendarConfigChanged, Change
from otv_sdk.client import PartnerClient
from otv_sdk.data_conversion import DataCapability
from otv_sdk.errors import (
    DeadlineExceeded,
    InternalError,
    OtvError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from otv_sdk.models import Capability
from otv_sdk.ports import Adapter, CallContext, SandboxPort
from otv_sdk.practice_data_client import (
    PracticeDataClient,
    RemoteCalendarData,
    RemoteCalendarWriter,
    RemoteConsentData,
    RemotePatientData,
)
from otv_sdk.practice_data_service import PARTNER_METADATA_KEY
from otv_sdk.scenario import Scenario

__all__ = ["RemoteAdapterSource"]

log = logging.getLogger("otv.gateway.remote")

# The technical user the gateway's own calls (watching changes) are made as.
_GATEWAY_USER = "otv-gateway"


def _link_error(error: OtvError) -> OtvError:
    """What a failed link to the practice's adapter server means to a partner."""
    if isinstance(error, Unauthenticated | PermissionDenied):
        return InternalError("the practice's adapter server rejected the gateway's credentials")
    if isinstance(error, Unavailable):
        return Unavailable("the practice's system cannot be reached right now")
    return error


def _as(partner_id: str) -> tuple[tuple[str, str], ...]:
    return ((PARTNER_METADATA_KEY, partner_id),)


class _RemoteSandbox(SandboxPort):
    def __init__(self, client: PartnerClient, practice: str) -> None:
        self._client = client
        self._practice = practice

    async def load_scenario(self, ctx: CallContext, scenario: Scenario) -> None:
        await self._client.load_scenario(
            self._practice, scenario, timeout=ctx.time_remaining(), metadata=_as(ctx.partner_id)
        )

    async def reset(self, ctx: CallContext) -> None:
        await self._client.reset_sandbox(self._practice, timeout=ctx.time_remaining(), metadata=_as(ctx.partner_id))


class RemoteAdapterSource:
    """Builds the `Adapter` of a remote practice from what the remote says it supports."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        remote_practice: str,
        *,
        cache_seconds: float = 60.0,
        publish: Callable[[Change], None] | None = None,
        retry_seconds: float = 5.0,
    ) -> None:
        """`channel` reaches the adapter server: one of its own, or a connector's (connectors.py).
        `publish` receives the changes the remote announces (None: do not watch, as for connectors,
        which announce changes on their own stream)."""
        self._channel = channel
        self._practice = remote_practice
        self._client = PracticeDataClient(channel, remote_practice, link_errors=_link_error)
        self._sandbox_client = PartnerClient(channel)
        # The ports are made once: the gateway keeps its engine per port, across re-descriptions.
        self._calendar = RemoteCalendarData(self._client)
        self._writer = RemoteCalendarWriter(self._client)
        self._patients = RemotePatientData(self._client)
        self._consents = RemoteConsentData(self._client)
        self._sandbox = _RemoteSandbox(self._sandbox_client, remote_practice)
        self._cache_seconds = cache_seconds
        self._publish = publish
        self._retry_seconds = retry_seconds
        self._adapter: Adapter | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None

    async def get(self, ctx: CallContext) -> Adapter:
        async with self._lock:
            fresh = time.monotonic() - self._fetched_at < self._cache_seconds
            if self._adapter is None or not fresh:
                self._adapter = await self._describe(ctx)
                self._fetched_at = time.monotonic()
            return self._adapter

    async def _describe(self, ctx: CallContext) -> Adapter:
        try:
            _, info, caps = await self._client.get_profile(ctx)
        except (Unavailable, InternalError, DeadlineExceeded):
            raise
        except OtvError:
            # NOT_FOUND and the like mean the gateway's configuration does not match the remote.
            raise InternalError("the practice's adapter server does not serve the configured practice") from None
        announces = DataCapability.CHANGES in caps
        if announces and self._publish is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self._publish))
        return Adapter(
            info=info,
            calendar=self._calendar,
            calendar_writer=self._writer if DataCapability.CALENDAR_WRITE in caps else None,
            patients=self._patients if DataCapability.PATIENTS in caps else None,
            consents=self._consents if DataCapability.CONSENT in caps else None,
            sandbox=self._sandbox if DataCapability.SANDBOX in caps else None,
            extra_capabilities=frozenset({Capability.CHANGE_FEED}) if announces else frozenset(),
        )

    async def _watch(self, publish: Callable[[Change], None]) -> None:
        """Follow the remote's changes for as long as the gateway runs, reconnecting after breaks."""
        connected_before = False
        while True:
            try:
                async for change in self._client.watch_changes(_GATEWAY_USER):
                    if not connected_before:
                        connected_before = True
                    publish(change)
            except OtvError as error:
                log.warning("change stream of remote practice %s ended: %s", self._practice, error.code.value)
            except Exception:  # the watcher must outlive any one broken stream
                log.exception("change stream of remote practice %s failed", self._practice)
            await asyncio.sleep(self._retry_seconds)
            if connected_before:
                publish(CalendarConfigChanged())  # what changed while disconnected is re-read

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._channel.close()
