"""Claims (holds, bookings being written or waiting, bookings made through otv) in what partners see.

Through a real gateway with a writable reference practice, on both state stores, with the PVS
in-process and behind an adapter server. The expected answers come from the PVS adapter itself
(asked directly, without the gateway) and the claims in the state store: a slot of a type is
offered when the PVS offers it and no claim in its column overlaps [start, start + duration +
buffer), exactly as a written appointment blocks it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from booking_env import ANCHOR, BookingEnv, booking_env, slot_request
from patient_env import as_partner
from store_backends import BACKENDS

from gateway.practice_desk import practice_desk
from gateway.practice_reader import PracticeReader
from otv_rules.wallclock import to_utc, zone
from otv_sdk.errors import Aborted, FailedPrecondition, InvalidArgument
from otv_sdk.limits import MAX_TOKEN
from otv_sdk.models import AppointmentState, Interval, Slot
from otv_sdk.ports import CallContext, Page, PageRequest, SlotQuery
from otv_sdk.reference.database import Database
from otv_sdk.reference.demo import seed_demo
from otv_sdk.timeline import IntervalArray, concatenate, from_datetime, normalize, subtract

ALPHA, BETA = as_partner("alpha"), as_partner("beta")
BERLIN = zone("Europe/Berlin")
# Every state-store backend with the adapter in-process, and the PVS behind an adapter server.
SETUPS = [*((backend, "in_process") for backend in BACKENDS), ("sqlite", "remote")]
IDS = ["-".join(s) for s in SETUPS]


@pytest.fixture(params=SETUPS, ids=IDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BookingEnv]:
    backend, transport = request.param
    async with booking_env(backend, tmp_path, transport, modes={"pzr": "confirmation"}) as environment:
        yield environment


@pytest.fixture(params=SETUPS, ids=IDS)
async def buffered(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BookingEnv]:
    """The demo practice, except that a first consultation (30 minutes) needs 15 minutes after it."""
    backend, transport = request.param
    database = Database(tmp_path / "pvs.sqlite")  # booking_env opens this file and, not empty, keeps it
    try:
        database.run_sync(lambda conn: seed_demo(conn, ANCHOR))
        database.run_sync(
            lambda conn: conn.execute("UPDATE appointment_types SET buffer_minutes = 15 WHERE id = 'erstberatung'")
        )
    finally:
        database.close()
    async with booking_env(backend, tmp_path, transport) as environment:
        yield environment


def _day(offset: int = 0, days: int = 1) -> Interval:
    start = to_utc(ANCHOR + timedelta(days=offset), time(0), BERLIN)
    return Interval(start, start + timedelta(days=days))


def _week() -> Interval:
    start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
    return Interval(start, start + timedelta(days=7))


async def _page(
    env: BookingEnv, type_id: str, window: Interval, columns: tuple[str, ...], size: int, token: str = ""
) -> Page[Slot]:
    query = SlotQuery(type_id, window, columns, PageRequest(size, token))
    return await env.client.find_slots("demo", query, metadata=ALPHA)


async def _pages(
    env: BookingEnv, type_id: str, window: Interval, columns: tuple[str, ...], size: int
) -> list[Page[Slot]]:
    pages: list[Page[Slot]] = []
    token = ""
    while True:
        page = await _page(env, type_id, window, columns, size, token)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) < 1000, "paging does not end"


async def _expected(env: BookingEnv, type_id: str, window: Interval, columns: tuple[str, ...]) -> list[Slot]:
    """What a partner must be offered: the PVS's own slots (asked without the gateway) minus every slot
    whose [start, start + duration + buffer) overlaps a valid claim in its column."""
    ctx = CallContext("alpha")
    adapter = await env.gateway.router.configured_adapter("demo", ctx)
    assert adapter.calendar is not None
    pvs = PracticeReader(adapter.calendar)  # the practice's own slots, computed without any claim
    calendar = await pvs.list_calendars(ctx)
    kind = next(t for t in calendar.appointment_types if t.id == type_id)
    need = int((kind.duration + kind.buffer).total_seconds())
    offered: list[Slot] = []
    token = ""
    while True:
        page = await pvs.find_slots(ctx, SlotQuery(type_id, window, columns, PageRequest(1000, token)))
        offered += page.items
        token = page.next_page_token
        if not token:
            break
    claims = await _claims(env)
    return [
        s
        for s in offered
        if not any(
            c == s.column_id and lo < from_datetime(s.start) + need and hi > from_datetime(s.start)
            for c, lo, hi in claims
        )
    ]


async def _claims(env: BookingEnv) -> list[tuple[str, int, int]]:
    desk = await env.desk()
    now = int(datetime.now(UTC).timestamp())
    rows = await desk._store.run(
        lambda tx: tx.all("SELECT column_id, start_s, end_s FROM claims WHERE expire_s IS NULL OR expire_s > ?", (now,))
    )
    return [(r["column_id"], r["start_s"], r["end_s"]) for r in rows]


def _overlaps(slot: Slot, start: datetime, end: datetime, need: timedelta) -> bool:
    return slot.start < end and slot.start + need > start


# --- 1. FindSlots pages are full ------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 5])
async def test_a_page_of_n_has_n_slots_right_after_a_hold(env: BookingEnv, size: int) -> None:
    alpha = await env.patient("alpha")
    window = _week()
    first = (await _page(env, "kontrolle", window, ("berg",), 5)).items[0]
    await env.client.hold_slot("demo", slot_request(first, alpha), metadata=ALPHA)
    page = await _page(env, "kontrolle", window, ("berg",), size)
    assert len(page.items) == size
    assert page.next_page_token
    assert not [s for s in page.items if _overlaps(s, first.start, first.end, timedelta(minutes=20))]
    assert list(page.items) == (await _expected(env, "kontrolle", window, ("berg",)))[:size]


@pytest.mark.parametrize("columns", [("berg",), ()], ids=["one-column", "next-available"])
async def test_paging_yields_every_free_slot_exactly_once_and_none_claimed(
    env: BookingEnv, columns: tuple[str, ...]
) -> None:
    alpha, beta = await env.patient("alpha"), await env.patient("beta")
    day = _day(1)
    chosen: list[Slot] = []
    for column_id in ("berg", "weber"):  # in each column every 12th slot that overlaps none chosen before
        offered = list((await _page(env, "kontrolle", day, (column_id,), 1000)).items)
        for index, slot in enumerate(offered):
            if index % 12 == 0 and all(
                slot.start >= s.end or slot.end <= s.start for s in chosen if s.column_id == column_id
            ):
                chosen.append(slot)
    assert {s.column_id for s in chosen[1:]} == {"berg", "weber"}
    await env.client.book_appointment("demo", slot_request(chosen[0], alpha), metadata=ALPHA)  # in the PVS
    for slot in chosen[1:]:
        await env.client.hold_slot("demo", slot_request(slot, beta), metadata=BETA)
    expected = await _expected(env, "kontrolle", day, columns)
    assert len(expected) > 10
    for size in (2, 7):
        pages = await _pages(env, "kontrolle", day, columns, size)
        assert [len(p.items) for p in pages[:-1]] == [size] * (len(pages) - 1), size
        assert 0 < len(pages[-1].items) <= size
        served = [s for p in pages for s in p.items]
        assert served == expected, size
        assert len({(s.column_id, s.start) for s in served}) == len(served)
        for s in served:
            assert not [
                c for c in chosen if c.column_id == s.column_id and _overlaps(s, c.start, c.end, s.end - s.start)
            ]


async def test_page_tokens_are_the_gateways_own_bounded_and_bound_to_the_query(env: BookingEnv) -> None:
    alpha = await env.patient("alpha")
    window = _week()
    first = (await _page(env, "kontrolle", window, ("berg",), 3)).items[0]
    await env.client.hold_slot("demo", slot_request(first, alpha), metadata=ALPHA)
    page = await _page(env, "kontrolle", window, ("berg",), 3)
    assert 0 < len(page.next_page_token) <= MAX_TOKEN
    # A token of the engine's own paging is not one the partner-facing reader issued: it is refused.
    ctx = CallContext("alpha")
    adapter = await env.gateway.router.configured_adapter("demo", ctx)
    assert adapter.calendar is not None
    own = await PracticeReader(adapter.calendar).find_slots(
        ctx, SlotQuery("kontrolle", window, ("berg",), PageRequest(3))
    )
    assert own.next_page_token
    tampered = page.next_page_token[:-3] + ("AAA" if not page.next_page_token.endswith("AAA") else "BBB")
    for token in (own.next_page_token, tampered, "not-a-token", "x" * (MAX_TOKEN + 1)):
        with pytest.raises(InvalidArgument) as caught:
            await _page(env, "kontrolle", window, ("berg",), 3, token)
        assert [v.field for v in caught.value.violations] == ["page_token"], token
    with pytest.raises(InvalidArgument) as caught:
        await _page(env, "erstberatung", window, ("berg",), 3, page.next_page_token)
    assert [v.field for v in caught.value.violations] == ["page_token"]
    continued = await _page(env, "kontrolle", window, ("berg",), 3, page.next_page_token)
    assert continued.items[0].start > page.items[-1].start


# --- 2. ListBusyTimes shows an appointment once ---------------------------------------------------


async def test_busy_times_show_each_appointment_once_and_free_time_is_the_rest(env: BookingEnv) -> None:
    alpha, beta = await env.patient("alpha"), await env.patient("beta")
    written, held = await env.disjoint_slots(2)
    booked = await env.client.book_appointment("demo", slot_request(written, alpha), metadata=ALPHA)
    assert booked.state is AppointmentState.BOOKED
    hold = await env.client.hold_slot("demo", slot_request(held, beta), metadata=BETA)
    cleanings = (await _page(env, "pzr", _week(), (), 200)).items
    waiting_slot = cleanings[0]
    accepted_slot = next(s for s in cleanings if s.start >= waiting_slot.end)
    waiting = await env.client.book_appointment("demo", slot_request(waiting_slot, alpha, "pzr"), metadata=ALPHA)
    accepted = await env.client.book_appointment("demo", slot_request(accepted_slot, alpha, "pzr"), metadata=ALPHA)
    assert waiting.state is accepted.state is AppointmentState.PENDING_PRACTICE
    desk = await practice_desk(env.gateway.router, "demo")
    await desk.accept("staff:test", accepted.id, accepted.etag, "accept-1")  # now written into the PVS
    window = _week()
    busy = {c.column_id: c.intervals for c in await env.client.list_busy_times("demo", window, metadata=ALPHA)}
    for column_id, interval in [
        (booked.column_id, booked.interval),
        (hold.column_id, hold.interval),
        (waiting.column_id, waiting.interval),
        (accepted.column_id, accepted.interval),
    ]:
        pair = (from_datetime(interval.start), from_datetime(interval.end))
        assert busy[column_id].pairs().count(pair) == 1, (column_id, interval)
    # Free time is working time minus busy time and absences: every claim out, nothing taken twice.
    free = {c.column_id: c.intervals for c in await env.client.get_free_time("demo", window, metadata=ALPHA)}
    working = {c.column_id: c.intervals for c in await env.client.list_working_hours("demo", window, metadata=ALPHA)}
    absences = await env.client.list_absences("demo", window, metadata=ALPHA)
    lo, hi = from_datetime(window.start), from_datetime(window.end)
    for column_id, free_time in free.items():
        away = IntervalArray.from_intervals([a.interval for a in absences if a.column_id == column_id])
        blocked = normalize(concatenate(busy[column_id], away)).clipped(lo, hi)
        assert free_time == subtract(normalize(working[column_id]), blocked), column_id
    # Cancelled, it is gone from busy time and back in free time; the others stay.
    await env.client.cancel_appointment("demo", booked.id, booked.etag, metadata=ALPHA)
    busy = {c.column_id: c.intervals for c in await env.client.list_busy_times("demo", window, metadata=ALPHA)}
    written_pair = (from_datetime(booked.interval.start), from_datetime(booked.interval.end))
    assert written_pair not in busy[booked.column_id].pairs()
    free = {c.column_id: c.intervals for c in await env.client.get_free_time("demo", window, metadata=ALPHA)}
    inside = free[booked.column_id].window(*written_pair)
    assert inside.pairs() == [written_pair]


# --- 3. A claim blocks the buffer of an earlier slot ----------------------------------------------


async def _back_to_back(env: BookingEnv) -> tuple[Slot, Slot]:
    """Two first-consultation slots in Dr. Berg's column, the second 30 minutes after the first."""
    offered = (await _page(env, "erstberatung", _week(), ("berg",), 1000)).items
    starts = {s.start: s for s in offered}
    for slot in offered:
        later = starts.get(slot.start + timedelta(minutes=30))
        if later is not None:
            return slot, later
    raise AssertionError("no two first consultations back to back in the demo week")


async def test_a_hold_blocks_the_buffer_of_an_earlier_slot_like_a_written_appointment(buffered: BookingEnv) -> None:
    env = buffered
    alpha, beta = await env.patient("alpha"), await env.patient("beta")
    earlier, later = await _back_to_back(env)
    around = Interval(earlier.start - timedelta(hours=2), later.end + timedelta(hours=2))
    hold = await env.client.hold_slot("demo", slot_request(later, alpha, "erstberatung"), metadata=ALPHA)
    while_held = list((await _page(env, "erstberatung", around, ("berg",), 1000)).items)
    assert earlier not in while_held  # its 15 minutes after would be the held time
    need = timedelta(minutes=45)
    assert not [s for s in while_held if _overlaps(s, later.start, later.end, need)]
    # HoldSlot and BookAppointment check exactly what FindSlots offers.
    with pytest.raises((FailedPrecondition, Aborted)):
        await env.client.hold_slot("demo", slot_request(earlier, beta, "erstberatung"), metadata=BETA)
    with pytest.raises((FailedPrecondition, Aborted)):
        await env.client.book_appointment("demo", slot_request(earlier, beta, "erstberatung"), metadata=BETA)
    # The same time written into the PVS blocks exactly the same slots.
    await env.client.release_hold("demo", hold.id, metadata=ALPHA)
    assert earlier in (await _page(env, "erstberatung", around, ("berg",), 1000)).items
    booked = await env.client.book_appointment("demo", slot_request(later, alpha, "erstberatung"), metadata=ALPHA)
    assert booked.state is AppointmentState.BOOKED
    while_written = list((await _page(env, "erstberatung", around, ("berg",), 1000)).items)
    assert while_held == while_written
    assert while_written == await _expected(env, "erstberatung", around, ("berg",))


async def test_a_move_next_to_its_own_old_time_keeps_the_buffer_clear_of_other_holds(buffered: BookingEnv) -> None:
    env = buffered
    alpha, beta = await env.patient("alpha"), await env.patient("beta")
    offered = (await _page(env, "erstberatung", _week(), ("berg",), 1000)).items
    starts = {s.start for s in offered}
    first = next(s for s in offered if s.start + timedelta(minutes=45) in starts)
    booked = await env.client.book_appointment("demo", slot_request(first, alpha, "erstberatung"), metadata=ALPHA)
    behind = Slot("berg", first.start + timedelta(minutes=45), first.start + timedelta(minutes=75))
    hold = await env.client.hold_slot("demo", slot_request(behind, beta, "erstberatung"), metadata=BETA)
    # 15 minutes later it would end when the hold begins, but its buffer would be the held time.
    target = first.start + timedelta(minutes=15)
    with pytest.raises(FailedPrecondition, match="not free"):
        await env.client.reschedule_appointment("demo", booked.id, booked.etag, target, metadata=ALPHA)
    # Without the hold the same move is fine.
    await env.client.release_hold("demo", hold.id, metadata=BETA)
    moved = await env.client.reschedule_appointment("demo", booked.id, booked.etag, target, metadata=ALPHA)
    assert moved.interval.start == target
