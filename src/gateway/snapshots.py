"""Snapshot practices: a PVS that can only upload its busy times now and then.

One seed PVS asks the booking service which period to upload, then uploads every appointment of
it without patient data, with curl, every 60-120 s. For such a PVS the gateway is the calendar:
it keeps the last upload of every column in the state store, turns each new upload into change
events (otv_sdk.snapshot_diff: added, removed, a move is both) in the same transaction, and answers
reads from what was uploaded, saying how old it is (otv_sdk.freshness).

Rules a partner can rely on:
- the first upload of a column backfills it: everything in it is announced as added;
- a column left out of an upload keeps its previous snapshot; time outside the uploaded window is
  unknown and counts as busy, so nobody is offered a slot the PVS never confirmed was free;
- a column never uploaded is busy throughout (a practice may synchronise only some columns);
  before the practice's first upload, reads answer UNAVAILABLE;
- absences reach the gateway as busy time (the PVS uploads reservations like appointments).
Working hours and appointment types are configured at the gateway ([practices.x.adapter.snapshot]).

Slot-list practices (`slot_list = true`; DURIA, seed 002): every online slot must exist as a free
slot in the PVS's column, so the PVS uploads each column's free slots besides its busy times. They
are stored like busy times (`snapshot_slots`) and served as the data port's predefined slots, so
the engine offers exactly the free PVS slots inside the hours that admit the type; a slot missing
from the next upload is not offered any more. For partners, time of the window that no free slot
covers counts as busy (like time outside the window: the PVS never said it is free), in reads and
in the change feed: a deleted free slot reaches watchers as busy time added, a new one as busy time
removed (the gaps between slots are diffed like busy times). The response's counts stay those of
the busy times the PVS sent.

Every upload also reconciles manual bookings (reconciliation.py): a pending booking that a newly
uploaded busy interval shows entered into the PVS is transferred in the upload's transaction.

An upload is checked whole before anything is stored (SnapshotKeeper.check, docs/changes.md): its
window must lie inside the window GetUploadWindow gives, widened by WINDOW_TOLERANCE for a day that
turned between asking and uploading; every busy time must overlap that window and be at most
MAX_BUSY_SECONDS long; columns must be configured and named once; at most MAX_BUSY_TIMES busy times.
Free slots (slot-list practices only; any free slot for another practice is refused naming
`columns[i].free_slots`) must lie inside the upload's window, be at most MAX_SLOT_SECONDS long
and not overlap another slot of their column; at most MAX_FREE_SLOTS per upload.
A failure is INVALID_ARGUMENT naming the field, and nothing is applied.
"""

from __future__ import annotations

import base64
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from importlib import metadata

import numpy as np

from gateway.booking import BookingDesk
from gateway.change_feed import PracticeFeed
from gateway.config import SnapshotAdapterConfig, parse_weekly_span
from gateway.reconciliation import Describe, Transferred, transfer_entered
from gateway.state_store import Row, StateStore, Tx
from otv_rules.wallclock import to_utc, zone
from otv_sdk.changes import AppointmentChanged, BusyTimeChanged, Change
from otv_sdk.errors import InvalidArgument, Unavailable
from otv_sdk.freshness import report_data_age
from otv_sdk.models import (
    Absence,
    AdapterInfo,
    AppointmentType,
    Calendar,
    Capability,
    Column,
    ColumnIntervals,
    ColumnKind,
    Interval,
    PracticeProfile,
    WorkingTimeRules,
)
from otv_sdk.ports import Adapter, CalendarDataPort, CallContext
from otv_sdk.snapshot_diff import diff_column
from otv_sdk.timeline import (
    EMPTY,
    IntervalArray,
    concatenate,
    from_datetime,
    normalize,
    subtract,
    to_datetime,
)

__all__ = [
    "MAX_BUSY_SECONDS",
    "MAX_BUSY_TIMES",
    "MAX_FREE_SLOTS",
    "MAX_SLOT_SECONDS",
    "WINDOW_TOLERANCE",
    "SnapshotKeeper",
    "SnapshotPractice",
    "SnapshotUpload",
    "UploadOutcome",
    "check_busy_time_count",
    "check_free_slot_count",
    "snapshot_adapter",
]

_EVENT_SIZE = 1000  # busy times per change event, so a backfill is many small events, not one huge one
MAX_BUSY_TIMES = 200_000  # per upload; 24 months x 20 busy columns is about 30,000
# How far an upload's window may reach past the window GetUploadWindow gives now: the PVS asked
# just before the practice's midnight and uploads just after it, or computes "today" on its own
# clock, which a signed call already keeps within the signing scheme's default skew (5 minutes).
WINDOW_TOLERANCE = timedelta(minutes=5)
# The longest busy time: 731 days, the longest 24 months (the longest window anyone may ask for).
# A busy time may start before the upload's window or end after it (an absence across its edge);
# one longer than any window is a closure, to be uploaded as the part that overlaps the window.
# It also keeps every stored instant within about two years of the gateway's clock.
MAX_BUSY_SECONDS = 731 * 86_400
MAX_FREE_SLOTS = 200_000  # per upload; 24 months x 4 columns of 30-minute slots all day is about 140,000
MAX_SLOT_SECONDS = 86_400  # a free slot is one appointment's time, never more than a day

log = logging.getLogger("otv.gateway.snapshots")


def check_busy_time_count(total: int) -> None:
    """Too many busy times, refused before they are converted (the service counts them first)."""
    if total > MAX_BUSY_TIMES:
        raise InvalidArgument.field("columns", f"holds more than {MAX_BUSY_TIMES} busy times; upload less")


def check_free_slot_count(total: int) -> None:
    """Too many free slots, refused before they are converted."""
    if total > MAX_FREE_SLOTS:
        raise InvalidArgument.field("columns", f"holds more than {MAX_FREE_SLOTS} free slots; upload less")


@dataclass(frozen=True, slots=True)
class SnapshotPractice:
    """What the gateway knows of a snapshot practice without any upload: its configuration."""

    practice_id: str
    profile: PracticeProfile
    calendar: Calendar
    window_days: int
    upload_interval: timedelta
    slot_list: bool = False  # the PVS uploads its free slots (DURIA): only those are offered

    @classmethod
    def from_config(cls, practice_id: str, config: SnapshotAdapterConfig) -> SnapshotPractice:
        columns = tuple(
            Column(
                id=column.id,
                display_name=column.display_name,
                kind=ColumnKind.PRACTITIONER,
                weekly_hours=tuple(parse_weekly_span(text) for text in column.weekly_hours),
            )
            for column in config.columns
        )
        types = tuple(
            AppointmentType(
                id=kind.id,
                display_name=kind.display_name,
                duration=timedelta(minutes=kind.minutes),
                column_ids=tuple(kind.columns),
            )
            for kind in config.appointment_types
        )
        return cls(
            practice_id,
            PracticeProfile(config.display_name, config.time_zone),
            Calendar(columns=columns, appointment_types=types),
            config.window_days,
            timedelta(seconds=config.upload_interval_seconds),
            config.slot_list,
        )

    def upload_window(self, now: datetime) -> Interval:
        """From the start of today, practice time, for window_days local days (DST-exact)."""
        tz = zone(self.profile.time_zone)
        today = now.astimezone(tz).date()
        return Interval(
            to_utc(today, clock_time(0), tz), to_utc(today + timedelta(days=self.window_days), clock_time(0), tz)
        )

    def accepted_window(self, now: datetime, tolerance: timedelta) -> Interval:
        """Where an upload's window may lie: from the start of the window as of `now - tolerance`
        to the end of the window as of `now + tolerance`. Outside the tolerance around the
        practice's midnight this is exactly upload_window(now); around it, yesterday's window (a
        PVS that asked before midnight) and tomorrow's (a PVS whose clock is slightly ahead) fit."""
        return Interval(self.upload_window(now - tolerance).start, self.upload_window(now + tolerance).end)

    def column_ids(self) -> tuple[str, ...]:
        return tuple(column.id for column in self.calendar.columns)


@dataclass(frozen=True, slots=True)
class SnapshotUpload:
    """One upload, columns in the order sent (errors name their position). `free_slots[i]` are the
    free slots of `columns[i]` (slot-list practices); a column without an entry sent none."""

    request_id: str
    window: Interval
    columns: tuple[tuple[str, IntervalArray], ...]
    free_slots: tuple[IntervalArray, ...] = ()

    def slots(self, index: int) -> IntervalArray:
        return self.free_slots[index] if index < len(self.free_slots) else EMPTY


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    added: int
    removed: int
    backfilled: tuple[str, ...]
    cursor: str
    next_upload: datetime


@dataclass(frozen=True, slots=True)
class _ColumnState:
    window_lo: int
    window_hi: int
    busy: IntervalArray  # sorted by start; duplicates are double bookings
    upload_s: int
    slots: IntervalArray | None = None  # free slots, sorted, none overlapping; None: never uploaded

    def gaps(self) -> IntervalArray:
        """Time of the window that no free slot covers (slot-list practices): busy for partners."""
        return _gaps(self.slots if self.slots is not None else EMPTY, self.window_lo, self.window_hi)


def _gaps(slots: IntervalArray, lo: int, hi: int) -> IntervalArray:
    return subtract(IntervalArray.of([(lo, hi)]), normalize(slots))


# Stored snapshots: "z:" + base64 of zlib-compressed little-endian int64 (starts as differences
# from the previous start, then lengths). A sorted 24-month column is a few kilobytes instead of
# hundreds, so an upload writes (and the next one reads) a fraction of the bytes. Values stored
# before this encoding (plain base64 of starts then ends) are still read.
_COMPACT = "z:"


def _encode(busy: IntervalArray) -> str:
    starts = busy.starts.astype(np.int64)
    packed = np.concatenate((np.diff(starts, prepend=0), busy.ends - starts)).astype("<i8").tobytes()
    return _COMPACT + base64.b64encode(zlib.compress(packed, 1)).decode()


def _decode(text: str) -> IntervalArray:
    if text.startswith(_COMPACT):
        raw = np.frombuffer(zlib.decompress(base64.b64decode(text[len(_COMPACT) :])), dtype="<i8")
        deltas, lengths = raw.astype(np.int64).reshape(2, -1)
        if deltas.shape[0] == 0:
            return EMPTY
        starts = np.cumsum(deltas)
        return IntervalArray(starts, starts + lengths)
    raw = np.frombuffer(base64.b64decode(text), dtype="<i8").astype(np.int64).reshape(2, -1)
    if raw.shape[1] == 0:
        return EMPTY
    return IntervalArray(np.ascontiguousarray(raw[0]), np.ascontiguousarray(raw[1]))


def _check_free_slots(slots: IntervalArray, lo: int, hi: int, field: str) -> None:
    """Every free slot ends after it starts, lies inside [lo, hi), is at most MAX_SLOT_SECONDS long,
    and overlaps no other slot of the column. The first that fails (in the order sent) is named;
    of two overlapping slots, the one sent later."""
    lengths = slots.ends - slots.starts
    empty = lengths <= 0
    outside = (slots.starts < lo) | (slots.ends > hi)
    too_long = lengths > MAX_SLOT_SECONDS
    wrong = np.flatnonzero(empty | outside | too_long)
    if wrong.size:
        first = int(wrong[0])
        if empty[first]:
            raise InvalidArgument.field(f"{field}[{first}]", "must end after it starts")
        if outside[first]:
            raise InvalidArgument.field(f"{field}[{first}]", "lies outside the upload's window")
        raise InvalidArgument.field(f"{field}[{first}]", f"is longer than {MAX_SLOT_SECONDS // 3600} hours")
    if len(slots) < 2:
        return
    order = np.lexsort((slots.ends, slots.starts))
    starts, ends = slots.starts[order], slots.ends[order]
    clash = np.flatnonzero(starts[1:] < ends[:-1])
    if clash.size:
        # sorted by start, slots overlap somewhere exactly when a neighbouring pair does
        pair = sorted((int(order[clash[0]]), int(order[clash[0] + 1])))
        raise InvalidArgument.field(f"{field}[{pair[1]}]", f"overlaps {field}[{pair[0]}]; free slots may not overlap")


def _events(column_id: str, added: IntervalArray, removed: IntervalArray) -> list[BusyTimeChanged]:
    events = []
    for lo in range(0, max(len(added), len(removed)), _EVENT_SIZE):
        part_added = IntervalArray(added.starts[lo : lo + _EVENT_SIZE], added.ends[lo : lo + _EVENT_SIZE])
        part_removed = IntervalArray(removed.starts[lo : lo + _EVENT_SIZE], removed.ends[lo : lo + _EVENT_SIZE])
        events.append(BusyTimeChanged(column_id, tuple(part_added.intervals()), tuple(part_removed.intervals())))
    return events


def _check_busy_times(busy: IntervalArray, lo: int, hi: int, field: str) -> None:
    """Every busy time ends after it starts, overlaps [lo, hi) and is at most MAX_BUSY_SECONDS long.

    Vectorised over the column; the first busy time that fails (in the order sent) is named. A
    busy time that fails several rules is named once, for the first rule it breaks below.
    """
    lengths = busy.ends - busy.starts
    empty = lengths <= 0
    outside = (busy.ends <= lo) | (busy.starts >= hi)
    too_long = lengths > MAX_BUSY_SECONDS
    wrong = np.flatnonzero(empty | outside | too_long)
    if wrong.size == 0:
        return
    first = int(wrong[0])
    if empty[first]:
        raise InvalidArgument.field(f"{field}[{first}]", "must end after it starts")
    if outside[first]:
        raise InvalidArgument.field(f"{field}[{first}]", "does not overlap the upload's window")
    raise InvalidArgument.field(
        f"{field}[{first}]",
        f"is longer than {MAX_BUSY_SECONDS // 86_400} days; upload the part that overlaps the window",
    )


class SnapshotKeeper:
    """Keeps a practice's uploaded snapshots and turns each upload into change events."""

    def __init__(
        self,
        practice: SnapshotPractice,
        store: StateStore,
        feed: PracticeFeed,
        clock: Callable[[], float] = time.time,
        window_tolerance: timedelta = WINDOW_TOLERANCE,
    ) -> None:
        self.practice = practice
        self._store = store
        self._feed = feed
        self.clock = clock
        self.window_tolerance = window_tolerance
        # The practice's booking desk, for announcing bookings an upload reconciles (set by the router).
        self.bookings: Callable[[], Awaitable[BookingDesk | None]] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.clock()), UTC)

    def check(self, upload: SnapshotUpload, now: datetime) -> None:
        """Refuse an upload the gateway cannot apply as sent, naming the first wrong field.

        Everything is checked before the transaction, so a refused upload changes nothing: not the
        stored snapshots, not the change feed, not the last request_id. Linear in the busy times.
        """
        accepted = self.practice.accepted_window(now, self.window_tolerance)
        if upload.window.start < accepted.start:
            raise InvalidArgument.field(
                "window.start_time",
                f"lies before {accepted.start.isoformat()}, the start of the window to upload"
                " (GetUploadWindow); ask for the window again",
            )
        if upload.window.end > accepted.end:
            raise InvalidArgument.field(
                "window.end_time",
                f"lies after {accepted.end.isoformat()}, the end of the window to upload"
                " (GetUploadWindow); ask for the window again",
            )
        known = set(self.practice.column_ids())
        seen: set[str] = set()
        lo, hi = from_datetime(upload.window.start), from_datetime(upload.window.end)
        total = 0
        for index, (column_id, busy) in enumerate(upload.columns):
            if column_id not in known:
                raise InvalidArgument.field(f"columns[{index}].column", "is not a column configured for this practice")
            if column_id in seen:
                raise InvalidArgument.field(f"columns[{index}].column", "names a column twice")
            seen.add(column_id)
            total += len(busy)
            check_busy_time_count(total)
            _check_busy_times(busy, lo, hi, f"columns[{index}].busy_times")
        slots_total = 0
        for index, slots in enumerate(upload.free_slots[: len(upload.columns)]):
            self.check_slot_list(index, len(slots))
            slots_total += len(slots)
            check_free_slot_count(slots_total)
            _check_free_slots(slots, lo, hi, f"columns[{index}].free_slots")
        if len(upload.free_slots) > len(upload.columns):
            raise InvalidArgument.field("columns", "holds free slots for more columns than it names")

    def check_slot_list(self, index: int, count: int) -> None:
        """Free slots for a practice not configured for slot lists are refused, naming the field."""
        if count and not self.practice.slot_list:
            raise InvalidArgument.field(
                f"columns[{index}].free_slots",
                "this practice is not configured for slot lists (slot_list in its snapshot configuration);"
                " upload busy times only",
            )

    async def upload(self, upload: SnapshotUpload) -> UploadOutcome:
        now = int(self.clock())
        self.check(upload, to_datetime(now))
        describe = await self._describer()
        transferred: list[Transferred] = []
        outcome = await self._store.run(lambda tx: self._apply(tx, upload, now, describe, transferred))
        self._feed.notify()
        for done in transferred:
            log.info("upload showed booking %s entered: transferred", done.appointment_id)
        return outcome

    async def _describer(self) -> Describe | None:
        """How to tell a partner about its booking the upload transferred (the desk's own wording)."""
        desk = await self.bookings() if self.bookings is not None else None
        if desk is None:
            return None

        def describe(row: Row) -> Change:
            return AppointmentChanged(desk._appointment(CallContext(partner_id=str(row["partner"])), row))

        return describe

    def _apply(
        self, tx: Tx, upload: SnapshotUpload, now: int, describe: Describe | None, transferred: list[Transferred]
    ) -> UploadOutcome:
        practice_id = self.practice.practice_id
        tx.lock(f"snapshot:{practice_id}")
        next_upload = to_datetime(now) + self.practice.upload_interval
        last = tx.one("SELECT * FROM snapshot_uploads WHERE practice = ?", (practice_id,))
        if last is not None and last["request_id"] == upload.request_id:  # a retry of the last upload
            backfilled = tuple(filter(None, str(last["backfilled"]).split(",")))
            cursor = self._feed.cursor_in(tx)
            return UploadOutcome(int(last["added"]), int(last["removed"]), backfilled, cursor, next_upload)
        lo, hi = from_datetime(upload.window.start), from_datetime(upload.window.end)
        added_total = removed_total = 0
        backfilled_columns: list[str] = []
        changes: list[BusyTimeChanged] = []
        for index, (column_id, uploaded) in enumerate(upload.columns):
            busy = uploaded.sorted()
            row = tx.one(
                "SELECT busy, window_lo, window_hi FROM snapshot_columns WHERE practice = ? AND column_id = ?",
                (practice_id, column_id),
            )
            if row is None:
                backfilled_columns.append(column_id)
                added, removed = busy, EMPTY
            else:  # only what the new window covers is compared: earlier days just left the window
                added, removed = diff_column(_decode(str(row["busy"])).overlapping(lo, hi), busy)
            added_total += len(added)
            removed_total += len(removed)
            announced_added, announced_removed = added, removed
            if self.practice.slot_list:
                gaps_added, gaps_removed = self._store_slots(tx, column_id, row, upload.slots(index), lo, hi)
                announced_added = concatenate(added, gaps_added).sorted()
                announced_removed = concatenate(removed, gaps_removed).sorted()
            changes.extend(_events(column_id, announced_added, announced_removed))
            tx.execute("DELETE FROM snapshot_columns WHERE practice = ? AND column_id = ?", (practice_id, column_id))
            tx.execute(
                "INSERT INTO snapshot_columns (practice, column_id, window_lo, window_hi, upload_s, busy)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (practice_id, column_id, lo, hi, now, _encode(busy)),
            )
            transferred += transfer_entered(tx, practice_id, column_id, added, now, describe)
        own = [(done.change, done.partner_id) for done in transferred if done.change is not None]
        cursor = self._feed.append_in(tx, changes, own) if changes or own else self._feed.cursor_in(tx)
        tx.execute("DELETE FROM snapshot_uploads WHERE practice = ?", (practice_id,))
        tx.execute(
            "INSERT INTO snapshot_uploads (practice, request_id, upload_s, added, removed, backfilled)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (practice_id, upload.request_id, now, added_total, removed_total, ",".join(backfilled_columns)),
        )
        return UploadOutcome(added_total, removed_total, tuple(backfilled_columns), cursor, next_upload)

    def _store_slots(
        self, tx: Tx, column_id: str, previous: Mapping[str, object] | None, slots: IntervalArray, lo: int, hi: int
    ) -> tuple[IntervalArray, IntervalArray]:
        """Store a column's free slots; returns the change of the time no slot covers (busy for
        partners) as (added, removed), compared inside the new window like busy times."""
        practice_id = self.practice.practice_id
        slots = slots.sorted()
        stored = tx.one(
            "SELECT slots FROM snapshot_slots WHERE practice = ? AND column_id = ?", (practice_id, column_id)
        )
        old_gaps = EMPTY
        if previous is not None and stored is not None:
            window_lo, window_hi = int(str(previous["window_lo"])), int(str(previous["window_hi"]))
            old_gaps = _gaps(_decode(str(stored["slots"])), window_lo, window_hi).clipped(lo, hi)
        tx.execute("DELETE FROM snapshot_slots WHERE practice = ? AND column_id = ?", (practice_id, column_id))
        tx.execute(
            "INSERT INTO snapshot_slots (practice, column_id, slots) VALUES (?, ?, ?)",
            (practice_id, column_id, _encode(slots)),
        )
        return diff_column(old_gaps, _gaps(slots, lo, hi))

    async def columns(self) -> Mapping[str, _ColumnState]:
        """Every uploaded column's last snapshot (with its free slots for slot-list practices)."""
        practice_id = self.practice.practice_id
        slot_list = self.practice.slot_list

        def read(tx: Tx) -> tuple[list[dict[str, object]], dict[str, str]]:
            rows = tx.all("SELECT * FROM snapshot_columns WHERE practice = ?", (practice_id,))
            slots: dict[str, str] = {}
            if slot_list:
                for row in tx.all("SELECT column_id, slots FROM snapshot_slots WHERE practice = ?", (practice_id,)):
                    slots[str(row["column_id"])] = str(row["slots"])
            return rows, slots

        rows, slots = await self._store.run(read)
        return {
            str(row["column_id"]): _ColumnState(
                int(str(row["window_lo"])),
                int(str(row["window_hi"])),
                _decode(str(row["busy"])),
                int(str(row["upload_s"])),
                (_decode(slots[str(row["column_id"])]) if str(row["column_id"]) in slots else EMPTY)
                if slot_list
                else None,
            )
            for row in rows
        }


class SnapshotCalendarData(CalendarDataPort):
    """The calendar as configured plus the busy times as last uploaded: the same data port any PVS
    serves, so the gateway computes free time and slots for it like for every other practice."""

    def __init__(self, keeper: SnapshotKeeper) -> None:
        self._keeper = keeper
        self._practice = keeper.practice

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        return self._practice.profile

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return self._practice.calendar

    def _requested(self, column_ids: Sequence[str]) -> list[Column]:
        wanted = set(column_ids)
        return [column for column in self._practice.calendar.columns if not wanted or column.id in wanted]

    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        return WorkingTimeRules()  # configured weekly hours only; exceptions arrive as uploaded busy time

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        return []  # a snapshot PVS uploads its absences and reservations as busy time

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        columns = self._requested(column_ids)
        states = await self._keeper.columns()
        if not states:
            raise Unavailable("the practice's system has not uploaded its calendar yet")
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        now = self._keeper.now().timestamp()
        result = []
        for column in columns:
            state = states.get(column.id)
            if state is None:  # never uploaded (not synchronised): unknown, so busy
                result.append(ColumnIntervals(column.id, IntervalArray.of([(lo, hi)])))
                continue
            report_data_age(now - state.upload_s)
            unknown = subtract(IntervalArray.of([(lo, hi)]), IntervalArray.of([(state.window_lo, state.window_hi)]))
            busy = concatenate(state.busy.clipped(lo, hi), unknown)
            if state.slots is not None:  # a slot-list practice: what no free slot covers is not free
                busy = concatenate(busy, state.gaps().clipped(lo, hi)).sorted()
            result.append(ColumnIntervals(column.id, busy))
        return result

    async def list_predefined_slots(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals] | None:
        """The free slots last uploaded, for slot-list practices (None for the others): the engine
        offers only their starts, inside the hours, admitting the type."""
        if not self._practice.slot_list:
            return None
        states = await self._keeper.columns()
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        result = []
        for column in self._requested(column_ids):
            state = states.get(column.id)
            slots = state.slots if state is not None and state.slots is not None else EMPTY
            result.append(ColumnIntervals(column.id, slots.overlapping(lo, hi)))
        return result


def snapshot_adapter(keeper: SnapshotKeeper) -> Adapter:
    return Adapter(
        info=AdapterInfo("otv", "snapshot uploads", metadata.version("otv")),
        calendar=SnapshotCalendarData(keeper),
        extra_capabilities=frozenset({Capability.CHANGE_FEED}),
    )
