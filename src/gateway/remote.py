"""The remote transport: adapter ports that forward to a vendor's adapter server over gRPC.

Same ports as an in-process plugin, so the rest of the gateway cannot tell the two apart. Each
call carries the partner's identity (`otv-partner-id`) and the time left of the partner's
deadline. What the practice supports is learned from the remote's GetPractice and cached
briefly, so a vendor can enable a port without a gateway restart.

A failure of the link is the gateway's problem, not the partner's: the remote rejecting the
gateway's credentials becomes INTERNAL, an unreachable remote UNAVAILABLE; the remote's own
answers about the request (INVALID_ARGUMENT, NOT_FOUND, ...) pass through unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from otv_sdk.adapter_server import PARTNER_METADATA_KEY
from otv_sdk.client import Metadata, PartnerClient
from otv_sdk.errors import (
    DeadlineExceeded,
    InternalError,
    NotFound,
    OtvError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from otv_sdk.models import (
    Absence,
    Calendar,
    Capability,
    ColumnIntervals,
    Consent,
    ConsentEvidence,
    ConsentState,
    Interval,
    Patient,
    PracticeProfile,
    Slot,
)
from otv_sdk.ports import (
    Adapter,
    CalendarEntry,
    CalendarWriterPort,
    CallContext,
    ConsentPort,
    MatchOutcome,
    Page,
    PageRequest,
    PatientLookupPort,
    PatientQuery,
    ReaderPort,
    SandboxPort,
    SlotQuery,
    SlotRequest,
    WrittenEntry,
)
from otv_sdk.scenario import Scenario

__all__ = ["RemoteAdapterSource"]

T = TypeVar("T")


class _Link:
    """The client plus the per-call translation of context and errors."""

    def __init__(self, client: PartnerClient, remote_practice: str) -> None:
        self.client = client
        self.practice = remote_practice

    async def call(self, ctx: CallContext, work: Callable[[float | None, Metadata], Awaitable[T]]) -> T:
        try:
            return await work(ctx.time_remaining(), ((PARTNER_METADATA_KEY, ctx.partner_id),))
        except (Unauthenticated, PermissionDenied):
            raise InternalError("the practice's adapter server rejected the gateway's credentials") from None
        except Unavailable:
            raise Unavailable("the practice's system cannot be reached right now") from None


class _RemoteReader(ReaderPort):
    def __init__(self, link: _Link) -> None:
        self._link = link

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        practice = await self._link.call(
            ctx, lambda t, m: self._link.client.get_practice(self._link.practice, timeout=t, metadata=m)
        )
        return PracticeProfile(practice.display_name, practice.time_zone)

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return await self._link.call(
            ctx, lambda t, m: self._link.client.list_calendars(self._link.practice, timeout=t, metadata=m)
        )

    async def list_working_hours(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.list_working_hours(
                self._link.practice, window, column_ids, timeout=t, metadata=m
            ),
        )

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.list_absences(
                self._link.practice, window, column_ids, timeout=t, metadata=m
            ),
        )

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.list_busy_times(
                self._link.practice, window, column_ids, timeout=t, metadata=m
            ),
        )

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.get_free_time(
                self._link.practice, window, column_ids, timeout=t, metadata=m
            ),
        )

    async def find_slots(self, ctx: CallContext, query: SlotQuery) -> Page[Slot]:
        return await self._link.call(
            ctx, lambda t, m: self._link.client.find_slots(self._link.practice, query, timeout=t, metadata=m)
        )


class _RemoteCalendarWriter(CalendarWriterPort):
    """Calendar writes on a remote PVS: BookAppointment with the reference as request id, and
    CancelAppointment (see otv_sdk.calendar_writer_service)."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        slot = SlotRequest(entry.appointment_type_id, entry.column_id, entry.interval.start, entry.patient_id)
        as_partner = CallContext(partner_id=entry.partner_id, deadline=ctx.deadline, request_id=entry.reference)
        appointment = await self._link.call(
            as_partner,
            lambda t, m: self._link.client.book_appointment(
                self._link.practice, slot, request_id=entry.reference, timeout=t, metadata=m
            ),
        )
        return WrittenEntry(appointment.id, appointment.extra)

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        try:
            appointment = await self._link.call(
                ctx,
                lambda t, m: self._link.client.cancel_appointment(
                    self._link.practice, pvs_id, "", request_id=f"delete-{pvs_id}", timeout=t, metadata=m
                ),
            )
        except NotFound:
            return None  # already gone: a retried delete
        return CalendarEntry(
            reference="",
            column_id=appointment.column_id,
            appointment_type_id=appointment.appointment_type_id,
            interval=appointment.interval,
            patient_id=appointment.patient_id,
            partner_id=ctx.partner_id,
            category="",
        )


class _RemotePatientLookup(PatientLookupPort):
    def __init__(self, link: _Link) -> None:
        self._link = link

    async def find_or_create_patient(self, ctx: CallContext, query: PatientQuery) -> tuple[Patient, MatchOutcome]:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.find_or_create_patient(
                self._link.practice, query, request_id=ctx.request_id, timeout=t, metadata=m
            ),
        )

    async def list_shared_patients(self, ctx: CallContext, page: PageRequest) -> Page[Patient]:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.list_shared_patients(self._link.practice, page, timeout=t, metadata=m),
        )


class _RemoteConsent(ConsentPort):
    def __init__(self, link: _Link) -> None:
        self._link = link

    async def get_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.get_consent(self._link.practice, patient_id, timeout=t, metadata=m),
        )

    async def record_consent(
        self, ctx: CallContext, patient_id: str, state: ConsentState, evidence: ConsentEvidence | None
    ) -> Consent:
        return await self._link.call(
            ctx,
            lambda t, m: self._link.client.record_consent(
                self._link.practice,
                patient_id,
                state,
                evidence,
                request_id=ctx.request_id,
                timeout=t,
                metadata=m,
            ),
        )


class _RemoteSandbox(SandboxPort):
    def __init__(self, link: _Link) -> None:
        self._link = link

    async def load_scenario(self, ctx: CallContext, scenario: Scenario) -> None:
        await self._link.call(
            ctx,
            lambda t, m: self._link.client.load_scenario(self._link.practice, scenario, timeout=t, metadata=m),
        )

    async def reset(self, ctx: CallContext) -> None:
        await self._link.call(
            ctx, lambda t, m: self._link.client.reset_sandbox(self._link.practice, timeout=t, metadata=m)
        )


class RemoteAdapterSource:
    """Builds the `Adapter` of a remote practice from what the remote says it supports."""

    def __init__(self, client: PartnerClient, remote_practice: str, *, cache_seconds: float = 60.0) -> None:
        """`client` reaches the adapter server: over a channel of its own, or a connector's (connectors.py)."""
        self._link = _Link(client, remote_practice)
        self._cache_seconds = cache_seconds
        self._adapter: Adapter | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, ctx: CallContext) -> Adapter:
        async with self._lock:
            fresh = time.monotonic() - self._fetched_at < self._cache_seconds
            if self._adapter is None or not fresh:
                self._adapter = await self._describe(ctx)
                self._fetched_at = time.monotonic()
            return self._adapter

    async def _describe(self, ctx: CallContext) -> Adapter:
        try:
            practice = await self._link.call(
                ctx, lambda t, m: self._link.client.get_practice(self._link.practice, timeout=t, metadata=m)
            )
        except (Unavailable, InternalError, DeadlineExceeded):
            raise
        except OtvError:
            # NOT_FOUND and the like mean the gateway's configuration does not match the remote.
            raise InternalError("the practice's adapter server does not serve the configured practice") from None
        link, caps = self._link, practice.capabilities
        return Adapter(
            info=practice.adapter,
            reader=_RemoteReader(link),
            calendar_writer=_RemoteCalendarWriter(link) if Capability.WRITER in caps else None,
            patient_lookup=_RemotePatientLookup(link) if Capability.PATIENT_LOOKUP in caps else None,
            consent=_RemoteConsent(link) if Capability.CONSENT in caps else None,
            sandbox=_RemoteSandbox(link) if Capability.SANDBOX in caps else None,
            extra_capabilities=caps & {Capability.CHANGE_FEED},
        )

    async def aclose(self) -> None:
        await self._link.client.close()
