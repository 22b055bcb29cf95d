"""Sandbox scenarios: a complete practice as a certification run loads it.

A scenario is parsed with the calendar, absence, contact and consent conversions, so it gets the
same checks as a live practice's data. A patient's birth date may be on file with year and month
only: day 0 on the wire, day None in `BirthDate`.
"""

from __future__ import annotations

from otv.v1 import patient_pb2, practice_pb2, sandbox_service_pb2, time_pb2
from otv_sdk.conversion.absences import absence_from_proto, absence_to_proto
from otv_sdk.conversion.calendars import calendar_from_proto, calendar_to_proto
from otv_sdk.conversion.consents import _CONSENT_STATES, consent_state_from_proto
from otv_sdk.conversion.instants import (
    date_from_proto,
    date_to_proto,
    interval_from_proto,
    interval_to_proto,
    weekly_span_from_proto,
    weekly_span_to_proto,
)
from otv_sdk.conversion.names import _id_or_none, _name_or_empty, column_ids_from_proto
from otv_sdk.conversion.patients import _CONTACT_KINDS, contacts_from_proto
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import PracticeProfile
from otv_sdk.resources import format_name, parse_practice_child
from otv_sdk.scenario import BirthDate, ClosedDay, EntryKind, Scenario, ScenarioEntry, ScenarioPatient, Shift

__all__ = ["scenario_from_proto", "scenario_to_proto"]


_ENTRY_KINDS = {
    EntryKind.APPOINTMENT: sandbox_service_pb2.ENTRY_KIND_APPOINTMENT,
    EntryKind.RESERVATION: sandbox_service_pb2.ENTRY_KIND_RESERVATION,
}
_ENTRY_KINDS_BACK = {v: k for k, v in _ENTRY_KINDS.items()}


def scenario_to_proto(practice_id: str, scenario: Scenario) -> sandbox_service_pb2.Scenario:
    p = practice_id
    msg = sandbox_service_pb2.Scenario(
        id=scenario.id,
        version=scenario.version,
        display_name=scenario.profile.display_name,
        time_zone=scenario.profile.time_zone,
        **calendar_to_proto(p, scenario.calendar),  # type: ignore[arg-type]
        shifts=[
            practice_pb2.Shift(
                column=format_name(p, "columns", s.column_id),
                valid_from=date_to_proto(s.valid_from),
                valid_until=date_to_proto(s.valid_until),
                weekly_spans=[weekly_span_to_proto(x) for x in s.spans],
            )
            for s in scenario.shifts
        ],
        closed_days=[
            practice_pb2.ClosedDay(day=date_to_proto(d.day), column=_name_or_empty(p, "columns", d.column_id))
            for d in scenario.closed_days
        ],
        absences=[absence_to_proto(p, a) for a in scenario.absences],
        entries=[
            sandbox_service_pb2.CalendarEntry(
                columns=[format_name(p, "columns", c) for c in e.column_ids],
                interval=interval_to_proto(e.interval),
                kind=_ENTRY_KINDS[e.kind],
                appointment_type=_name_or_empty(p, "appointmentTypes", e.appointment_type_id),
                patient_id=e.patient_id or "",
            )
            for e in scenario.entries
        ],
    )
    for patient in scenario.patients:
        item = msg.patients.add(
            id=patient.id,
            given_name=patient.given_name,
            family_name=patient.family_name,
            contacts=[patient_pb2.Contact(kind=_CONTACT_KINDS[c.kind], value=c.value) for c in patient.contacts],
            inactive=not patient.active,
            consents=[
                sandbox_service_pb2.PartnerConsent(partner=partner, state=_CONSENT_STATES[state])
                for partner, state in patient.consents
            ],
        )
        if patient.birth_date is not None:
            b = patient.birth_date
            item.birth_date.CopyFrom(time_pb2.Date(year=b.year, month=b.month, day=b.day or 0))
    return msg


def _birth_on_file(msg: sandbox_service_pb2.ScenarioPatient, field: str) -> BirthDate | None:
    if not msg.HasField("birth_date"):
        return None
    b = msg.birth_date
    if b.day == 0:  # only year and month on file
        date_from_proto(time_pb2.Date(year=b.year, month=b.month, day=1), f"{field}.birth_date")
        return BirthDate(b.year, b.month, None)
    full = date_from_proto(b, f"{field}.birth_date")
    return BirthDate(full.year, full.month, full.day)


def scenario_from_proto(practice_id: str, msg: sandbox_service_pb2.Scenario, field: str = "scenario") -> Scenario:
    p = practice_id
    if not msg.time_zone:
        raise InvalidArgument.field(f"{field}.time_zone", "is required")
    entries: list[ScenarioEntry] = []
    for i, e in enumerate(msg.entries):
        kind = _ENTRY_KINDS_BACK.get(e.kind)
        if kind is None:
            raise InvalidArgument.field(f"{field}.entries[{i}].kind", "is required")
        entries.append(
            ScenarioEntry(
                column_ids=column_ids_from_proto(e.columns, p, f"{field}.entries[{i}].columns"),
                interval=interval_from_proto(e.interval, f"{field}.entries[{i}].interval"),
                kind=kind,
                appointment_type_id=_id_or_none(
                    e.appointment_type, f"{field}.entries[{i}].appointment_type", "appointmentTypes", p
                ),
                patient_id=e.patient_id or None,
            )
        )
    return Scenario(
        id=msg.id,
        version=msg.version,
        profile=PracticeProfile(display_name=msg.display_name, time_zone=msg.time_zone),
        calendar=calendar_from_proto(p, msg),
        shifts=tuple(
            Shift(
                column_id=parse_practice_child(s.column, f"{field}.shifts[{i}].column", "columns", p),
                valid_from=date_from_proto(s.valid_from, f"{field}.shifts[{i}].valid_from"),
                valid_until=date_from_proto(s.valid_until, f"{field}.shifts[{i}].valid_until"),
                spans=tuple(
                    weekly_span_from_proto(x, f"{field}.shifts[{i}].weekly_spans[{j}]")
                    for j, x in enumerate(s.weekly_spans)
                ),
            )
            for i, s in enumerate(msg.shifts)
        ),
        closed_days=tuple(
            ClosedDay(
                day=date_from_proto(d.day, f"{field}.closed_days[{i}].day"),
                column_id=_id_or_none(d.column, f"{field}.closed_days[{i}].column", "columns", p),
            )
            for i, d in enumerate(msg.closed_days)
        ),
        absences=tuple(absence_from_proto(p, a, f"{field}.absences[{i}]") for i, a in enumerate(msg.absences)),
        entries=tuple(entries),
        patients=tuple(
            ScenarioPatient(
                id=x.id,
                given_name=x.given_name,
                family_name=x.family_name,
                birth_date=_birth_on_file(x, f"{field}.patients[{i}]"),
                contacts=contacts_from_proto(x.contacts, f"{field}.patients[{i}].contacts"),
                active=not x.inactive,
                consents=tuple(
                    (c.partner, consent_state_from_proto(c.state, f"{field}.patients[{i}].consents[{j}].state"))
                    for j, c in enumerate(x.consents)
                ),
            )
            for i, x in enumerate(msg.patients)
        ),
    )
