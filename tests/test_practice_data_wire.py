"""PracticeDataService end to end: an in-memory PVS behind `serve_adapters`, read and written
through the gateway's remote data ports over a real loopback gRPC connection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import TYPE_CHECKING

import grpc
import pytest

from gateway.connectors import ConnectorHub
from otv.v1 import connector_service_pb2, time_pb2
from otv.v1 import practice_data_service_pb2 as pd
from otv_sdk import conversion as cv
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.changes import AppointmentChanged, BusyTimeChanged, CalendarConfigChanged, Change, ChangeOutbox
from otv_sdk.data_conversion import DataCapability, removed_entry_from_proto
from otv_sdk.errors import InternalError, InvalidArgument, NotFound, Unimplemented
from otv_sdk.models import (
    Absence,
    AdapterInfo,
    Appointment,
    AppointmentState,
    AppointmentType,
    Calendar,
    ClosedDay,
    Column,
    ColumnIntervals,
    ColumnKind,
    Consent,
    ConsentActor,
    ConsentEvidence,
    ConsentMethod,
    ConsentState,
    Contact,
    ContactKind,
    Interval,
    NewPatient,
    PatientRecord,
    PracticeProfile,
    Shift,
    WeeklySpan,
    WorkingTimeRules,
)
from otv_sdk.ports import (
    Adapter,
    CalendarDataPort,
    CalendarEntry,
    CalendarWriterPort,
    CallContext,
    ConsentDataPort,
    PatientDataPort,
    WrittenEntry,
)
from otv_sdk.practice_data_client import (
    PracticeDataClient,
    RemoteCalendarData,
    RemoteCalendarWriter,
    RemoteConsentData,
    RemotePatientData,
)
from otv_sdk.timeline import IntervalArray, from_datetime

if TYPE_CHECKING:
    from otv.v1.practice_data_service_pb2_grpc import PracticeDataServiceAsyncStub

PRACTICE = "praxis"
PARTNER = "partner-a"
SECRET = "Frau Erika Mustermann, Diagnose vertraulich"
MONDAY = datetime(2027, 3, 22, tzinfo=UTC)
WINDOW = Interval(MONDAY, MONDAY + timedelta(days=7))
INFO = AdapterInfo("acme", "praxis-pvs", "1.2.3")

CALENDAR = Calendar(
    columns=(
        Column("berg", "Dr. Berg", ColumnKind.PRACTITIONER, weekly_hours=(WeeklySpan(1, clock(8), clock(12)),)),
        Column("raum-1", "Raum 1", ColumnKind.ROOM),
    ),
    appointment_types=(AppointmentType("kontrolle", "Kontrolle", timedelta(minutes=20), ("berg",)),),
)
RULES = WorkingTimeRules(
    shifts=(
        Shift("berg", date(2027, 3, 22), date(2027, 3, 24), (WeeklySpan(2, clock(14), clock(18)),)),
        Shift("raum-1", date(2027, 3, 25), date(2027, 3, 25), ()),  # a day off
    ),
    closed_days=(ClosedDay(date(2027, 3, 26), None), ClosedDay(date(2027, 3, 27), "berg")),
)
# Many entries, the first starting before the window (entries overlapping it come unclipped).
ENTRIES = IntervalArray.of(
    [(from_datetime(MONDAY) - 600, from_datetime(MONDAY) + 600)]
    + [(from_datetime(MONDAY) + 900 * i, from_datetime(MONDAY) + 900 * i + 1200) for i in range(1, 2000)]
)


def ctx(partner: str = PARTNER) -> CallContext:
    return CallContext(partner_id=partner, deadline=time.monotonic() + 5)


class FakeCalendar(CalendarDataPort):
    def __init__(self) -> None:
        self.fail = False

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        return PracticeProfile("Praxis Berg", "Europe/Berlin")

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return CALENDAR

    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        return RULES

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        absences = [Absence("berg", Interval(MONDAY - timedelta(days=2), MONDAY + timedelta(days=1)))]
        return [a for a in absences if not column_ids or a.column_id in column_ids]

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        if self.fail:
            raise RuntimeError(SECRET)
        columns = [ColumnIntervals("berg", ENTRIES), ColumnIntervals("raum-1", IntervalArray.of())]
        return [c for c in columns if not column_ids or c.column_id in column_ids]


class SlotCalendar(FakeCalendar):
    async def list_predefined_slots(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals] | None:
        start = from_datetime(window.start)
        return [ColumnIntervals("berg", IntervalArray.of([(start + 3600, start + 4800)]))]


class FakeWriter(CalendarWriterPort):
    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, CalendarEntry]] = {}

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        if entry.reference not in self.entries:
            self.entries[entry.reference] = (f"T{len(self.entries) + 1}", entry)
        return WrittenEntry(self.entries[entry.reference][0], extra=True)

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        for reference, (entry_id, entry) in list(self.entries.items()):
            if entry_id == pvs_id:
                del self.entries[reference]
                return entry
        return None


class FakePatients(PatientDataPort):
    def __init__(self) -> None:
        self.records = [
            PatientRecord("p1", "Erika", "Mustermann", date(1980, 5, 1), (Contact(ContactKind.EMAIL, "e@x.de"),)),
            PatientRecord("p2", "Max", "Muster", None, consent=ConsentState.GRANTED, create_time=MONDAY),
        ]
        self.created: dict[str, PatientRecord] = {}
        self.notes: dict[str, list[str]] = {}
        self.seen_notes: set[str] = set()

    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        return [r for r in self.records if r.birth_date == birth_date]

    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        if request_id not in self.created:
            record = PatientRecord(
                f"p{len(self.records) + 1}",
                patient.given_name,
                patient.family_name,
                patient.birth_date,
                patient.contacts,
                created_online_by=ctx.partner_id,
                create_time=MONDAY,
            )
            self.records.append(record)
            self.created[request_id] = record
            self.notes[record.id] = [patient.note]
        return self.created[request_id]

    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        if request_id not in self.seen_notes:
            self.seen_notes.add(request_id)
            self.notes[patient_id].append(line)

    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        granted = sorted((r for r in self.records if r.consent is ConsentState.GRANTED), key=lambda r: r.id)
        return [r for r in granted if r.id > after][:limit]


class FakeConsents(ConsentDataPort):
    def __init__(self) -> None:
        self.consents: dict[tuple[str, str], Consent] = {}

    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        if patient_id not in {"p1", "p2"}:
            raise NotFound("no such patient")
        return self.consents.get((ctx.partner_id, patient_id), Consent(patient_id, ConsentState.OPEN))

    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        consent = Consent(patient_id, state, evidence, actor, MONDAY)
        self.consents[(ctx.partner_id, patient_id)] = consent
        return consent


class WatchedOutbox(ChangeOutbox):
    """Tells the test when a watch has subscribed, so nothing is published before it listens."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = asyncio.Event()

    def subscribe(self, subscriber: Callable[[Change], None]) -> None:
        super().subscribe(subscriber)
        self.subscribed.set()


@dataclass
class Env:
    server: AdapterServer
    channel: grpc.aio.Channel
    calendar: FakeCalendar
    writer: FakeWriter
    patients: FakePatients
    outbox: WatchedOutbox

    def client(self, practice: str = PRACTICE) -> PracticeDataClient:
        return PracticeDataClient(self.channel, practice)

    @property
    def stub(self) -> PracticeDataServiceAsyncStub:
        return self.client().stub


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    calendar, writer, patients, outbox = FakeCalendar(), FakeWriter(), FakePatients(), WatchedOutbox()
    full = Adapter(
        INFO, calendar=calendar, calendar_writer=writer, patients=patients, consents=FakeConsents(), changes=outbox
    )
    adapters = {
        PRACTICE: full,
        "bare": Adapter(INFO, calendar=FakeCalendar()),
        "slots": replace(full, calendar=SlotCalendar()),
    }
    server = await serve_adapters(adapters, heartbeat_seconds=0.1)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Env(server, channel, calendar, writer, patients, outbox)
    finally:
        await channel.close()
        await server.stop(0)


# --- round trips ---------------------------------------------------------------------------------


async def test_profile_reports_capabilities_from_the_ports(env: Env) -> None:
    profile, info, capabilities = await env.client().get_profile(ctx())
    assert profile == PracticeProfile("Praxis Berg", "Europe/Berlin")
    assert info == INFO
    assert capabilities == {
        DataCapability.CALENDAR_WRITE,
        DataCapability.PATIENTS,
        DataCapability.CONSENT,
        DataCapability.CHANGES,
    }
    assert (await env.client("slots").get_profile(ctx()))[2] >= {DataCapability.PREDEFINED_SLOTS}
    assert (await env.client("bare").get_profile(ctx()))[2] == frozenset()


async def test_calendar_reads_round_trip(env: Env) -> None:
    calendar = RemoteCalendarData(env.client())
    assert await calendar.get_practice(ctx()) == PracticeProfile("Praxis Berg", "Europe/Berlin")
    assert await calendar.list_calendars(ctx()) == CALENDAR
    assert await calendar.list_working_time_rules(ctx(), WINDOW) == RULES
    absence = Absence("berg", Interval(MONDAY - timedelta(days=2), MONDAY + timedelta(days=1)))
    assert await calendar.list_absences(ctx(), WINDOW, []) == [absence]
    assert await calendar.list_absences(ctx(), WINDOW, ["raum-1"]) == []

    (busy,) = await calendar.list_busy_times(ctx(), WINDOW, [])  # the empty column is left out
    assert busy.column_id == "berg"
    assert busy.intervals == ENTRIES
    assert await calendar.list_busy_times(ctx(), WINDOW, ["raum-1"]) == []
    assert await calendar.list_predefined_slots(ctx(), WINDOW, []) is None

    (slots,) = await RemoteCalendarData(env.client("slots")).list_predefined_slots(ctx(), WINDOW, ["berg"]) or []
    assert slots.intervals.pairs() == [(from_datetime(MONDAY) + 3600, from_datetime(MONDAY) + 4800)]


async def test_calendar_writes_are_made_for_the_booking_partner_and_idempotent(env: Env) -> None:
    writer = RemoteCalendarWriter(env.client())
    slot = Interval(MONDAY + timedelta(hours=9), MONDAY + timedelta(hours=9, minutes=20))
    entry = CalendarEntry("ref-1", "berg", "kontrolle", slot, "p1", "partner-b", "online")
    first = await writer.write_appointment(ctx("gateway-user"), entry)
    assert first == WrittenEntry("T1", extra=True)
    assert await writer.write_appointment(ctx(), entry) == first
    assert env.writer.entries["ref-1"][1] == entry  # partner_id from the entry, not the call

    removed = await writer.delete_appointment(ctx("another-partner"), first.pvs_id)
    assert removed == entry  # as stored: the source is the writing partner, not the deleting one
    assert await writer.delete_appointment(ctx(), first.pvs_id) is None


def test_a_delete_answer_without_the_written_fields_reads_them_as_empty_and_bad_names_are_refused() -> None:
    """A PVS built before the response carried the written entry still works for the gateway's
    cancellations (certification then fails on the empty fields); a wrong name is the PVS's error."""
    slot = Interval(MONDAY, MONDAY + timedelta(minutes=20))
    older = pd.DeleteCalendarEntryResponse(
        deleted=True, column=f"practices/{PRACTICE}/columns/berg", interval=cv.interval_to_proto(slot)
    )
    assert removed_entry_from_proto(PRACTICE, older) == CalendarEntry("", "berg", "", slot, "", "", "")
    for field, value in (("patient", "practices/other/patients/p1"), ("appointment_type", "kontrolle")):
        wrong = pd.DeleteCalendarEntryResponse()
        wrong.CopyFrom(older)
        setattr(wrong, field, value)
        with pytest.raises(InvalidArgument) as raised:
            removed_entry_from_proto(PRACTICE, wrong)
        assert [v.field for v in raised.value.violations] == [field]


async def test_patient_records_round_trip_and_creation_is_idempotent(env: Env) -> None:
    patients = RemotePatientData(env.client())
    assert await patients.list_patients_born_on(ctx(), date(1980, 5, 1)) == [env.patients.records[0]]
    assert await patients.list_patients_born_on(ctx(), date(1990, 1, 1)) == []
    assert await patients.list_consented_patients(ctx(), "", 10) == [env.patients.records[1]]  # no birth date
    assert await patients.list_consented_patients(ctx(), "p2", 10) == []

    new = NewPatient("Anna", "Neu", date(2001, 2, 3), (Contact(ContactKind.MOBILE, "+4915112345678"),), "online")
    created = await patients.create_patient(ctx(), new, "req-1")
    assert created == PatientRecord(
        "p3", "Anna", "Neu", date(2001, 2, 3), new.contacts, created_online_by=PARTNER, create_time=MONDAY
    )
    assert await patients.create_patient(ctx(), new, "req-1") == created
    assert len(env.patients.records) == 3

    await patients.append_patient_note(ctx(), "p3", "Termin online gebucht", "note-1")
    await patients.append_patient_note(ctx(), "p3", "Termin online gebucht", "note-1")
    assert env.patients.notes["p3"] == ["online", "Termin online gebucht"]


async def test_consent_round_trips_per_partner(env: Env) -> None:
    consents = RemoteConsentData(env.client())
    assert await consents.read_consent(ctx(), "p1") == Consent("p1", ConsentState.OPEN)
    evidence = ConsentEvidence(MONDAY, ConsentMethod.ONLINE_FORM, "v3")
    written = await consents.write_consent(ctx(), "p1", ConsentState.GRANTED, evidence, ConsentActor.PARTNER)
    assert written == Consent("p1", ConsentState.GRANTED, evidence, ConsentActor.PARTNER, MONDAY)
    assert await consents.read_consent(ctx(), "p1") == written
    assert await consents.read_consent(ctx("partner-b"), "p1") == Consent("p1", ConsentState.OPEN)
    with pytest.raises(NotFound):
        await consents.read_consent(ctx(), "p9")


# --- changes -------------------------------------------------------------------------------------


async def _collect(changes: AsyncIterator[Change], count: int) -> list[Change]:
    seen: list[Change] = []
    async for change in changes:
        seen.append(change)
        if len(seen) == count:
            break
    return seen


async def test_watch_delivers_entry_and_config_changes_but_no_appointments(env: Env) -> None:
    reading = asyncio.create_task(_collect(env.client().watch_changes(PARTNER), 2))
    await asyncio.wait_for(env.outbox.subscribed.wait(), 2)
    slot = Interval(MONDAY, MONDAY + timedelta(minutes=20))
    appointment = Appointment("a1", "berg", "kontrolle", slot, "p1", AppointmentState.BOOKED, MONDAY, "e1")
    env.outbox.publish(AppointmentChanged(appointment))  # patient data: never sent
    env.outbox.publish(BusyTimeChanged("berg", added=(slot,)))
    env.outbox.publish(CalendarConfigChanged())
    assert await asyncio.wait_for(reading, 2) == [BusyTimeChanged("berg", added=(slot,)), CalendarConfigChanged()]
    await asyncio.sleep(0.05)
    assert env.outbox._subscribers == []  # the ended watch unsubscribed


async def test_watch_sends_heartbeats_while_idle(env: Env) -> None:
    call = env.stub.WatchDataChanges(
        pd.WatchDataChangesRequest(parent="practices/praxis"), metadata=(("otv-partner-id", PARTNER),)
    )
    try:
        beats = [await asyncio.wait_for(call.read(), 2) for _ in range(2)]
    finally:
        call.cancel()
    assert beats == [pd.WatchDataChangesResponse(heartbeat=pd.DataHeartbeat())] * 2


async def test_a_watch_that_falls_behind_gets_one_config_change_for_its_backlog(env: Env) -> None:
    reading = asyncio.create_task(_collect(env.client().watch_changes(PARTNER), 500))
    await asyncio.wait_for(env.outbox.subscribed.wait(), 2)
    slot = Interval(MONDAY, MONDAY + timedelta(minutes=20))
    for _ in range(1500):  # published at once: the stream cannot send in between, so 1000 queue up
        env.outbox.publish(BusyTimeChanged("berg", added=(slot,)))
    received = await asyncio.wait_for(reading, 3)
    assert received[0] == CalendarConfigChanged()
    assert received[1:] == [BusyTimeChanged("berg", added=(slot,))] * 499


async def test_the_ports_work_over_a_connector_channel(env: Env) -> None:
    """The gateway's channel to an outbound connector carries unary calls only: all the ports need."""
    hub = ConnectorHub([PRACTICE], {})
    link = await hub.attach(PRACTICE)

    async def relay() -> None:  # what otv_sdk.connector does at the practice
        while (message := await link.outgoing.get()) is not None:
            call, result = message.call, connector_service_pb2.CallResult(call_id=message.call.call_id)
            invoke: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = env.channel.unary_unary(call.method)
            try:
                result.response = await invoke(call.request, metadata=(("otv-partner-id", call.partner_id),))
            except grpc.aio.AioRpcError as error:
                result.status_code, result.status_message = error.code().value[0], error.details() or ""
                details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin", b"")
                result.status_details = details if isinstance(details, bytes) else b""
            link.resolve(result)

    relaying = asyncio.create_task(relay())
    try:
        client = PracticeDataClient(hub.channel(PRACTICE), PRACTICE)
        assert (await client.get_profile(ctx()))[1] == INFO
        (busy,) = await RemoteCalendarData(client).list_busy_times(ctx(), WINDOW, ["berg"])
        assert busy.intervals == ENTRIES
        with pytest.raises(InvalidArgument) as caught:
            await RemoteCalendarData(client).list_absences(ctx(), WINDOW, ["keller"])
        assert [v.field for v in caught.value.violations] == ["columns[0]"]
        with pytest.raises(Unimplemented):
            await _collect(client.watch_changes(PARTNER), 1)
    finally:
        hub.close()
        await relaying


# --- errors --------------------------------------------------------------------------------------


async def test_an_unknown_practice_is_not_found_naming_the_field(env: Env) -> None:
    with pytest.raises(NotFound) as caught:
        await RemoteCalendarData(env.client("nowhere")).list_calendars(ctx())
    assert [v.field for v in caught.value.violations] == ["parent"]
    with pytest.raises(NotFound) as caught:
        await env.client("nowhere").get_profile(ctx())
    assert [v.field for v in caught.value.violations] == ["name"]
    with pytest.raises(NotFound) as caught:
        await RemoteConsentData(env.client("nowhere")).read_consent(ctx(), "p1")
    assert [v.field for v in caught.value.violations] == ["name"]


async def test_bad_windows_and_unknown_columns_are_invalid_arguments(env: Env) -> None:
    client = env.client()
    backwards = pd.ListCalendarEntriesRequest(
        parent="practices/praxis",
        window=time_pb2.TimeInterval(
            start_time=cv.datetime_to_timestamp(WINDOW.end), end_time=cv.datetime_to_timestamp(WINDOW.start)
        ),
    )
    with pytest.raises(InvalidArgument) as caught:
        await client.call(client.stub.ListCalendarEntries, backwards, PARTNER, 5, lambda r: r)
    assert [v.field for v in caught.value.violations] == ["window.end_time"]

    without = pd.ListWorkingTimeRulesRequest(parent="practices/praxis")
    with pytest.raises(InvalidArgument) as caught:
        await client.call(client.stub.ListWorkingTimeRules, without, PARTNER, 5, lambda r: r)
    assert [v.field for v in caught.value.violations] == ["window"]

    with pytest.raises(InvalidArgument) as caught:
        await RemoteCalendarData(client).list_absences(ctx(), WINDOW, ["raum-1", "keller"])
    assert [v.field for v in caught.value.violations] == ["columns[1]"]


async def test_writes_name_the_wrong_field(env: Env) -> None:
    slot = Interval(MONDAY, MONDAY + timedelta(minutes=20))
    entry = CalendarEntry("r", "keller", "kontrolle", slot, "p1", PARTNER, "")
    with pytest.raises(InvalidArgument) as caught:
        await RemoteCalendarWriter(env.client()).write_appointment(ctx(), entry)
    assert [v.field for v in caught.value.violations] == ["column"]
    new = NewPatient("Anna", " ", date(2001, 2, 3))
    with pytest.raises(InvalidArgument) as caught:
        await RemotePatientData(env.client()).create_patient(ctx(), new, "req-2")
    assert [v.field for v in caught.value.violations] == ["family_name"]
    with pytest.raises(InvalidArgument) as caught:
        await RemotePatientData(env.client()).create_patient(ctx(), replace(new, family_name="Neu"), "")
    assert [v.field for v in caught.value.violations] == ["request_id"]
    assert env.writer.entries == {}
    assert len(env.patients.records) == 2


async def test_a_call_without_partner_is_unauthenticated(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.GetCalendarConfig(pd.GetCalendarConfigRequest(parent="practices/praxis"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_a_missing_port_is_unimplemented(env: Env) -> None:
    bare = env.client("bare")
    with pytest.raises(Unimplemented):
        await RemotePatientData(bare).list_patients_born_on(ctx(), date(1980, 5, 1))
    with pytest.raises(Unimplemented):
        await RemoteConsentData(bare).read_consent(ctx(), "p1")
    slot = Interval(MONDAY, MONDAY + timedelta(minutes=20))
    with pytest.raises(Unimplemented):
        await RemoteCalendarWriter(bare).write_appointment(
            ctx(), CalendarEntry("r", "berg", "kontrolle", slot, "p1", PARTNER, "")
        )
    with pytest.raises(Unimplemented):
        await _collect(bare.watch_changes(PARTNER), 1)


async def test_an_adapter_failure_is_internal_without_its_message(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.calendar.fail = True
    with caplog.at_level(logging.DEBUG), pytest.raises(InternalError) as caught:
        await RemoteCalendarData(env.client()).list_busy_times(ctx(), WINDOW, [])
    assert "error id" in caught.value.message
    assert SECRET not in caught.value.message
    assert SECRET not in caplog.text
    assert "RuntimeError" in caplog.text
