"""The one place where domain models meet protobuf, in both directions.

Parsing a request is also validating it: every `*_from_proto` that reads partner input raises
`InvalidArgument` naming the request field (`window.end_time`, `columns[2]`), so the servicers
never see a malformed value. Messages coming back from a remote adapter pass through the same
parsers; a malformed one is the adapter's fault and is reported as such by the caller.

One module per kind of message (instants, packed intervals, names, calendars, slots, absences,
appointments, patients, consents, scenarios, changes); this package re-exports their public
names, so callers keep writing `from otv_sdk import conversion as cv` and `cv.slot_to_proto`.
"""

from __future__ import annotations

from otv_sdk.conversion.absences import absence_from_proto, absence_to_proto
from otv_sdk.conversion.appointments import appointment_from_proto, appointment_to_proto, hold_from_proto, hold_to_proto
from otv_sdk.conversion.calendars import calendar_from_proto, calendar_to_proto, practice_from_proto, practice_to_proto
from otv_sdk.conversion.changes import change_from_proto, change_to_proto
from otv_sdk.conversion.consents import (
    consent_actor_from_proto,
    consent_actor_to_proto,
    consent_from_proto,
    consent_state_from_proto,
    consent_state_to_proto,
    consent_to_proto,
    evidence_from_proto,
    evidence_to_proto,
)
from otv_sdk.conversion.instants import (
    birth_date_from_proto,
    date_from_proto,
    date_to_proto,
    datetime_to_timestamp,
    interval_from_proto,
    interval_to_proto,
    optional_date,
    optional_timestamp,
    required_timestamp,
    timestamp_to_datetime,
    weekly_span_from_proto,
    weekly_span_to_proto,
    window_from_proto,
)
from otv_sdk.conversion.names import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    bounded_text,
    child_id_from_proto,
    column_ids_from_proto,
    consent_name,
    consent_name_parts,
    page_size_from_proto,
    practice_from_parent,
    token_from_proto,
)
from otv_sdk.conversion.packed_intervals import pack_intervals, unpack_intervals
from otv_sdk.conversion.patients import (
    COUNTRY_CODES,
    address_from_proto,
    address_to_proto,
    contact_kind_to_proto,
    contacts_from_proto,
    gender_from_proto,
    gender_to_proto,
    match_outcome_from_proto,
    match_outcome_to_proto,
    name_part,
    patient_details_from_proto,
    patient_details_to_proto,
    patient_from_proto,
    patient_note_from_proto,
    patient_to_proto,
)
from otv_sdk.conversion.scenarios import scenario_from_proto, scenario_to_proto
from otv_sdk.conversion.slots import slot_from_proto, slot_to_proto

__all__ = [
    "COUNTRY_CODES",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "absence_from_proto",
    "absence_to_proto",
    "address_from_proto",
    "address_to_proto",
    "appointment_from_proto",
    "appointment_to_proto",
    "birth_date_from_proto",
    "bounded_text",
    "calendar_from_proto",
    "calendar_to_proto",
    "change_from_proto",
    "change_to_proto",
    "child_id_from_proto",
    "column_ids_from_proto",
    "consent_actor_from_proto",
    "consent_actor_to_proto",
    "consent_from_proto",
    "consent_name",
    "consent_name_parts",
    "consent_state_from_proto",
    "consent_state_to_proto",
    "consent_to_proto",
    "contact_kind_to_proto",
    "contacts_from_proto",
    "date_from_proto",
    "date_to_proto",
    "datetime_to_timestamp",
    "evidence_from_proto",
    "evidence_to_proto",
    "gender_from_proto",
    "gender_to_proto",
    "hold_from_proto",
    "hold_to_proto",
    "interval_from_proto",
    "interval_to_proto",
    "match_outcome_from_proto",
    "match_outcome_to_proto",
    "name_part",
    "optional_date",
    "optional_timestamp",
    "pack_intervals",
    "page_size_from_proto",
    "patient_details_from_proto",
    "patient_details_to_proto",
    "patient_from_proto",
    "patient_note_from_proto",
    "patient_to_proto",
    "practice_from_parent",
    "practice_from_proto",
    "practice_to_proto",
    "required_timestamp",
    "scenario_from_proto",
    "scenario_to_proto",
    "slot_from_proto",
    "slot_to_proto",
    "timestamp_to_datetime",
    "token_from_proto",
    "unpack_intervals",
    "weekly_span_from_proto",
    "weekly_span_to_proto",
    "window_from_proto",
]
