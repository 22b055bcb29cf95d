"""The change feed of one practice: numbered and kept in the state store, fanned out in memory.

Changes arrive from the adapter's outbox (busy time, configuration) and from the gateway itself
(a partner's own appointments). One writer task per practice numbers them in arrival order in one
transaction per batch, so cursors are monotonic and every replica sharing the store sees the
same sequence. Watchers are async generators (no thread per watcher): they replay from the
store after their cursor, then follow the in-memory tail, waking on new events, with a heartbeat
when idle. Bodies are sealed like every other personal value at rest (an appointment event names
the partner's patient).

Replicas: every transaction that stores events announces them (PostgreSQL NOTIFY at commit, see
replica_wakeup.py), so the other replicas read them at once; a fallback poll (every second; every
minute while announcements flow and the listening connection hears its own pings) picks up
whatever an announcement missed. Events another replica stored, and those stored in a caller's
transaction (`append_in`), also reach this replica's listeners (`listen`: the kept engine, the
configuration cache, the inbox's watchers), so those views follow changes that were published
elsewhere, e.g. by the replica holding a connector's stream. Where every replica hears a
practice's changes itself (an in-process adapter or a dialled remote per replica), each replica
stores its copy, so listeners hear every change once per replica, additions and removals alike: the
engine counts busy intervals, so the copies balance (between a removal and its last copy the time
stays busy a few milliseconds longer: never offering taken time), and a removal it cannot match
drops the engine, which is read afresh.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.encryption import FieldCipher
from gateway.replica_wakeup import announce, wakeups_for
from gateway.state_store import StateStore, Tx
from otv.v1 import reader_service_pb2
from otv_sdk import conversion as cv
from otv_sdk.changes import AppointmentChanged, BusyTimeChanged, Change, ChangeEvent, Heartbeat
from otv_sdk.errors import FailedPrecondition, InvalidArgument
from otv_sdk.models import Appointment, Hold
from otv_sdk.ports import AppointmentQuery, CallContext, ChangeFeedPort, Page, SlotRequest, WriterPort

__all__ = ["TAIL_EVENTS", "AnnouncingWriter", "PracticeFeed"]

log = logging.getLogger("otv.gateway.changes")

_CURSOR_PREFIX = "c1-"
# Events kept in memory for live watchers (older positions are read from the store): at about
# 1.1 KiB an event (bench_replicas.py) a practice's tail is at most about 1.2 MiB; it was 4096 until
# replicas were sized for many practices each.
TAIL_EVENTS = 1024
_BATCH = 1000


def _cursor(seq: int) -> str:
    return f"{_CURSOR_PREFIX}{seq}"


def _parse_cursor(text: str) -> int:
    """Sequence numbers are ASCII digits of a 64-bit integer; `isdigit` alone also admits other
    scripts' digits, and `int` refuses thousands of them with an exception of its own."""
    digits = text.removeprefix(_CURSOR_PREFIX)
    if digits == text or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidArgument.field("cursor", "is not a cursor this gateway issued")
    return int(digits)


@dataclass(frozen=True, slots=True)
class _Stored:
    seq: int
    at: int
    partner: str | None
    column_id: str | None
    change: Change
    stored: float = 0.0  # when it was stored, as precisely as known (for the delivery-lag metric)
    elsewhere: bool = False  # stored by another replica

    def visible_to(self, partner_id: str, column_ids: Sequence[str]) -> bool:
        if self.partner is not None and self.partner != partner_id:
            return False
        return not column_ids or self.column_id is None or self.column_id in column_ids


class PracticeFeed(ChangeFeedPort):
    def __init__(
        self,
        practice_id: str,
        store: StateStore,
        cipher: FieldCipher,
        *,
        heartbeat_seconds: float = 15.0,
        retention: int = 100_000,
        poll_seconds: float = 1.0,
        listening_poll_seconds: float = 60.0,
    ) -> None:
        """`poll_seconds`: how late events other replicas stored may be seen when nothing announces
        them (SQLite, or the listening connection down); `listening_poll_seconds` while it is up."""
        self._practice = practice_id
        self._store = store
        self._cipher = cipher
        self._heartbeat = heartbeat_seconds
        self._retention = retention
        self._poll_seconds = poll_seconds
        self._listening_poll_seconds = listening_poll_seconds
        self._wakeups = wakeups_for(store)
        self._topic = f"feed:{practice_id}"
        self._unsubscribe: Callable[[], None] | None = None
        # Sequence numbers this replica's writer stored: their listeners were called at `publish`.
        self._written: set[int] = set()
        self._stamps: dict[int, float] = {}  # seq -> when this replica stored it
        self._announced: list[tuple[int, float]] = []  # (last seq, when) announced by other replicas
        self.on_delivered: Callable[[float, bool], None] | None = None  # (seconds since stored, elsewhere)
        self._aad = f"change:{practice_id}"
        self._tail: deque[_Stored] = deque(maxlen=TAIL_EVENTS)
        self._known = -1  # highest seq in the tail; -1 until first loaded
        self._wakeup = asyncio.Event()
        self._pending: list[tuple[Change, str | None]] = []
        self._pending_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self.watchers = 0
        self._listeners: list[Callable[[Change], None]] = []

    @property
    def heartbeat_seconds(self) -> float:
        return self._heartbeat

    def listen(self, listener: Callable[[Change], None]) -> None:
        """Call listener with every change published on this replica, as it is published: how the
        gateway's engine for the practice stays current whatever transport announced the change
        (adapter outbox, connector, a remote's change stream), before any partner can ask again."""
        self._listeners.append(listener)

    # --- in ---------------------------------------------------------------------------------

    def publish(self, change: Change, partner_id: str | None = None) -> None:
        """Queue a change; `partner_id` limits it to that partner. Never blocks, never raises."""
        if self._closed:  # an adapter outliving its gateway (tests, reloads) must not revive the feed
            return
        self._tell_listeners(change)
        self._pending.append((change, partner_id))
        self._pending_ready.set()
        self._start()

    def _start(self) -> None:
        if not self._tasks and not self._closed:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._write_loop()), loop.create_task(self._poll_loop())]
            self._unsubscribe = self._wakeups.subscribe(self._topic, self._heard_elsewhere)

    def _heard_elsewhere(self, detail: str) -> None:
        """Another replica stored events up to the announced seq (or: anything may have been missed)."""
        if self._closed:
            return
        seq, _, at = detail.partition("@")
        if seq.isdigit() and at:
            with contextlib.suppress(ValueError):
                self._announced.append((int(seq), float(at)))
        self._pending_ready.set()  # the writer task catches up

    async def aclose(self) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _seal(self, change: Change) -> str:
        body = cv.change_to_proto(self._practice, ChangeEvent("", datetime.now(UTC), change)).SerializeToString()
        return self._cipher.seal(base64.b64encode(body).decode(), self._aad)

    def _open(self, row: dict[str, object]) -> _Stored:
        body = base64.b64decode(self._cipher.open(str(row["body"]), self._aad))
        change = cv.change_from_proto(self._practice, reader_service_pb2.WatchChangesResponse.FromString(body)).change
        partner, column = row["partner"], row["column_id"]
        return _Stored(
            int(str(row["seq"])),
            int(str(row["at_s"])),
            None if partner is None else str(partner),
            None if column is None else str(column),
            change,
        )

    def _insert(self, tx: Tx, rows: Sequence[tuple[str | None, str | None, str]], now: int) -> int:
        """Number and store rows in tx, announced to the other replicas at commit; returns the last
        sequence number."""
        tx.lock(f"changes:{self._practice}")
        last = tx.one("SELECT MAX(seq) AS seq FROM change_events WHERE practice = ?", (self._practice,))
        seq = int(last["seq"]) if last and last["seq"] is not None else 0
        first = seq + 1
        for partner, column, body in rows:
            seq += 1
            tx.execute(
                "INSERT INTO change_events (practice, seq, at_s, partner, column_id, body) VALUES (?, ?, ?, ?, ?, ?)",
                (self._practice, seq, now, partner, column, body),
            )
        tx.execute("DELETE FROM change_events WHERE practice = ? AND seq <= ?", (self._practice, seq - self._retention))
        stamp = time.time()
        announce(tx, self._topic, f"{seq}@{stamp:.6f}")
        for number in range(first, seq + 1):
            self._stamps[number] = stamp
        return seq

    def _storing(self, rows: list[tuple[str | None, str | None, str]], now: int) -> Callable[[Tx], range]:
        def store(tx: Tx) -> range:
            last = self._insert(tx, rows, now)
            written = range(last - len(rows) + 1, last + 1)
            # Noted before the commit, so a catch-up that sees the rows knows they were published here.
            self._written.update(written)
            return written

        return store

    def append_in(self, tx: Tx, changes: Sequence[BusyTimeChanged], own: Sequence[tuple[Change, str]] = ()) -> str:
        """Store changes inside the caller's transaction, so they commit or vanish with its data;
        call `notify` after the commit. Returns the cursor after them. `own` are changes for one
        partner each (its appointments), stored after the busy-time changes."""
        rows: list[tuple[str | None, str | None, str]] = [
            (None, change.column_id, self._seal(change)) for change in changes
        ]
        rows += [(partner, None, self._seal(change)) for change, partner in own]
        return _cursor(self._insert(tx, rows, int(time.time())))

    def cursor_in(self, tx: Tx) -> str:
        """The feed's position as the caller's transaction sees it."""
        last = tx.one("SELECT MAX(seq) AS seq FROM change_events WHERE practice = ?", (self._practice,))
        return _cursor(int(last["seq"]) if last and last["seq"] is not None else 0)

    def notify(self) -> None:
        """Wake watchers after events were stored by `append_in`."""
        if self._closed:
            return
        self._start()
        self._pending_ready.set()  # the writer task catches up even with nothing of its own to store

    async def _write_loop(self) -> None:
        await self._ensure_known()
        while True:
            await self._pending_ready.wait()
            self._pending_ready.clear()
            batch, self._pending = self._pending, []
            if not batch:
                await self._catch_up()
                continue
            rows = [
                (partner, change.column_id if isinstance(change, BusyTimeChanged) else None, self._seal(change))
                for change, partner in batch
            ]
            storing = self._storing(rows, int(time.time()))
            try:
                await self._store.run(storing, durable=False)
            except Exception:  # the feed must survive a store hiccup; watchers re-read a snapshot if needed
                log.exception("could not store %d change events for practice %s", len(rows), self._practice)
                self._forget_uncommitted()
                continue
            await self._catch_up()

    def _forget_uncommitted(self) -> None:
        """After a failed store, numbers noted as written here may be used by another replica."""
        self._written = {seq for seq in self._written if seq <= self._known}

    async def _poll_loop(self) -> None:
        """Events another replica stored reach this replica's watchers within a poll interval even
        when no announcement arrives."""
        with contextlib.suppress(Exception):  # the starting position, at once (see current_cursor)
            await self._ensure_known()
        while True:
            listening = self._wakeups.listening
            await asyncio.sleep(self._listening_poll_seconds if listening else self._poll_seconds)
            with contextlib.suppress(Exception):
                await self._catch_up()

    async def _ensure_known(self) -> None:
        async with self._lock:
            if self._known < 0:
                self._known = await self._last_seq()

    async def _catch_up(self) -> None:
        await self._ensure_known()
        async with self._lock:
            while True:
                rows = await self._read_after(self._known, _BATCH)
                for row in rows:
                    stored, elsewhere = self._stored_at(row.seq, row.at)
                    self._tail.append(dataclasses.replace(row, stored=stored, elsewhere=elsewhere))
                    self._known = row.seq
                    if row.seq in self._written:
                        self._written.discard(row.seq)
                    else:  # stored elsewhere or in a caller's transaction: not yet heard here
                        self._tell_listeners(row.change)
                self._announced = [(seq, at) for seq, at in self._announced if seq > self._known]
                if len(self._stamps) > TAIL_EVENTS:  # left by transactions that rolled back
                    self._stamps = {seq: at for seq, at in self._stamps.items() if seq > self._known}
                if rows:
                    self._wakeup.set()
                    self._wakeup = asyncio.Event()
                if len(rows) < _BATCH:
                    return

    def _tell_listeners(self, change: Change) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # one listener's bug must not keep the change from the feed
                log.exception("a change listener of practice %s failed", self._practice)

    def _stored_at(self, seq: int, at: int) -> tuple[float, bool]:
        """When the event was stored, as precisely as this replica knows, and whether elsewhere."""
        own = self._stamps.pop(seq, None)
        if own is not None:
            return own, False
        announced = [when for last, when in self._announced if last >= seq]
        return (min(announced) if announced else float(at)), True

    # --- reads ------------------------------------------------------------------------------------

    async def _last_seq(self) -> int:
        row = await self._store.run(
            lambda tx: tx.one("SELECT MAX(seq) AS seq FROM change_events WHERE practice = ?", (self._practice,))
        )
        return int(row["seq"]) if row and row["seq"] is not None else 0

    async def _read_after(self, seq: int, limit: int) -> list[_Stored]:
        rows = await self._store.run(
            lambda tx: tx.all(
                "SELECT * FROM change_events WHERE practice = ? AND seq > ? ORDER BY seq LIMIT ?",
                (self._practice, seq, limit),
            )
        )
        return [self._open(row) for row in rows]

    async def _oldest_seq(self) -> int | None:
        row = await self._store.run(
            lambda tx: tx.one("SELECT MIN(seq) AS seq FROM change_events WHERE practice = ?", (self._practice,))
        )
        return int(row["seq"]) if row and row["seq"] is not None else None

    async def current_cursor(self, ctx: CallContext) -> str:
        self._start()
        # From here on this replica's listeners hear every event stored elsewhere: the feed's
        # position must be known before the caller acts, not at the first poll, or an event stored
        # in between would be taken as the starting point and never told.
        await self._ensure_known()
        return _cursor(await self._last_seq())

    async def _start_position(self, cursor: str) -> int:
        last = await self._last_seq()
        if not cursor:
            return last
        seq = _parse_cursor(cursor)
        if seq > last:
            raise InvalidArgument.field("cursor", "is ahead of this practice's feed; it was not issued here")
        oldest = await self._oldest_seq()
        if oldest is not None and seq < oldest - 1:
            raise FailedPrecondition(
                "the cursor is older than the changes this gateway keeps: re-read ListBusyTimes and resume from"
                " its change_cursor"
            )
        return seq

    def watch(self, ctx: CallContext, column_ids: Sequence[str], cursor: str) -> AsyncIterator[ChangeEvent]:
        self._start()
        return self._counted(self._follow(ctx.partner_id, tuple(column_ids), cursor))

    async def _counted(self, events: AsyncGenerator[ChangeEvent, None]) -> AsyncIterator[ChangeEvent]:
        """`watchers` counts the streams open now (a gauge of the gateway's metrics)."""
        self.watchers += 1
        try:
            async for event in events:
                yield event
        finally:
            self.watchers -= 1
            await events.aclose()

    async def _follow(
        self, partner_id: str, column_ids: tuple[str, ...], cursor: str
    ) -> AsyncGenerator[ChangeEvent, None]:
        last = await self._start_position(cursor)
        while True:
            wakeup = self._wakeup  # taken before looking, so an event stored meanwhile still wakes us
            batch = self._from_tail(last)
            live = batch is not None  # a replay from the store says nothing about delivery lag
            if batch is None:
                batch = await self._read_after(last, _BATCH)
            for item in batch:
                last = item.seq
                if item.visible_to(partner_id, column_ids):
                    if live and self.on_delivered is not None:
                        self.on_delivered(max(time.time() - item.stored, 0.0), item.elsewhere)
                    yield ChangeEvent(_cursor(item.seq), datetime.fromtimestamp(item.at, UTC), item.change)
            if batch:
                continue
            try:
                await asyncio.wait_for(wakeup.wait(), self._heartbeat)
            except TimeoutError:
                yield ChangeEvent(_cursor(last), datetime.now(UTC), Heartbeat())

    def _from_tail(self, last: int) -> list[_Stored] | None:
        """Events after `last` from memory, or None when memory does not reach back that far."""
        if self._known < 0 or last > self._known:
            return None
        if last == self._known:
            return []
        if not self._tail or self._tail[0].seq > last + 1:
            return None
        # Sequence numbers are consecutive (numbered under the practice's lock), so the position of
        # last + 1 is known: each of many woken watchers skips the tail in C, not item by item.
        at = last + 1 - self._tail[0].seq
        if at < len(self._tail) and self._tail[at].seq == last + 1:
            return list(itertools.islice(self._tail, at, None))
        return [item for item in self._tail if item.seq > last]


class AnnouncingWriter(WriterPort):
    """The booking desk, announcing each change to one of a partner's appointments to that partner."""

    def __init__(self, inner: WriterPort, feed: PracticeFeed) -> None:
        self._inner = inner
        self._feed = feed

    @property
    def inner(self) -> WriterPort:
        return self._inner

    def _announce(self, ctx: CallContext, appointment: Appointment) -> Appointment:
        self._feed.publish(AppointmentChanged(appointment), ctx.partner_id)
        return appointment

    async def hold_slot(self, ctx: CallContext, slot: SlotRequest) -> Hold:
        return await self._inner.hold_slot(ctx, slot)

    async def confirm_hold(self, ctx: CallContext, hold_id: str) -> Appointment:
        return self._announce(ctx, await self._inner.confirm_hold(ctx, hold_id))

    async def release_hold(self, ctx: CallContext, hold_id: str) -> None:
        await self._inner.release_hold(ctx, hold_id)

    async def book_appointment(self, ctx: CallContext, slot: SlotRequest) -> Appointment:
        return self._announce(ctx, await self._inner.book_appointment(ctx, slot))

    async def cancel_appointment(self, ctx: CallContext, appointment_id: str, etag: str) -> Appointment:
        return self._announce(ctx, await self._inner.cancel_appointment(ctx, appointment_id, etag))

    async def reschedule_appointment(
        self, ctx: CallContext, appointment_id: str, etag: str, start: datetime, column_id: str | None
    ) -> Appointment:
        moved = await self._inner.reschedule_appointment(ctx, appointment_id, etag, start, column_id)
        return self._announce(ctx, moved)

    async def get_appointment(self, ctx: CallContext, appointment_id: str) -> Appointment:
        return await self._inner.get_appointment(ctx, appointment_id)

    async def list_appointments(self, ctx: CallContext, query: AppointmentQuery) -> Page[Appointment]:
        return await self._inner.list_appointments(ctx, query)
