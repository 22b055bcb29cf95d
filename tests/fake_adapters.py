"""Adapters that misbehave on purpose, loadable as `fake_adapters:<factory>` plugins."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from otv_sdk.errors import FailedPrecondition
from otv_sdk.models import (
    Absence,
    Calendar,
    ColumnIntervals,
    ConsentState,
    Interval,
    PatientRecord,
    PracticeProfile,
    WorkingTimeRules,
)
from otv_sdk.ports import (
    Adapter,
    CalendarDataPort,
    CalendarEntry,
    CalendarWriterPort,
    CallContext,
    WrittenEntry,
)
from otv_sdk.reference import create_adapter as create_reference
from otv_sdk.reference.patients import ReferencePatients

# Personal data an adapter might carelessly put into an exception message.
LEAKED_NAME = "Erika Mustermann"
# What SlowReader saw of each call's deadline, in seconds remaining.
OBSERVED_REMAINING: list[float | None] = []
# Set by SlowReader when a call has entered it (a test installs a fresh Event for its loop).
ENTERED: asyncio.Event | None = None
# How long SlowReader takes to list busy times.
SLOW_SECONDS = 10.0
# Readers closed so far, by class name.
CLOSED: list[str] = []


class _Delegating(CalendarDataPort):
    def __init__(self, inner: CalendarDataPort) -> None:
        self.inner = inner

    async def aclose(self) -> None:
        CLOSED.append(type(self).__name__)
        closer = getattr(self.inner, "aclose", None)
        if closer is not None:
            await closer()

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        return await self.inner.get_practice(ctx)

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return await self.inner.list_calendars(ctx)

    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        return await self.inner.list_working_time_rules(ctx, window)

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        return await self.inner.list_absences(ctx, window, column_ids)

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self.inner.list_busy_times(ctx, window, column_ids)


class ExplodingReader(_Delegating):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        raise RuntimeError(f"lookup failed for patient {LEAKED_NAME}")


class SlowReader(_Delegating):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        OBSERVED_REMAINING.append(ctx.time_remaining())
        if ENTERED is not None:
            ENTERED.set()
        await asyncio.sleep(SLOW_SECONDS)
        return await self.inner.list_busy_times(ctx, window, column_ids)


class RefusingReader(_Delegating):
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        raise FailedPrecondition("the practice has not enabled online absences")


def _wrap(reader_type: type[_Delegating], settings: Mapping[str, Any]) -> Adapter:
    reference = create_reference("demo", settings)
    assert reference.calendar is not None
    return Adapter(info=reference.info, calendar=reader_type(reference.calendar))


def create_exploding(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    return _wrap(ExplodingReader, settings)


def create_slow(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    return _wrap(SlowReader, settings)


def create_refusing(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    return _wrap(RefusingReader, settings)


def create_not_an_adapter(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> object:
    return object()


# Adapters created by a test and handed to the gateway through the plugin mechanism.
SHARED: dict[str, Adapter] = {}


def shared(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    return SHARED[practice_id]


class LeakyPatients(ReferencePatients):
    """Gets the consented list wrong on purpose: every patient, whatever its consent, inactive ones too."""

    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        everyone = [pid for pid in self.practice.patient_ids() if pid > after][:limit]
        return [await self._any_record(ctx, pid) for pid in everyone]

    async def _any_record(self, ctx: CallContext, patient_id: str) -> PatientRecord:
        stored = self.practice.patient(patient_id)
        consent = await self.read_consent(ctx, patient_id) if stored.active else None
        return PatientRecord(
            stored.id,
            stored.given_name,
            stored.family_name,
            None,
            active=stored.active,
            consent=ConsentState.OPEN if consent is None else consent.state,
        )


def create_leaky(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    reference = SHARED[practice_id]
    assert isinstance(reference.patients, ReferencePatients)
    leaky = LeakyPatients(reference.patients.database)
    return Adapter(info=reference.info, calendar=reference.calendar, patients=leaky, consents=reference.consents)


# Where StallingWriter stalls: before or after the PVS write, before or after the PVS delete.
STALL_STEPS = ("before_write", "after_write", "before_delete", "after_delete")


class StallingWriter(CalendarWriterPort):
    """Writes to the PVS, announces it in a file, then stalls: a test kills the process right there.

    `step` says where: before or after a write (the marker holds the entry's reference) or before
    or after a delete (the marker holds the PVS id). The first `skip` calls of that kind go through
    untouched, so a test can book the appointment it then moves through the same process.
    """

    def __init__(self, inner: CalendarWriterPort, marker: Path, step: str = "after_write", skip: int = 0) -> None:
        if step not in STALL_STEPS:
            raise ValueError(f"step must be one of {STALL_STEPS}, not {step!r}")
        self.inner = inner
        self.marker = marker
        self.step = step
        self.skip = skip
        self.seen = 0

    def _due(self, operation: str) -> bool:
        if not self.step.endswith(operation):
            return False
        self.seen += 1
        return self.seen > self.skip

    async def _stall(self, announced: str) -> None:
        self.marker.write_text(announced)
        await asyncio.sleep(60)

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        due = self._due("write")
        if due and self.step == "before_write":
            await self._stall(entry.reference)
        written = await self.inner.write_appointment(ctx, entry)
        if due and self.step == "after_write":
            await self._stall(entry.reference)
        return written

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        due = self._due("delete")
        if due and self.step == "before_delete":
            await self._stall(pvs_id)
        removed = await self.inner.delete_appointment(ctx, pvs_id)
        if due and self.step == "after_delete":
            await self._stall(pvs_id)
        return removed


def create_stalling(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    """The reference adapter with a StallingWriter: settings `marker` (required), `stall_at` (one of
    STALL_STEPS, default after_write) and `skip` (default 0); the rest goes to the reference adapter."""
    options = dict(settings)
    marker = Path(options.pop("marker"))
    step = str(options.pop("stall_at", "after_write"))
    skip = int(options.pop("skip", 0))
    reference = create_reference(practice_id, options, base_dir=base_dir)
    assert reference.calendar_writer is not None
    writer = StallingWriter(reference.calendar_writer, marker, step, skip)
    return dataclasses.replace(reference, calendar_writer=writer)
