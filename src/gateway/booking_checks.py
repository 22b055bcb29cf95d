"""The booking checks: whether a partner may book a slot now, for which patient, and in which mode.

They run before the transaction that takes the claim, against the practice's calendar and the
availability partners see (claims included), so that a refusal names the field or the rule at
fault; the claim itself (`BookingRecords.claim`) is what rules out a double booking. A practice
whose PVS has no patient lookup takes the patient's details instead of a patient resource: they
are kept sealed under a made-up id and booked manually, since there is no PVS patient to write for.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from gateway.booking_records import DETAILS_PREFIX, MANUAL, BookingPolicy, BookingRecords, PatientIds, with_details
from gateway.encryption import FieldCipher
from gateway.partner_availability import PartnerAvailability
from gateway.patient_matching import SentPatient, store_sent
from gateway.practice_reader import PracticeReader
from gateway.state_store import Row, Tx
from otv_rules.wallclock import zone
from otv_sdk.errors import FailedPrecondition, FieldViolation, InvalidArgument
from otv_sdk.models import AppointmentType, Capability, Interval
from otv_sdk.ports import Adapter, CallContext, PageRequest, SlotQuery, SlotRequest
from otv_sdk.timeline import IntervalArray, from_datetime, subtract, union

__all__ = ["BookingChecks"]


class BookingChecks:
    """The checks of one practice's booking desk, before it commits anything."""

    def __init__(
        self,
        practice_id: str,
        adapter: Adapter,
        reader: PracticeReader,
        patients: PatientIds,
        records: BookingRecords,
        policy: BookingPolicy,
        cipher: FieldCipher,
        availability: PartnerAvailability,
    ) -> None:
        self._practice = practice_id
        self._adapter = adapter
        self._reader = reader
        self._patients = patients
        self._records = records
        self._policy = policy
        self._cipher = cipher
        self._availability = availability

    async def bookable(
        self, ctx: CallContext, slot: SlotRequest, replacing: Row | None = None
    ) -> tuple[AppointmentType, Interval]:
        """The type and interval of a slot a partner may book now, or the error saying why not."""
        reader = self._reader
        calendar = await reader.list_calendars(ctx)
        kind = next((t for t in calendar.appointment_types if t.id == slot.appointment_type_id), None)
        if kind is None:
            raise InvalidArgument.field("appointment_type", "is not an appointment type of this practice")
        if slot.column_id not in calendar.column_ids():
            raise InvalidArgument.field("column", "is not a column of this practice")
        if slot.column_id not in kind.column_ids:
            raise InvalidArgument.field("column", "does not offer this appointment type")
        grid = self._policy.grid_minutes * 60
        profile = await reader.get_practice(ctx)
        start = from_datetime(slot.start)
        offset = slot.start.astimezone(zone(profile.time_zone)).utcoffset()
        assert offset is not None
        if (start + int(offset.total_seconds())) % grid:
            raise InvalidArgument.field("start_time", f"is not on the practice's {grid // 60}-minute slot grid")
        now = self._records.now()
        if start < now:
            raise FailedPrecondition("the slot lies in the past")
        if start < now + int(kind.min_lead.total_seconds()):
            raise FailedPrecondition(f"the slot is sooner than the {kind.min_lead} notice this appointment type needs")
        if kind.max_horizon is not None and start > now + int(kind.max_horizon.total_seconds()):
            raise FailedPrecondition("the slot is beyond how far ahead this appointment type can be booked online")
        interval = Interval(slot.start, slot.start + kind.duration)
        probe = SlotQuery(
            kind.id, Interval(slot.start, slot.start + timedelta(seconds=1)), (slot.column_id,), PageRequest(1)
        )
        offered = await self._availability.find_slots(ctx, probe, replacing["id"] if replacing else None)
        offered_here = any(s.start == slot.start for s in offered.items)
        if not offered_here and (replacing is None or not await self._free_besides(ctx, kind, slot, replacing)):
            raise FailedPrecondition("the slot is not free (booked, held, absent or reserved)")
        return kind, interval

    async def _free_besides(self, ctx: CallContext, kind: AppointmentType, slot: SlotRequest, old: Row) -> bool:
        """A move onto time the moved appointment itself occupies: is it free once that is gone?
        Free as partners see it: other claims (holds, bookings not yet in the PVS) are not."""
        if old["column_id"] != slot.column_id:
            return False
        need = Interval(slot.start, slot.start + kind.duration + kind.buffer)
        (free,) = await self._availability.get_free_time(ctx, need, [slot.column_id], old["id"])
        covered = union(free.intervals, IntervalArray.of([(old["start_s"], old["end_s"])]))
        wanted = IntervalArray.of([(from_datetime(need.start), from_datetime(need.end))])
        return len(subtract(wanted, covered)) == 0

    @property
    def takes_details(self) -> bool:
        """The practice's PVS has no patient lookup: patients come as details (GetPractice says so)."""
        return Capability.PATIENT_LOOKUP not in self._adapter.capabilities

    async def identified(self, ctx: CallContext, slot: SlotRequest) -> SlotRequest:
        """The slot with its patient as the desk keeps it: the PVS id, or the details as sent.
        Each practice takes one of the two ways; the other is FAILED_PRECONDITION naming its field."""
        if slot.patient_details is not None:
            if not self.takes_details:
                raise FailedPrecondition(
                    "patient_details: this practice identifies patients through PatientLookupService;"
                    " call FindOrCreatePatient and send its resource name as patient",
                    violations=[FieldViolation("patient_details", "not taken by this practice; send patient")],
                )
            return SlotRequest(slot.appointment_type_id, slot.column_id, slot.start, "", slot.patient_details)
        if self.takes_details:
            raise FailedPrecondition(
                "patient: this practice's PVS has no patient lookup; send the patient's details as patient_details",
                violations=[FieldViolation("patient", "not taken by this practice; send patient_details")],
            )
        return SlotRequest(
            slot.appointment_type_id, slot.column_id, slot.start, await self._patients.inward(ctx, slot.patient_id)
        )

    def keep_details(self, tx: Tx, ctx: CallContext, slot: SlotRequest) -> SlotRequest:
        """For a slot with details: keep them sealed under a new made-up patient id (in `tx`)."""
        details = slot.patient_details
        if details is None:
            return slot
        patient_id = f"{DETAILS_PREFIX}{secrets.token_hex(12)}"
        sent = SentPatient(
            details.given_name,
            details.family_name,
            details.birth_date,
            details.contacts,
            details.gender,
            details.address,
            details.note,
        )
        store_sent(tx, self._cipher, self._practice, patient_id, ctx.partner_id, sent, self._records.now())
        return SlotRequest(slot.appointment_type_id, slot.column_id, slot.start, patient_id)

    def mode_for(self, type_id: str, patient_id: str) -> str:
        """The booking mode; a patient sent as details has no PVS record to write for: manual."""
        if with_details(patient_id):
            return MANUAL
        return self._policy.mode_for(type_id, self._adapter.calendar_writer is not None)
