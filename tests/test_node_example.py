"""The Node.js example adapter (examples/node-adapter) speaks the vendor contract, called from Python.

Proof that `otv.v1.PracticeDataService` and `otv.v1.SandboxService` are language-neutral: the
example runs as its own process and is called here through the generated Python stubs, exactly as
the gateway calls a remote PVS. CI installs its dependencies with `npm ci` (see .ci/run); without
them this module installs them itself, and without Node.js it is skipped.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from message_strategies import messages

from gateway.certificates import init_dev_pki
from otv.v1 import (
    consent_pb2,
    patient_pb2,
    practice_data_service_pb2,
    practice_data_service_pb2_grpc,
    practice_pb2,
    sandbox_service_pb2,
    sandbox_service_pb2_grpc,
    time_pb2,
)
from otv_sdk.status import error_from_rpc_error

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node-adapter"
NODE = shutil.which("node")
NPM = shutil.which("npm")
PARTNER_A = "partner-a"
PARTNER_B = "partner-b"
P = "practices/demo"
pb = practice_data_service_pb2  # short: the requests of the data service


def ts(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC))
    return stamp


def seconds(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def interval(start: str, end: str) -> time_pb2.TimeInterval:
    return time_pb2.TimeInterval(start_time=ts(start), end_time=ts(end))


def span(weekday: int, start: str, end: str) -> time_pb2.WeeklySpan:
    (h1, m1), (h2, m2) = (map(int, start.split(":")), map(int, end.split(":")))
    return time_pb2.WeeklySpan(
        weekday=weekday,  # type: ignore[arg-type]
        start_time=time_pb2.TimeOfDay(hours=h1, minutes=m1),
        end_time=time_pb2.TimeOfDay(hours=h2, minutes=m2),
    )


def col(column_id: str) -> str:
    return f"{P}/columns/{column_id}"


def scenario() -> sandbox_service_pb2.Scenario:
    """A small practice in Berlin around Monday 2027-03-22 (UTC+1), with every kind of data."""
    mobile = patient_pb2.Contact(kind=patient_pb2.CONTACT_KIND_MOBILE, value="+491701234567")
    email = patient_pb2.Contact(kind=patient_pb2.CONTACT_KIND_EMAIL, value="erika@example.org")
    granted = consent_pb2.CONSENT_STATE_GRANTED
    return sandbox_service_pb2.Scenario(
        id="node-example",
        version="1",
        display_name="Zahnarztpraxis Node",
        time_zone="Europe/Berlin",
        practitioners=[practice_pb2.Practitioner(name=f"{P}/practitioners/dr-a", display_name="Dr. Anna")],
        rooms=[
            practice_pb2.Room(name=f"{P}/rooms/raum-1", display_name="Zimmer 1"),
            practice_pb2.Room(name=f"{P}/rooms/prophylaxe", display_name="Prophylaxe"),
        ],
        columns=[
            practice_pb2.Column(
                name=col("dr-a"),
                display_name="Dr. Anna",
                kind=practice_pb2.COLUMN_KIND_PRACTITIONER,
                practitioner=f"{P}/practitioners/dr-a",
                room=f"{P}/rooms/raum-1",
                weekly_hours=[span(1, "08:00", "12:00"), span(2, "08:00", "12:00")],
            ),
            practice_pb2.Column(
                name=col("prophylaxe"),
                display_name="Prophylaxe",
                kind=practice_pb2.COLUMN_KIND_ROOM,
                room=f"{P}/rooms/prophylaxe",
                weekly_hours=[span(1, "08:00", "16:00")],
            ),
            practice_pb2.Column(name=col("notdienst"), display_name="Notdienst", kind=practice_pb2.COLUMN_KIND_ROOM),
        ],
        appointment_type_groups=[
            practice_pb2.AppointmentTypeGroup(name=f"{P}/appointmentTypeGroups/untersuchung", display_name="U")
        ],
        appointment_types=[
            practice_pb2.AppointmentType(
                name=f"{P}/appointmentTypes/kontrolle",
                display_name="Kontrolle",
                duration_minutes=20,
                allowed_columns=[col("dr-a")],
                visit_kind=practice_pb2.VISIT_KIND_FOLLOW_UP,
                group=f"{P}/appointmentTypeGroups/untersuchung",
                buffer_minutes=5,
                min_lead_minutes=60,
                max_horizon_days=420,
            ),
            practice_pb2.AppointmentType(
                name=f"{P}/appointmentTypes/pzr",
                display_name="PZR",
                duration_minutes=60,
                allowed_columns=[col("prophylaxe")],
                visit_kind=practice_pb2.VISIT_KIND_ANY,
            ),
        ],
        booking_areas=[
            practice_pb2.BookingArea(
                name=f"{P}/bookingAreas/morgens",
                display_name="Morgens",
                column=col("dr-a"),
                appointment_types=[f"{P}/appointmentTypes/kontrolle"],
                weekly_spans=[span(1, "08:00", "10:00")],
                valid_from=time_pb2.Date(year=2027, month=1, day=1),
            )
        ],
        shifts=[
            practice_pb2.Shift(
                column=col("dr-a"),
                valid_from=time_pb2.Date(year=2027, month=3, day=23),
                valid_until=time_pb2.Date(year=2027, month=3, day=26),
                weekly_spans=[span(2, "09:00", "11:00")],
            ),
            practice_pb2.Shift(
                column=col("dr-a"),
                valid_from=time_pb2.Date(year=2027, month=5, day=1),
                valid_until=time_pb2.Date(year=2027, month=5, day=7),
            ),
        ],
        closed_days=[
            practice_pb2.ClosedDay(day=time_pb2.Date(year=2027, month=3, day=21)),
            practice_pb2.ClosedDay(day=time_pb2.Date(year=2027, month=3, day=24)),
            practice_pb2.ClosedDay(day=time_pb2.Date(year=2027, month=3, day=25), column=col("prophylaxe")),
        ],
        absences=[
            practice_pb2.Absence(column=col("dr-a"), interval=interval("2027-03-21T18:00:00Z", "2027-03-22T06:00:00Z")),
            practice_pb2.Absence(
                column=col("prophylaxe"), interval=interval("2027-04-01T07:00:00Z", "2027-04-01T15:00:00Z")
            ),
        ],
        entries=[
            # Starts before the window of the reads below: comes back as it is, not cut.
            sandbox_service_pb2.CalendarEntry(
                columns=[col("dr-a")],
                interval=interval("2027-03-21T23:30:00Z", "2027-03-22T00:30:00Z"),
                kind=sandbox_service_pb2.ENTRY_KIND_RESERVATION,
            ),
            sandbox_service_pb2.CalendarEntry(
                columns=[col("dr-a")],
                interval=interval("2027-03-22T07:00:00Z", "2027-03-22T07:20:00Z"),
                kind=sandbox_service_pb2.ENTRY_KIND_APPOINTMENT,
                appointment_type=f"{P}/appointmentTypes/kontrolle",
                patient_id="p-erika",
            ),
            # One reservation occupying two columns.
            sandbox_service_pb2.CalendarEntry(
                columns=[col("prophylaxe"), col("dr-a")],
                interval=interval("2027-03-22T09:00:00Z", "2027-03-22T10:00:00Z"),
                kind=sandbox_service_pb2.ENTRY_KIND_RESERVATION,
            ),
            sandbox_service_pb2.CalendarEntry(
                columns=[col("dr-a")],
                interval=interval("2027-03-23T07:00:00Z", "2027-03-23T07:20:00Z"),
                kind=sandbox_service_pb2.ENTRY_KIND_APPOINTMENT,
                appointment_type=f"{P}/appointmentTypes/kontrolle",
            ),
        ],
        patients=[
            sandbox_service_pb2.ScenarioPatient(
                id="p-erika",
                given_name="Erika",
                family_name="Mustermann",
                birth_date=time_pb2.Date(year=1964, month=8, day=12),
                contacts=[mobile, email],
                consents=[sandbox_service_pb2.PartnerConsent(partner=PARTNER_A, state=granted)],
            ),
            sandbox_service_pb2.ScenarioPatient(
                id="p-max",
                given_name="Max",
                family_name="Alt",
                birth_date=time_pb2.Date(year=1964, month=8, day=12),
                inactive=True,
                consents=[sandbox_service_pb2.PartnerConsent(partner=PARTNER_A, state=granted)],
            ),
            sandbox_service_pb2.ScenarioPatient(  # only year and month on file
                id="p-ida", given_name="Ida", family_name="Teil", birth_date=time_pb2.Date(year=1964, month=8)
            ),
            sandbox_service_pb2.ScenarioPatient(id="p-otto", given_name="Otto", family_name="Ohne"),
            sandbox_service_pb2.ScenarioPatient(
                id="p-lena",
                given_name="Lena",
                family_name="Neu",
                birth_date=time_pb2.Date(year=1990, month=1, day=1),
                consents=[
                    sandbox_service_pb2.PartnerConsent(partner=PARTNER_B, state=granted),
                    sandbox_service_pb2.PartnerConsent(partner="partner-c", state=consent_pb2.CONSENT_STATE_DENIED),
                ],
            ),
        ],
    )


# --- the process -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed() -> None:
    """The example's node_modules: CI's `npm ci` made them; otherwise install them here."""
    if NODE is None:
        pytest.skip("node is not installed, so the Node.js example adapter cannot run")
    if not (EXAMPLE / "node_modules").is_dir():
        if NPM is None:
            pytest.skip("npm is not installed, so the Node.js example adapter's dependencies cannot be installed")
        subprocess.run([NPM, "ci", "--prefix", str(EXAMPLE)], check=True, timeout=600, capture_output=True)


class NodeAdapter:
    """The example adapter as a child process, on a free port the OS picked."""

    def __init__(
        self,
        practices: str = "demo,other",
        heartbeat_seconds: float = 15,
        extra_env: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        assert NODE is not None
        self.stderr = ""
        env = {
            **os.environ,
            "OTV_LISTEN": "127.0.0.1:0",
            "OTV_PRACTICES": practices,
            "OTV_HEARTBEAT_SECONDS": str(heartbeat_seconds),
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [NODE, "server.js"], cwd=EXAMPLE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            pytest.fail(f"the adapter did not start: {line!r} {self.stderr!r}")
        self.address = line.removeprefix("listening on ")
        if credentials is None:
            self.channel = grpc.insecure_channel(self.address)
        else:
            self.channel = grpc.secure_channel(self.address, credentials)
        self.data = practice_data_service_pb2_grpc.PracticeDataServiceStub(self.channel)
        self.sandbox = sandbox_service_pb2_grpc.SandboxServiceStub(self.channel)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        if hasattr(self, "channel"):
            self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, self.stderr = self.process.communicate()
        return self.process.returncode


@pytest.fixture(scope="module")
def node(installed: None) -> Iterator[NodeAdapter]:
    # A heartbeat every second, so the idle stream's heartbeat is seen within the test.
    adapter = NodeAdapter(heartbeat_seconds=1)
    yield adapter
    assert adapter.stop() == 0, adapter.stderr


def meta(partner: str = PARTNER_A) -> tuple[tuple[str, str]]:
    return (("otv-partner-id", partner),)


@pytest.fixture
def loaded(node: NodeAdapter) -> NodeAdapter:
    node.sandbox.LoadScenario(sandbox_service_pb2.LoadScenarioRequest(name=P, scenario=scenario()), metadata=meta())
    return node


def unpack(packed: time_pb2.PackedIntervals) -> list[tuple[int, int]]:
    start = packed.origin.seconds
    result = []
    for delta, duration in zip(packed.start_deltas, packed.durations, strict=True):
        start += delta
        result.append((start, start + duration))
    return result


def entries(node: NodeAdapter, start: str, end: str, columns: tuple[str, ...] = ()) -> dict[str, list[tuple[int, int]]]:
    response = node.data.ListCalendarEntries(
        pb.ListCalendarEntriesRequest(parent=P, window=interval(start, end), columns=[col(c) for c in columns]),
        metadata=meta(),
    )
    found = {packed.column: unpack(packed) for packed in response.entries}
    for packed in response.entries:
        # The window's start, unless an entry began before it: deltas cannot be negative.
        assert packed.origin.seconds == min(seconds(start), found[packed.column][0][0])
    return found


def fails(call: Callable[[], Any]) -> tuple[grpc.StatusCode, list[str]]:
    """The status code of a failing call, and the fields its BadRequest details name."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error: Any = caught.value
    return error.code(), [v.field for v in error_from_rpc_error(error).violations]


# --- the practice's data ---------------------------------------------------------------------------


def test_profile_before_and_after_a_scenario(node: NodeAdapter) -> None:
    node.sandbox.ResetSandbox(sandbox_service_pb2.ResetSandboxRequest(name=P), metadata=meta())
    version = json.loads((EXAMPLE / "package.json").read_text())["version"]
    empty = node.data.GetPracticeProfile(pb.GetPracticeProfileRequest(name=P), metadata=meta())
    assert empty.display_name
    assert empty.time_zone == "Europe/Berlin"
    adapter = empty.adapter
    assert (adapter.vendor, adapter.product, adapter.version) == ("otv-example", "node-adapter", version)
    assert set(empty.capabilities) == {
        pb.DATA_CAPABILITY_CALENDAR_WRITE,
        pb.DATA_CAPABILITY_PATIENTS,
        pb.DATA_CAPABILITY_CONSENT,
        pb.DATA_CAPABILITY_CHANGES,
        pb.DATA_CAPABILITY_SANDBOX,
    }
    assert not node.data.GetCalendarConfig(pb.GetCalendarConfigRequest(parent=P), metadata=meta()).columns

    node.sandbox.LoadScenario(sandbox_service_pb2.LoadScenarioRequest(name=P, scenario=scenario()), metadata=meta())
    profile = node.data.GetPracticeProfile(pb.GetPracticeProfileRequest(name=P), metadata=meta())
    assert (profile.display_name, profile.time_zone) == ("Zahnarztpraxis Node", "Europe/Berlin")
    # The other practice this server serves is untouched.
    other = node.data.GetCalendarConfig(pb.GetCalendarConfigRequest(parent="practices/other"), metadata=meta())
    assert not other.columns


def test_calendar_config_is_the_scenarios(loaded: NodeAdapter) -> None:
    config = loaded.data.GetCalendarConfig(pb.GetCalendarConfigRequest(parent=P), metadata=meta())
    s = scenario()
    assert list(config.columns) == list(s.columns)
    assert list(config.practitioners) == list(s.practitioners)
    assert list(config.rooms) == list(s.rooms)
    assert list(config.appointment_types) == list(s.appointment_types)
    assert list(config.appointment_type_groups) == list(s.appointment_type_groups)
    assert list(config.booking_areas) == list(s.booking_areas)


def test_working_time_rules_of_the_local_days_touched(loaded: NodeAdapter) -> None:
    # 2027-03-21T23:30Z is already Monday 00:30 in Berlin: Sunday's closed day is not touched.
    rules = loaded.data.ListWorkingTimeRules(
        pb.ListWorkingTimeRulesRequest(parent=P, window=interval("2027-03-21T23:30:00Z", "2027-03-24T23:00:00Z")),
        metadata=meta(),
    )
    assert list(rules.shifts) == [scenario().shifts[0]]
    # Ends at Thursday 00:00 local, exclusive: Wednesday's closed day, not Thursday's.
    assert list(rules.closed_days) == [scenario().closed_days[1]]
    assert rules.closed_days[0].column == ""


def test_absences_overlapping_unclipped(loaded: NodeAdapter) -> None:
    request = pb.ListColumnAbsencesRequest(parent=P, window=interval("2027-03-22T00:00:00Z", "2027-03-23T00:00:00Z"))
    absences = loaded.data.ListColumnAbsences(request, metadata=meta()).absences
    assert list(absences) == [scenario().absences[0]]
    request.columns.append(col("prophylaxe"))
    assert not loaded.data.ListColumnAbsences(request, metadata=meta()).absences


def test_entries_packed_per_column(loaded: NodeAdapter) -> None:
    day = ("2027-03-22T00:00:00Z", "2027-03-23T00:00:00Z")
    found = entries(loaded, *day)
    assert list(found) == [col("dr-a"), col("prophylaxe")], "columns in configuration order, only those with entries"
    assert found[col("dr-a")] == [
        (seconds("2027-03-21T23:30:00Z"), seconds("2027-03-22T00:30:00Z")),  # overlaps the window's start
        (seconds("2027-03-22T07:00:00Z"), seconds("2027-03-22T07:20:00Z")),
        (seconds("2027-03-22T09:00:00Z"), seconds("2027-03-22T10:00:00Z")),
    ]
    assert found[col("prophylaxe")] == [(seconds("2027-03-22T09:00:00Z"), seconds("2027-03-22T10:00:00Z"))]
    assert list(entries(loaded, *day, columns=("prophylaxe",))) == [col("prophylaxe")]
    assert entries(loaded, *day, columns=("notdienst",)) == {}


def test_write_and_delete_are_idempotent(loaded: NodeAdapter) -> None:
    day = ("2027-03-22T00:00:00Z", "2027-03-23T00:00:00Z")
    write = pb.WriteCalendarEntryRequest(
        parent=P,
        reference="booking-1",
        column=col("dr-a"),
        appointment_type=f"{P}/appointmentTypes/kontrolle",
        interval=interval("2027-03-22T10:00:00Z", "2027-03-22T10:20:00Z"),
        patient=f"{P}/patients/p-erika",
        category="online",
    )
    first = loaded.data.WriteCalendarEntry(write, metadata=meta())
    second = loaded.data.WriteCalendarEntry(write, metadata=meta())
    assert first.entry_id
    assert second.entry_id == first.entry_id
    assert not first.extra
    booked = (seconds("2027-03-22T10:00:00Z"), seconds("2027-03-22T10:20:00Z"))
    assert entries(loaded, *day)[col("dr-a")].count(booked) == 1, "written once"

    # On top of the reservation: kept, and marked as an extra appointment (Zusatztermin).
    on_top = pb.WriteCalendarEntryRequest()
    on_top.CopyFrom(write)
    on_top.reference = "booking-2"
    on_top.interval.CopyFrom(interval("2027-03-22T09:30:00Z", "2027-03-22T09:50:00Z"))
    assert loaded.data.WriteCalendarEntry(on_top, metadata=meta()).extra

    delete = pb.DeleteCalendarEntryRequest(parent=P, entry_id=first.entry_id)
    removed = loaded.data.DeleteCalendarEntry(delete, metadata=meta(PARTNER_B))
    assert removed.deleted
    assert removed.column == col("dr-a")
    assert removed.interval == write.interval
    # Returned as stored: what the write asked, and the partner it was written for as its source.
    as_written = (write.reference, write.appointment_type, write.patient, write.category, PARTNER_A)
    assert (removed.reference, removed.appointment_type, removed.patient, removed.category, removed.source_partner) == (
        as_written
    )
    assert booked not in entries(loaded, *day)[col("dr-a")]
    again = loaded.data.DeleteCalendarEntry(delete, metadata=meta())
    assert not again.deleted
    assert not again.column
    unknown = pb.DeleteCalendarEntryRequest(parent=P, entry_id="no-such-entry")
    assert not loaded.data.DeleteCalendarEntry(unknown, metadata=meta()).deleted


# --- patients and consent ------------------------------------------------------------------------


def test_patients_born_on_a_date(loaded: NodeAdapter) -> None:
    request = pb.ListPatientsBornOnRequest(parent=P, birth_date=time_pb2.Date(year=1964, month=8, day=12))
    found = loaded.data.ListPatientsBornOn(request, metadata=meta()).patients
    assert [p.name for p in found] == [f"{P}/patients/p-erika", f"{P}/patients/p-max"], "active or not; not p-ida"
    erika, max_ = found
    assert (erika.given_name, erika.family_name, erika.active) == ("Erika", "Mustermann", True)
    assert erika.birth_date == time_pb2.Date(year=1964, month=8, day=12)
    assert [c.value for c in erika.contacts] == ["+491701234567", "erika@example.org"]
    assert erika.consent == consent_pb2.CONSENT_STATE_GRANTED
    assert not erika.created_online_by
    assert not max_.active
    for_b = loaded.data.ListPatientsBornOn(request, metadata=meta(PARTNER_B)).patients
    assert [p.consent for p in for_b] == [consent_pb2.CONSENT_STATE_OPEN] * 2, "nothing recorded for B: OPEN"


def test_create_patient_once_per_request_id(loaded: NodeAdapter) -> None:
    create = pb.CreatePatientRequest(
        parent=P,
        request_id="req-1",
        given_name="Neu",
        family_name="Online",
        birth_date=time_pb2.Date(year=2001, month=2, day=3),
        contacts=[patient_pb2.Contact(kind=patient_pb2.CONTACT_KIND_MOBILE, value="+4917099999")],
        note="Interessent: online angelegt (partner-a)",
    )
    first = loaded.data.CreatePatient(create, metadata=meta()).patient
    again = loaded.data.CreatePatient(create, metadata=meta()).patient
    assert again.name == first.name
    assert first.created_online_by == PARTNER_A
    assert first.create_time.seconds > 0
    assert first.active
    assert first.consent == consent_pb2.CONSENT_STATE_OPEN
    born = pb.ListPatientsBornOnRequest(parent=P, birth_date=create.birth_date)
    assert [p.name for p in loaded.data.ListPatientsBornOn(born, metadata=meta()).patients] == [first.name]
    create.request_id = "req-2"
    assert loaded.data.CreatePatient(create, metadata=meta()).patient.name != first.name

    note = pb.AppendPatientNoteRequest(name=first.name, request_id="note-1", line="Online (partner-a): +4917099999")
    loaded.data.AppendPatientNote(note, metadata=meta())
    loaded.data.AppendPatientNote(note, metadata=meta())
    note.name = f"{P}/patients/nobody"
    assert fails(lambda: loaded.data.AppendPatientNote(note, metadata=meta())) == (grpc.StatusCode.NOT_FOUND, ["name"])


def test_consent_per_patient_and_partner(loaded: NodeAdapter) -> None:
    lena = f"{P}/patients/p-lena"
    opened = loaded.data.ReadConsent(pb.ReadConsentRequest(name=lena), metadata=meta()).consent
    assert opened.name == f"{lena}/consent"
    assert opened.state == consent_pb2.CONSENT_STATE_OPEN
    assert not opened.HasField("update_time")
    by_practice = loaded.data.ReadConsent(pb.ReadConsentRequest(name=lena), metadata=meta(PARTNER_B)).consent
    assert (by_practice.state, by_practice.set_by) == (
        consent_pb2.CONSENT_STATE_GRANTED,
        consent_pb2.CONSENT_ACTOR_PRACTICE,
    )

    evidence = consent_pb2.ConsentEvidence(
        decide_time=ts("2027-03-01T10:00:00Z"), method=consent_pb2.CONSENT_METHOD_ONLINE_FORM, text_version="2026-01"
    )
    write = pb.WriteConsentRequest(
        name=lena, state=consent_pb2.CONSENT_STATE_GRANTED, evidence=evidence, set_by=consent_pb2.CONSENT_ACTOR_PARTNER
    )
    written = loaded.data.WriteConsent(write, metadata=meta()).consent
    read = loaded.data.ReadConsent(pb.ReadConsentRequest(name=lena), metadata=meta()).consent
    assert read == written
    assert (read.state, read.evidence, read.set_by) == (write.state, evidence, write.set_by)
    assert read.update_time.seconds > 0

    page = pb.ListConsentedPatientsRequest(parent=P, page_size=10)
    listed = loaded.data.ListConsentedPatients(page, metadata=meta()).patients
    assert [p.name for p in listed] == [f"{P}/patients/p-erika", lena], "active and granted, by id: not p-max"
    page.page_size = 1
    first_page = loaded.data.ListConsentedPatients(page, metadata=meta()).patients
    assert [p.name for p in first_page] == [f"{P}/patients/p-erika"]
    page.after_patient = "p-erika"
    assert [p.name for p in loaded.data.ListConsentedPatients(page, metadata=meta()).patients] == [lena]
    assert [p.consent for p in listed] == [consent_pb2.CONSENT_STATE_GRANTED] * 2

    for name in (f"{P}/patients/p-max", f"{P}/patients/nobody"):  # inactive, unknown
        read_it = partial(loaded.data.ReadConsent, pb.ReadConsentRequest(name=name), metadata=meta())
        assert fails(read_it) == (grpc.StatusCode.NOT_FOUND, ["name"])
        write.name = name
        assert fails(lambda: loaded.data.WriteConsent(write, metadata=meta()))[0] == grpc.StatusCode.NOT_FOUND


# --- changes ----------------------------------------------------------------------------------------


def test_watch_reports_writes_deletes_scenarios_and_heartbeats(loaded: NodeAdapter) -> None:
    stream = loaded.data.WatchDataChanges(pb.WatchDataChangesRequest(parent=P), metadata=meta(), timeout=30)
    stream.initial_metadata()  # sent once the subscription stands
    changes = (c for c in stream if c.WhichOneof("change") != "heartbeat")
    try:
        booking = interval("2027-03-23T08:00:00Z", "2027-03-23T08:20:00Z")
        written = loaded.data.WriteCalendarEntry(
            pb.WriteCalendarEntryRequest(
                parent=P,
                reference="watched",
                column=col("dr-a"),
                appointment_type=f"{P}/appointmentTypes/kontrolle",
                interval=booking,
                patient=f"{P}/patients/p-erika",
            ),
            metadata=meta(),
        )
        added = next(changes)
        assert added.entries == pb.EntryChange(column=col("dr-a"), added=[booking])
        delete = pb.DeleteCalendarEntryRequest(parent=P, entry_id=written.entry_id)
        loaded.data.DeleteCalendarEntry(delete, metadata=meta())
        assert next(changes).entries == pb.EntryChange(column=col("dr-a"), removed=[booking])
        loaded.sandbox.ResetSandbox(sandbox_service_pb2.ResetSandboxRequest(name=P), metadata=meta())
        assert next(changes).WhichOneof("change") == "config"
        load = sandbox_service_pb2.LoadScenarioRequest(name=P, scenario=scenario())
        loaded.sandbox.LoadScenario(load, metadata=meta())
        assert next(changes).WhichOneof("change") == "config"
        # Idle now: a heartbeat comes (every second on this test server).
        assert next(iter(stream)).WhichOneof("change") == "heartbeat"
    finally:
        stream.cancel()


def test_sigterm_ends_open_streams_and_exits_cleanly(installed: None) -> None:
    adapter = NodeAdapter(practices="demo")
    stream = adapter.data.WatchDataChanges(pb.WatchDataChangesRequest(parent=P), metadata=meta(), timeout=30)
    stream.initial_metadata()
    adapter.process.send_signal(signal.SIGTERM)
    began = time.monotonic()
    assert list(stream) == []
    assert stream.code() == grpc.StatusCode.OK
    assert adapter.stop() == 0, adapter.stderr
    assert time.monotonic() - began < 5


def test_mutual_tls_admits_only_a_client_with_a_certificate(installed: None, tmp_path: Path) -> None:
    pki = init_dev_pki(tmp_path / "certs")
    tls = {"OTV_TLS_CERT": str(pki.server_cert), "OTV_TLS_KEY": str(pki.server_key), "OTV_TLS_CLIENT_CA": str(pki.ca)}
    with_certificate = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    adapter = NodeAdapter(practices="demo", extra_env=tls, credentials=with_certificate)
    try:
        profile = adapter.data.GetPracticeProfile(pb.GetPracticeProfileRequest(name=P), metadata=meta(), timeout=10)
        assert profile.time_zone == "Europe/Berlin"
        without = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        with grpc.secure_channel(adapter.address, without) as channel:
            stub = practice_data_service_pb2_grpc.PracticeDataServiceStub(channel)
            request = pb.GetPracticeProfileRequest(name=P)
            code, _ = fails(lambda: stub.GetPracticeProfile(request, metadata=meta(), timeout=10))
            assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        assert adapter.stop() == 0, adapter.stderr


# --- errors -----------------------------------------------------------------------------------------


def test_errors_name_the_field(loaded: NodeAdapter) -> None:
    d = loaded.data
    day = interval("2027-03-22T00:00:00Z", "2027-03-23T00:00:00Z")

    def entries_of(parent: str = P, **fields: Any) -> Callable[[], Any]:
        request = pb.ListCalendarEntriesRequest(parent=parent, window=day, **fields)
        return lambda: d.ListCalendarEntries(request, metadata=meta())

    with pytest.raises(grpc.RpcError) as caught:
        d.GetPracticeProfile(pb.GetPracticeProfileRequest(name=P))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert fails(entries_of("practices/nowhere")) == (grpc.StatusCode.NOT_FOUND, ["parent"])
    assert fails(entries_of("demo")) == (grpc.StatusCode.INVALID_ARGUMENT, ["parent"])
    reversed_window = interval("2027-03-23T00:00:00Z", "2027-03-22T00:00:00Z")
    request = pb.ListCalendarEntriesRequest(parent=P, window=reversed_window)
    assert fails(lambda: d.ListCalendarEntries(request, metadata=meta())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["window.end_time"],
    )
    request = pb.ListCalendarEntriesRequest(parent=P)
    assert fails(lambda: d.ListCalendarEntries(request, metadata=meta())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["window"],
    )
    assert fails(entries_of(columns=[col("no-such-column")])) == (grpc.StatusCode.INVALID_ARGUMENT, ["columns[0]"])
    other_practice = "practices/other/columns/dr-a"
    assert fails(entries_of(columns=[col("dr-a"), other_practice])) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["columns[1]"],
    )
    rules = pb.ListWorkingTimeRulesRequest(parent=P, window=reversed_window)
    assert fails(lambda: d.ListWorkingTimeRules(rules, metadata=meta()))[1] == ["window.end_time"]
    absences = pb.ListColumnAbsencesRequest(parent=P, window=reversed_window)
    assert fails(lambda: d.ListColumnAbsences(absences, metadata=meta()))[1] == ["window.end_time"]

    write = pb.WriteCalendarEntryRequest(
        parent=P,
        column=col("dr-a"),
        appointment_type=f"{P}/appointmentTypes/kontrolle",
        interval=day,
        patient=f"{P}/patients/p-erika",
    )
    assert fails(lambda: d.WriteCalendarEntry(write, metadata=meta())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["reference"],
    )
    write.reference = "r"
    write.appointment_type = f"{P}/appointmentTypes/nope"
    assert fails(lambda: d.WriteCalendarEntry(write, metadata=meta())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["appointment_type"],
    )
    write.appointment_type = f"{P}/appointmentTypes/kontrolle"
    write.patient = f"{P}/patients/nobody"
    assert fails(lambda: d.WriteCalendarEntry(write, metadata=meta()))[1] == ["patient"]
    delete = pb.DeleteCalendarEntryRequest(parent=P)
    assert fails(lambda: d.DeleteCalendarEntry(delete, metadata=meta()))[1] == ["entry_id"]
    born = pb.ListPatientsBornOnRequest(parent=P, birth_date=time_pb2.Date(year=2001, month=2, day=30))
    assert fails(lambda: d.ListPatientsBornOn(born, metadata=meta())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["birth_date.day"],
    )
    create = pb.CreatePatientRequest(parent=P, request_id="x", given_name="A", family_name="B")
    assert fails(lambda: d.CreatePatient(create, metadata=meta()))[1] == ["birth_date"]
    create.birth_date.CopyFrom(time_pb2.Date(year=9999, month=1, day=1))
    assert fails(lambda: d.CreatePatient(create, metadata=meta()))[1] == ["birth_date"]
    create.request_id = ""
    assert fails(lambda: d.CreatePatient(create, metadata=meta()))[1] == ["request_id"]
    consent = pb.WriteConsentRequest(name=f"{P}/patients/p-erika")
    assert fails(lambda: d.WriteConsent(consent, metadata=meta()))[1] == ["state"]
    for size in (-1, 0, 1002):
        page = pb.ListConsentedPatientsRequest(parent=P, page_size=size)
        assert fails(partial(d.ListConsentedPatients, page, metadata=meta()))[1] == ["page_size"]
    slots = pb.ListPredefinedSlotsRequest(parent=P, window=day)
    assert fails(lambda: d.ListPredefinedSlots(slots, metadata=meta()))[0] == grpc.StatusCode.UNIMPLEMENTED

    # Bytes that are no message of the method's type: the caller's fault, not the server's.
    garbage: Any = loaded.channel.unary_unary("/otv.v1.PracticeDataService/GetPracticeProfile")
    assert fails(lambda: garbage(b"\xff\xff\xff", metadata=meta()))[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_a_bad_scenario_is_refused_and_the_data_kept(loaded: NodeAdapter) -> None:
    def load(broken: sandbox_service_pb2.Scenario) -> tuple[grpc.StatusCode, list[str]]:
        request = sandbox_service_pb2.LoadScenarioRequest(name=P, scenario=broken)
        return fails(lambda: loaded.sandbox.LoadScenario(request, metadata=meta()))

    broken = scenario()
    broken.entries[1].patient_id = "p-nobody"
    assert load(broken) == (grpc.StatusCode.INVALID_ARGUMENT, ["scenario.entries[1].patient_id"])
    broken = scenario()
    broken.columns[1].name = col("dr-a")
    assert load(broken) == (grpc.StatusCode.INVALID_ARGUMENT, ["scenario.columns[1].name"])
    broken = scenario()
    broken.time_zone = "Europe/Nowhere"
    assert load(broken) == (grpc.StatusCode.INVALID_ARGUMENT, ["scenario.time_zone"])
    broken = scenario()
    broken.shifts[0].column = "practices/other/columns/dr-a"
    assert load(broken) == (grpc.StatusCode.INVALID_ARGUMENT, ["scenario.shifts[0].column"])
    profile = loaded.data.GetPracticeProfile(pb.GetPracticeProfileRequest(name=P), metadata=meta())
    assert profile.display_name == "Zahnarztpraxis Node", "the previous scenario is still loaded"
    missing = sandbox_service_pb2.LoadScenarioRequest(name="practices/nowhere", scenario=scenario())
    assert fails(lambda: loaded.sandbox.LoadScenario(missing, metadata=meta())) == (grpc.StatusCode.NOT_FOUND, ["name"])


# --- hostile input -----------------------------------------------------------------------------------

METHODS = [
    *practice_data_service_pb2.DESCRIPTOR.services_by_name["PracticeDataService"].methods,
    *sandbox_service_pb2.DESCRIPTOR.services_by_name["SandboxService"].methods,
]
# What a caller's mistake may earn; a stream that was fine runs into the client's deadline.
CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Names that get past parsing, so generated requests reach the practice's data too.
HINTS = {
    "parent": [P, "practices/nowhere"],
    "name": [P, f"{P}/patients/p-erika", f"{P}/patients/p-max", "practices/nowhere"],
    "columns": [col("dr-a"), col("prophylaxe"), col("nowhere")],
    "column": [col("dr-a"), col("prophylaxe")],
    "appointment_type": [f"{P}/appointmentTypes/kontrolle"],
    "patient": [f"{P}/patients/p-erika"],
    "request_id": ["r-1", "r-2"],
}
POOL = [*HINTS["name"], *HINTS["columns"], "p-erika", "Erika"]


def _status(channel: grpc.Channel, method: MethodDescriptor, body: bytes) -> tuple[grpc.StatusCode, str]:
    """(status code, details) of one call carrying exactly `body`; a stream is read for 0.3 s."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=bytes, response_deserializer=bytes)
            for _ in stream(body, metadata=meta(), timeout=0.3):
                pass
        else:
            channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)(
                body, metadata=meta(), timeout=10
            )
    except grpc.RpcError as error:
        failed: Any = error
        return failed.code(), failed.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def fuzzed(installed: None) -> Iterator[NodeAdapter]:
    adapter = NodeAdapter(practices="demo")
    adapter.sandbox.LoadScenario(sandbox_service_pb2.LoadScenarioRequest(name=P, scenario=scenario()), metadata=meta())
    yield adapter
    assert adapter.stop() == 0, adapter.stderr


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_generated_requests_get_documented_statuses(fuzzed: NodeAdapter, method: MethodDescriptor) -> None:
    """Whatever arrives, the answer is a documented status and the process lives on."""

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=messages(method.input_type, POOL, HINTS))
    def check(request: Message) -> None:
        code, details = _status(fuzzed.channel, method, request.SerializeToString())
        assert code in CLIENT_ERRORS, f"{method.name} answered {code.name}: {details}"
        assert fuzzed.process.poll() is None, "the adapter died"

    check()
