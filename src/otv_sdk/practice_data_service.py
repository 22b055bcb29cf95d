"""PracticeDataService over a vendor's data ports: what a PVS serves to the otv gateway.

Only the data ports of each `Adapter` are used (`calendar`, `calendar_writer`, `patients`,
`consents`, `changes`, and `sandbox` for the profile); every rule stays in the gateway. Each call
runs like the partner services (servicers.ServicerBase): the partner from `otv-partner-id`, the
caller's deadline, a validated request, a missing port as UNIMPLEMENTED, typed errors with their
code and anything else as INTERNAL with an error id, logged by type only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeAlias, TypeVar

import grpc

from otv.v1 import practice_data_service_pb2 as pd
from otv.v1 import practice_data_service_pb2_grpc as pd_grpc
from otv_sdk import conversion as cv
from otv_sdk import data_conversion as dc
from otv_sdk.changes import BusyTimeChanged, CalendarConfigChanged, Change, ChangeOutbox, Heartbeat
from otv_sdk.errors import InvalidArgument, NotFound, Unauthenticated, Unimplemented
from otv_sdk.limits import MAX_COLUMNS, MAX_TOKEN
from otv_sdk.models import Interval
from otv_sdk.ports import Adapter, CalendarDataPort, CallContext
from otv_sdk.servicers import ServicerBase, abort_for, deadline_of

__all__ = [
    "DATA_WINDOW_MONTHS",
    "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_QUEUE_LIMIT",
    "MAX_CONSENTED_PAGE",
    "PARTNER_METADATA_KEY",
    "PracticeDataServicer",
    "add_practice_data_servicer",
    "data_capabilities",
]

# Set by the gateway on every call: the partner the call is made for.
PARTNER_METADATA_KEY = "otv-partner-id"
# The gateway's engine reads a week back and a month beyond the 24 months partners may ask for.
DATA_WINDOW_MONTHS = 27
DEFAULT_HEARTBEAT_SECONDS = 15.0
# Changes one watch may have queued; beyond that the gateway re-reads everything (see WatchDataChanges).
DEFAULT_QUEUE_LIMIT = 1000
# The gateway pages consented patients by 1000 and asks one more to see whether a next page exists.
MAX_CONSENTED_PAGE = 1001

T = TypeVar("T")
_Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def data_capabilities(adapter: Adapter) -> frozenset[dc.DataCapability]:
    """What the adapter serves, read from which ports it has. A calendar of predefined slots is one
    whose class overrides `list_predefined_slots` (the base answers None: no slots)."""
    present: set[dc.DataCapability] = set()
    if adapter.calendar_writer is not None:
        present.add(dc.DataCapability.CALENDAR_WRITE)
    if adapter.patients is not None:
        present.add(dc.DataCapability.PATIENTS)
    if adapter.consents is not None:
        present.add(dc.DataCapability.CONSENT)
    if adapter.changes is not None:
        present.add(dc.DataCapability.CHANGES)
    calendar = adapter.calendar
    if calendar is not None and type(calendar).list_predefined_slots is not CalendarDataPort.list_predefined_slots:
        present.add(dc.DataCapability.PREDEFINED_SLOTS)
    if adapter.sandbox is not None:
        present.add(dc.DataCapability.SANDBOX)
    return frozenset(present)


class _Practices:
    """The practices this server serves; any other is NOT_FOUND naming the request field."""

    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self._adapters = dict(adapters)

    async def resolve(self, practice_id: str, ctx: CallContext, field: str) -> Adapter:
        adapter = self._adapters.get(practice_id)
        if adapter is None:
            raise NotFound.field(field, "this server does not serve that practice")
        return adapter


def _partner(context: _Context, request_id: str | None) -> CallContext:
    partner = dict(context.invocation_metadata() or ()).get(PARTNER_METADATA_KEY)
    if not isinstance(partner, str) or not partner:
        raise Unauthenticated(f"calls must carry the {PARTNER_METADATA_KEY} metadata set by the gateway")
    return CallContext(partner_id=partner, deadline=deadline_of(context), request_id=request_id)


def _need(port: T | None, what: str) -> T:
    if port is None:
        raise Unimplemented(f"this practice's PVS does not serve {what}")
    return port


def _require_known(known: Iterable[str], named: Iterable[tuple[str, str]], what: str) -> None:
    """INVALID_ARGUMENT naming the first (field, id) whose id is not known."""
    lookup = frozenset(known)
    for field, value in named:
        if value not in lookup:
            raise InvalidArgument.field(field, f"is not {what}")


class PracticeDataServicer(ServicerBase, pd_grpc.PracticeDataServiceServicer):
    def __init__(
        self,
        adapters: Mapping[str, Adapter],
        *,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
    ) -> None:
        super().__init__(_Practices(adapters), _partner)
        self._heartbeat = heartbeat_seconds
        self._queue_limit = queue_limit

    async def _practice(self, name: str, ctx: CallContext, field: str = "parent") -> tuple[str, Adapter]:
        practice_id = cv.practice_from_parent(name, field)
        return practice_id, await self._adapter(practice_id, ctx, field)

    async def _patient(self, name: str, ctx: CallContext) -> tuple[str, str, Adapter]:
        practice_id, patient_id = cv.child_id_from_proto(name, "name", "patients")
        return practice_id, patient_id, await self._adapter(practice_id, ctx, "name")

    async def _window_read(
        self, request: Any, ctx: CallContext
    ) -> tuple[str, CalendarDataPort, Interval, tuple[str, ...]]:
        """Parent, window and columns of a windowed read; named columns must be the practice's."""
        practice_id, adapter = await self._practice(request.parent, ctx)
        window = cv.window_from_proto(request, months=DATA_WINDOW_MONTHS)
        columns = cv.column_ids_from_proto(request.columns, practice_id, limit=MAX_COLUMNS)
        calendar = _need(adapter.calendar, "calendar data")
        if columns:
            known = (await calendar.list_calendars(ctx)).column_ids()
            named = ((f"columns[{i}]", c) for i, c in enumerate(columns))
            _require_known(known, named, "a column of this practice")
        return practice_id, calendar, window, columns

    async def GetPracticeProfile(
        self, request: pd.GetPracticeProfileRequest, context: _Context
    ) -> pd.GetPracticeProfileResponse:
        async def handle(ctx: CallContext) -> pd.GetPracticeProfileResponse:
            _, adapter = await self._practice(request.name, ctx, "name")
            profile = await _need(adapter.calendar, "calendar data").get_practice(ctx)
            return dc.profile_to_proto(profile, adapter.info, data_capabilities(adapter))

        return await self._run(context, "GetPracticeProfile", handle)

    async def GetCalendarConfig(
        self, request: pd.GetCalendarConfigRequest, context: _Context
    ) -> pd.GetCalendarConfigResponse:
        async def handle(ctx: CallContext) -> pd.GetCalendarConfigResponse:
            practice_id, adapter = await self._practice(request.parent, ctx)
            calendar = await _need(adapter.calendar, "calendar data").list_calendars(ctx)
            return pd.GetCalendarConfigResponse(**cv.calendar_to_proto(practice_id, calendar))  # type: ignore[arg-type]

        return await self._run(context, "GetCalendarConfig", handle)

    async def ListWorkingTimeRules(
        self, request: pd.ListWorkingTimeRulesRequest, context: _Context
    ) -> pd.ListWorkingTimeRulesResponse:
        async def handle(ctx: CallContext) -> pd.ListWorkingTimeRulesResponse:
            practice_id, adapter = await self._practice(request.parent, ctx)
            window = cv.window_from_proto(request, months=DATA_WINDOW_MONTHS)
            rules = await _need(adapter.calendar, "calendar data").list_working_time_rules(ctx, window)
            return dc.working_time_rules_to_proto(practice_id, rules)

        return await self._run(context, "ListWorkingTimeRules", handle)

    async def ListColumnAbsences(
        self, request: pd.ListColumnAbsencesRequest, context: _Context
    ) -> pd.ListColumnAbsencesResponse:
        async def handle(ctx: CallContext) -> pd.ListColumnAbsencesResponse:
            practice_id, calendar, window, columns = await self._window_read(request, ctx)
            absences = await calendar.list_absences(ctx, window, columns)
            return pd.ListColumnAbsencesResponse(absences=[cv.absence_to_proto(practice_id, a) for a in absences])

        return await self._run(context, "ListColumnAbsences", handle)

    async def ListCalendarEntries(
        self, request: pd.ListCalendarEntriesRequest, context: _Context
    ) -> pd.ListCalendarEntriesResponse:
        async def handle(ctx: CallContext) -> pd.ListCalendarEntriesResponse:
            practice_id, calendar, window, columns = await self._window_read(request, ctx)
            entries = await calendar.list_busy_times(ctx, window, columns)
            response = pd.ListCalendarEntriesResponse()
            dc.entries_to_proto(practice_id, window, entries, into=response.entries)
            return response

        return await self._run(context, "ListCalendarEntries", handle)

    async def ListPredefinedSlots(
        self, request: pd.ListPredefinedSlotsRequest, context: _Context
    ) -> pd.ListPredefinedSlotsResponse:
        async def handle(ctx: CallContext) -> pd.ListPredefinedSlotsResponse:
            practice_id, calendar, window, columns = await self._window_read(request, ctx)
            slots = _need(await calendar.list_predefined_slots(ctx, window, columns), "predefined slots")
            response = pd.ListPredefinedSlotsResponse()
            dc.entries_to_proto(practice_id, window, slots, into=response.slots)
            return response

        return await self._run(context, "ListPredefinedSlots", handle)

    async def WriteCalendarEntry(
        self, request: pd.WriteCalendarEntryRequest, context: _Context
    ) -> pd.WriteCalendarEntryResponse:
        async def handle(ctx: CallContext) -> pd.WriteCalendarEntryResponse:
            practice_id, adapter = await self._practice(request.parent, ctx)
            entry = dc.calendar_entry_from_proto(practice_id, request, ctx.partner_id)
            writer = _need(adapter.calendar_writer, "calendar writes")
            config = await _need(adapter.calendar, "calendar data").list_calendars(ctx)
            _require_known(config.column_ids(), [("column", entry.column_id)], "a column of this practice")
            types = (t.id for t in config.appointment_types)
            named = [("appointment_type", entry.appointment_type_id)]
            _require_known(types, named, "an appointment type of this practice")
            written = await writer.write_appointment(ctx, entry)
            return pd.WriteCalendarEntryResponse(entry_id=written.pvs_id, extra=written.extra)

        return await self._run(context, "WriteCalendarEntry", handle)

    async def DeleteCalendarEntry(
        self, request: pd.DeleteCalendarEntryRequest, context: _Context
    ) -> pd.DeleteCalendarEntryResponse:
        async def handle(ctx: CallContext) -> pd.DeleteCalendarEntryResponse:
            practice_id, adapter = await self._practice(request.parent, ctx)
            if not request.entry_id:
                raise InvalidArgument.field("entry_id", "is required")
            entry_id = cv.bounded_text(request.entry_id, "entry_id", MAX_TOKEN)
            removed = await _need(adapter.calendar_writer, "calendar writes").delete_appointment(ctx, entry_id)
            return dc.removed_entry_to_proto(practice_id, removed)

        return await self._run(context, "DeleteCalendarEntry", handle)

    async def ListPatientsBornOn(
        self, request: pd.ListPatientsBornOnRequest, context: _Context
    ) -> pd.ListPatientsBornOnResponse:
        async def handle(ctx: CallContext) -> pd.ListPatientsBornOnResponse:
            practice_id, adapter = await self._practice(request.parent, ctx)
            born = cv.birth_date_from_proto(request, "birth_date", "birth_date")
            records = await _need(adapter.patients, "patient records").list_patients_born_on(ctx, born)
            return pd.ListPatientsBornOnResponse(patients=[dc.patient_record_to_proto(practice_id, r) for r in records])

        return await self._run(context, "ListPatientsBornOn", handle)

    async def CreatePatient(self, request: pd.CreatePatientRequest, context: _Context) -> pd.CreatePatientResponse:
        async def handle(ctx: CallContext) -> pd.CreatePatientResponse:
            practice_id, adapter = await self._practice(request.parent, ctx)
            patient = dc.new_patient_from_proto(request)
            port = _need(adapter.patients, "patient records")
            record = await port.create_patient(ctx, patient, request.request_id)
            return pd.CreatePatientResponse(patient=dc.patient_record_to_proto(practice_id, record))

        return await self._run(context, "CreatePatient", handle, request.request_id)

    async def AppendPatientNote(
        self, request: pd.AppendPatientNoteRequest, context: _Context
    ) -> pd.AppendPatientNoteResponse:
        async def handle(ctx: CallContext) -> pd.AppendPatientNoteResponse:
            _, patient_id, adapter = await self._patient(request.name, ctx)
            line = dc.note_line_from_proto(request.line)
            port = _need(adapter.patients, "patient records")
            await port.append_patient_note(ctx, patient_id, line, request.request_id)
            return pd.AppendPatientNoteResponse()

        return await self._run(context, "AppendPatientNote", handle, request.request_id)

    async def ListConsentedPatients(
        self, request: pd.ListConsentedPatientsRequest, context: _Context
    ) -> pd.ListConsentedPatientsResponse:
        async def handle(ctx: CallContext) -> pd.ListConsentedPatientsResponse:
            practice_id, adapter = await self._practice(request.parent, ctx)
            if not 1 <= request.page_size <= MAX_CONSENTED_PAGE:
                raise InvalidArgument.field("page_size", f"must be 1 to {MAX_CONSENTED_PAGE}")
            after = cv.bounded_text(request.after_patient, "after_patient", MAX_TOKEN)
            port = _need(adapter.patients, "patient records")
            records = await port.list_consented_patients(ctx, after, request.page_size)
            return pd.ListConsentedPatientsResponse(
                patients=[dc.patient_record_to_proto(practice_id, r) for r in records[: request.page_size]]
            )

        return await self._run(context, "ListConsentedPatients", handle)

    async def ReadConsent(self, request: pd.ReadConsentRequest, context: _Context) -> pd.ReadConsentResponse:
        async def handle(ctx: CallContext) -> pd.ReadConsentResponse:
            practice_id, patient_id, adapter = await self._patient(request.name, ctx)
            consent = await _need(adapter.consents, "consent records").read_consent(ctx, patient_id)
            return pd.ReadConsentResponse(consent=cv.consent_to_proto(practice_id, consent))

        return await self._run(context, "ReadConsent", handle)

    async def WriteConsent(self, request: pd.WriteConsentRequest, context: _Context) -> pd.WriteConsentResponse:
        async def handle(ctx: CallContext) -> pd.WriteConsentResponse:
            practice_id, patient_id, adapter = await self._patient(request.name, ctx)
            state = cv.consent_state_from_proto(request.state, "state")
            evidence = cv.evidence_from_proto(request, "evidence", "evidence")
            actor = cv.consent_actor_from_proto(request.set_by, "set_by")
            port = _need(adapter.consents, "consent records")
            consent = await port.write_consent(ctx, patient_id, state, evidence, actor)
            return pd.WriteConsentResponse(consent=cv.consent_to_proto(practice_id, consent))

        return await self._run(context, "WriteConsent", handle)

    async def WatchDataChanges(
        self, request: pd.WatchDataChangesRequest, context: _Context
    ) -> AsyncIterator[pd.WatchDataChangesResponse]:
        """Entry and configuration changes as the adapter publishes them, a heartbeat when idle.

        A gateway that cannot keep up gets one ConfigChange in place of its backlog: it re-reads
        everything anyway, and the PVS never holds more than `queue_limit` changes per watch."""

        async def handle(ctx: CallContext) -> tuple[str, ChangeOutbox]:
            practice_id, adapter = await self._practice(request.parent, ctx)
            return practice_id, _need(adapter.changes, "change notifications")

        practice_id, outbox = await self._run(context, "WatchDataChanges", handle)
        queue: asyncio.Queue[BusyTimeChanged | CalendarConfigChanged] = asyncio.Queue(self._queue_limit)

        def deliver(change: Change) -> None:
            if not isinstance(change, BusyTimeChanged | CalendarConfigChanged):
                return  # a partner's appointment carries patient data; the gateway has it anyway
            if queue.full():
                while not queue.empty():
                    queue.get_nowait()
                change = CalendarConfigChanged()
            queue.put_nowait(change)

        outbox.subscribe(deliver)
        try:
            while True:
                item: BusyTimeChanged | CalendarConfigChanged | Heartbeat
                try:
                    item = await asyncio.wait_for(queue.get(), self._heartbeat)
                except TimeoutError:
                    item = Heartbeat()
                yield dc.data_change_to_proto(practice_id, item)
        except Exception as error:
            await abort_for(context, "WatchDataChanges", error)
        finally:
            outbox.unsubscribe(deliver)


def add_practice_data_servicer(
    server: grpc.aio.Server,
    adapters: Mapping[str, Adapter],
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    *,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
) -> str:
    """Register PracticeDataService for `{practice_id: adapter}`; return its full name."""
    servicer = PracticeDataServicer(adapters, heartbeat_seconds=heartbeat_seconds, queue_limit=queue_limit)
    pd_grpc.add_PracticeDataServiceServicer_to_server(servicer, server)
    return pd.DESCRIPTOR.services_by_name["PracticeDataService"].full_name
