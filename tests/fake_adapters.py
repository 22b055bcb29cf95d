"""Adapters that misbehave on purpose, loadable as `fake_adapters:<factory>` plugins."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from otv_sdk.errors import FailedPrecondition
from otv_sdk.models import Absence, Calendar, ColumnIntervals, Interval, Patient, PracticeProfile
from otv_sdk.ports import (
    Adapter,
    CalendarEntry,
    CalendarWriterPort,
    CallContext,
    MatchOutcome,
    Page,
    PageRequest,
    PatientLookupPort,
    PatientQuery,
    ReaderPort,
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


class _Delegating(ReaderPort):
    def __init__(self, inner: ReaderPort) -> None:
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

    async def list_working_hours(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self.inner.list_working_hours(ctx, window, column_ids)

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
    return Adapter(info=reference.info, reader=reader_type(reference.reader))


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


class LeakyPatients(PatientLookupPort):
    """Gets privacy wrong on purpose: matches denied patients, lists everyone as shared."""

    def __init__(self, inner: ReferencePatients) -> None:
        self.inner = inner

    async def find_or_create_patient(self, ctx: CallContext, query: PatientQuery) -> tuple[Patient, MatchOutcome]:
        # Pretend every patient is a match: the first one, whatever its consent says.
        first = self.inner.practice.patient(self.inner.practice.patient_ids()[0])
        return Patient(first.id, first.given_name, first.family_name, query.birth_date), MatchOutcome.MATCHED

    async def list_shared_patients(self, ctx: CallContext, page: PageRequest) -> Page[Patient]:
        everyone = [self.inner.practice.patient(pid) for pid in self.inner.practice.patient_ids()]
        items = [Patient(p.id, p.given_name, p.family_name, None) for p in everyone]
        return Page(items, "")


def create_leaky(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    reference = SHARED[practice_id]
    assert isinstance(reference.patient_lookup, ReferencePatients)
    return Adapter(
        info=reference.info,
        reader=reference.reader,
        patient_lookup=LeakyPatients(reference.patient_lookup),
        consent=reference.consent,
    )


class StallingWriter(CalendarWriterPort):
    """Writes to the PVS, announces it in a file, then stalls: a test kills the process right there."""

    def __init__(self, inner: CalendarWriterPort, marker: Path) -> None:
        self.inner = inner
        self.marker = marker

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        written = await self.inner.write_appointment(ctx, entry)
        self.marker.write_text(entry.reference)
        await asyncio.sleep(60)
        return written

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> None:
        await self.inner.delete_appointment(ctx, pvs_id)


def create_stalling(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    options = dict(settings)
    marker = Path(options.pop("marker"))
    reference = create_reference(practice_id, options, base_dir=base_dir)
    assert reference.calendar_writer is not None
    return dataclasses.replace(reference, calendar_writer=StallingWriter(reference.calendar_writer, marker))
