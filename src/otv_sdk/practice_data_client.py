"""The gateway's side of PracticeDataService: a remote PVS as data ports.

The ports here are the same the vendor implements (`CalendarDataPort`, `CalendarWriterPort`,
`PatientDataPort`, `ConsentDataPort`), so the gateway builds its rules on a remote practice exactly
as on an in-process one. Every call carries the partner in `otv-partner-id` and the time left of
the partner's deadline; a failed call raises the `OtvError` its status stands for (as the partner
client does), and an answer the parsers refuse is the PVS's fault: INTERNAL.

Unary calls are all the ports make, so they work over any grpc.aio channel, including the
gateway's connector channels; only `watch_changes` streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from otv.v1 import practice_data_service_pb2 as pd
from otv.v1 import practice_data_service_pb2_grpc as pd_grpc
from otv_sdk import conversion as cv
from otv_sdk import data_conversion as dc
from otv_sdk.changes import Change, Heartbeat
from otv_sdk.errors import InternalError, OtvError, Unimplemented
from otv_sdk.models import (
    Absence,
    AdapterInfo,
    Calendar,
    ColumnIntervals,
    Consent,
    ConsentActor,
    ConsentEvidence,
    ConsentState,
    Interval,
    NewPatient,
    PatientRecord,
    PracticeProfile,
    WorkingTimeRules,
)
from otv_sdk.ports import (
    CalendarDataPort,
    CalendarEntry,
    CalendarWriterPort,
    CallContext,
    ConsentDataPort,
    PatientDataPort,
    WrittenEntry,
)
from otv_sdk.practice_data_service import PARTNER_METADATA_KEY
from otv_sdk.resources import format_name
from otv_sdk.status import error_from_rpc_error

if TYPE_CHECKING:
    from otv.v1.practice_data_service_pb2_grpc import PracticeDataServiceAsyncStub

__all__ = [
    "PracticeDataClient",
    "RemoteCalendarData",
    "RemoteCalendarWriter",
    "RemoteConsentData",
    "RemotePatientData",
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")


class PracticeDataClient:
    """One practice's PracticeDataService on a channel; the ports below share it."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        practice_id: str,
        *,
        link_errors: Callable[[OtvError], OtvError] | None = None,
    ) -> None:
        """`link_errors` rewrites an error the remote answered with before it is raised: how a
        caller says what a failed link means to it (the gateway: rejected credentials are its own
        fault, not the partner's)."""
        self.stub: PracticeDataServiceAsyncStub = pd_grpc.PracticeDataServiceStub(channel)
        self.practice_id = practice_id
        self.parent = format_name(practice_id)
        self._link_errors = link_errors

    def _error(self, error: grpc.aio.AioRpcError) -> OtvError:
        translated = error_from_rpc_error(error)
        return translated if self._link_errors is None else self._link_errors(translated)

    async def call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        partner_id: str,
        timeout: float | None,
        parse: Callable[[Resp], T],
    ) -> T:
        """One unary call made for partner_id; errors as `OtvError`, a malformed answer INTERNAL."""
        try:
            response = await method(request, timeout=timeout, metadata=((PARTNER_METADATA_KEY, partner_id),))
        except grpc.aio.AioRpcError as error:
            raise self._error(error) from None
        try:
            return parse(response)
        except (OtvError, ValueError) as error:
            raise InternalError(f"the practice system sent a malformed answer: {error}") from error

    async def get_profile(self, ctx: CallContext) -> tuple[PracticeProfile, AdapterInfo, frozenset[dc.DataCapability]]:
        request = pd.GetPracticeProfileRequest(name=self.parent)
        return await self.call(
            self.stub.GetPracticeProfile, request, ctx.partner_id, ctx.time_remaining(), dc.profile_from_proto
        )

    async def watch_changes(self, partner_id: str) -> AsyncIterator[Change]:
        """Entry and configuration changes as the PVS announces them, until the stream ends.

        Heartbeats only keep the stream open and are not passed on. A connector channel cannot
        stream: that raises Unimplemented (connectors announce changes on their own stream)."""
        request = pd.WatchDataChangesRequest(parent=self.parent)
        try:
            call = self.stub.WatchDataChanges(request, metadata=((PARTNER_METADATA_KEY, partner_id),))
        except grpc.aio.AioRpcError as error:
            raise self._error(error) from None
        try:
            async for response in call:
                try:
                    change = dc.data_change_from_proto(self.practice_id, response)
                except OtvError as error:
                    raise InternalError(f"the practice system sent a malformed change: {error}") from error
                if not isinstance(change, Heartbeat):
                    yield change
        except grpc.aio.AioRpcError as error:
            raise self._error(error) from None
        finally:
            call.cancel()


class _Remote:
    def __init__(self, client: PracticeDataClient) -> None:
        self._client = client

    def _window(self, factory: Any, window: Interval, column_ids: Sequence[str]) -> Any:
        p = self._client.practice_id
        return factory(
            parent=self._client.parent,
            window=cv.interval_to_proto(window),
            columns=[format_name(p, "columns", c) for c in column_ids],
        )


class RemoteCalendarData(_Remote, CalendarDataPort):
    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        profile, _, _ = await self._client.get_profile(ctx)
        return profile

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        c = self._client
        request = pd.GetCalendarConfigRequest(parent=c.parent)
        return await c.call(
            c.stub.GetCalendarConfig,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: cv.calendar_from_proto(c.practice_id, r),
        )

    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        c = self._client
        request = pd.ListWorkingTimeRulesRequest(parent=c.parent, window=cv.interval_to_proto(window))
        return await c.call(
            c.stub.ListWorkingTimeRules,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: dc.working_time_rules_from_proto(c.practice_id, r),
        )

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        c = self._client
        request = self._window(pd.ListColumnAbsencesRequest, window, column_ids)

        def parse(r: pd.ListColumnAbsencesResponse) -> list[Absence]:
            return [cv.absence_from_proto(c.practice_id, a, f"absences[{i}]") for i, a in enumerate(r.absences)]

        return await c.call(c.stub.ListColumnAbsences, request, ctx.partner_id, ctx.time_remaining(), parse)

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        c = self._client
        request = self._window(pd.ListCalendarEntriesRequest, window, column_ids)
        return await c.call(
            c.stub.ListCalendarEntries,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: dc.entries_from_proto(c.practice_id, r.entries, "entries"),
        )

    async def list_predefined_slots(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals] | None:
        """None when the PVS answers UNIMPLEMENTED: its calendar is no list of slots."""
        c = self._client
        request = self._window(pd.ListPredefinedSlotsRequest, window, column_ids)
        try:
            return await c.call(
                c.stub.ListPredefinedSlots,
                request,
                ctx.partner_id,
                ctx.time_remaining(),
                lambda r: dc.entries_from_proto(c.practice_id, r.slots, "slots"),
            )
        except Unimplemented:
            return None


class RemoteCalendarWriter(_Remote, CalendarWriterPort):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        """Made for the partner the booking is from, which the PVS shows as its source."""
        c = self._client
        request = dc.calendar_entry_to_proto(c.practice_id, entry)

        def parse(r: pd.WriteCalendarEntryResponse) -> WrittenEntry:
            if not r.entry_id:
                raise InternalError("the practice system wrote an entry without an id")
            return WrittenEntry(r.entry_id, r.extra)

        return await c.call(c.stub.WriteCalendarEntry, request, entry.partner_id, ctx.time_remaining(), parse)

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        c = self._client
        request = pd.DeleteCalendarEntryRequest(parent=c.parent, entry_id=pvs_id)
        return await c.call(
            c.stub.DeleteCalendarEntry,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: dc.removed_entry_from_proto(c.practice_id, r),
        )


class RemotePatientData(_Remote, PatientDataPort):
    def _records(self, records: Sequence[pd.PatientRecord]) -> list[PatientRecord]:
        p = self._client.practice_id
        return [dc.patient_record_from_proto(p, r, f"patients[{i}]") for i, r in enumerate(records)]

    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        c = self._client
        request = pd.ListPatientsBornOnRequest(parent=c.parent, birth_date=cv.date_to_proto(birth_date))
        return await c.call(
            c.stub.ListPatientsBornOn,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: self._records(r.patients),
        )

    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        c = self._client
        request = dc.new_patient_to_proto(c.practice_id, patient, request_id)
        return await c.call(
            c.stub.CreatePatient,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: dc.patient_record_from_proto(c.practice_id, r.patient, "patient"),
        )

    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        c = self._client
        request = pd.AppendPatientNoteRequest(
            name=format_name(c.practice_id, "patients", patient_id), request_id=request_id, line=line
        )
        await c.call(c.stub.AppendPatientNote, request, ctx.partner_id, ctx.time_remaining(), lambda r: None)

    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        c = self._client
        request = pd.ListConsentedPatientsRequest(parent=c.parent, page_size=limit, after_patient=after)
        return await c.call(
            c.stub.ListConsentedPatients,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: self._records(r.patients),
        )


class RemoteConsentData(_Remote, ConsentDataPort):
    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        c = self._client
        request = pd.ReadConsentRequest(name=format_name(c.practice_id, "patients", patient_id))
        return await c.call(
            c.stub.ReadConsent,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: cv.consent_from_proto(c.practice_id, r.consent, "consent"),
        )

    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        c = self._client
        request = pd.WriteConsentRequest(
            name=format_name(c.practice_id, "patients", patient_id),
            state=cv.consent_state_to_proto(state),
            set_by=cv.consent_actor_to_proto(actor),
        )
        if evidence is not None:
            request.evidence.CopyFrom(cv.evidence_to_proto(evidence))
        return await c.call(
            c.stub.WriteConsent,
            request,
            ctx.partner_id,
            ctx.time_remaining(),
            lambda r: cv.consent_from_proto(c.practice_id, r.consent, "consent"),
        )
