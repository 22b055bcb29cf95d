"""The change feed (ReaderService.WatchChanges) through the real gRPC stack."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fake_adapters
import pytest
from conftest import SECRET, reference_settings, signer
from patient_env import as_partner, header_identity
from store_backends import store_for

from gateway.app import Gateway
from gateway.change_feed import PracticeFeed
from gateway.config import parse_config
from gateway.encryption import FieldCipher
from gateway.metrics import GatewayMetrics
from gateway.replica_wakeup import ReplicaWakeups, wakeups_for
from gateway.state_store import EVERYTHING, SqliteStore, Tx, open_store
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.changes import AppointmentChanged, BusyTimeChanged, CalendarConfigChanged, Change, ChangeEvent, Heartbeat
from otv_sdk.client import PartnerClient
from otv_sdk.errors import FailedPrecondition, InvalidArgument
from otv_sdk.models import Interval
from otv_sdk.ports import Adapter, CalendarEntry, CallContext, PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter
from otv_sdk.timeline import IntervalArray

ANCHOR = date.today() + timedelta(days=7 - date.today().weekday() + 7)


class Env:
    def __init__(self, gateway: Gateway, client: PartnerClient, adapter: Adapter) -> None:
        self.gateway = gateway
        self.client = client
        self.adapter = adapter

    def entry(self, hour: int, column: str = "berg", day: int = 1) -> CalendarEntry:
        start = datetime.combine(ANCHOR + timedelta(days=day), datetime.min.time(), UTC) + timedelta(hours=hour)
        return CalendarEntry(
            f"ref-{uuid.uuid4()}",
            column,
            "kontrolle",
            Interval(start, start + timedelta(minutes=20)),
            "p-1001",
            "x",
            "",
        )

    async def pvs_write(self, entry: CalendarEntry) -> str:
        """A change made in the PVS itself (staff, or another channel)."""
        assert self.adapter.calendar_writer is not None
        return (await self.adapter.calendar_writer.write_appointment(CallContext("staff"), entry)).pvs_id

    def watch(
        self, partner: str = "alpha", cursor: str = "", columns: tuple[str, ...] = ()
    ) -> AsyncIterator[ChangeEvent]:
        return self.client.watch_changes("demo", columns, cursor, metadata=as_partner(partner))

    async def cursor(self, partner: str = "alpha") -> str:
        window = Interval(datetime.now(UTC), datetime.now(UTC) + timedelta(days=1))
        _, cursor = await self.client.busy_snapshot("demo", window, metadata=as_partner(partner))
        return cursor


@asynccontextmanager
async def change_env(
    tmp_path: Path, *, state: str | None = None, transport: str = "in_process", **gateway: Any
) -> AsyncIterator[Env]:
    """A gateway in front of a reference PVS, in-process or dialled as a remote adapter server."""
    adapter = create_adapter(
        "demo", reference_settings(database=str(tmp_path / "pvs.sqlite"), demo_anchor=ANCHOR.isoformat())
    )
    remote: AdapterServer | None = None
    practice: dict[str, Any] = {"plugin": "fake_adapters:shared"}
    if transport == "remote":
        remote = await serve_adapters({"demo": adapter}, heartbeat_seconds=1)
        practice = {"remote": {"address": f"127.0.0.1:{remote.port}"}}
    else:
        fake_adapters.SHARED["demo"] = adapter
    section = {
        "listen": "127.0.0.1:0",
        "shutdown_grace_seconds": 0,
        "secret_key": SECRET,
        "state_store": state or f"sqlite:///{tmp_path / 'state.sqlite'}",
        **gateway,
    }
    config = parse_config({"gateway": section, "practices": {"demo": {"adapter": practice}}})
    started = await Gateway.start(config, identify=header_identity)
    try:
        async with PartnerClient.connect(started.address) as client:
            yield Env(started, client, adapter)
    finally:
        await started.stop(0)
        if remote is not None:
            await remote.stop(0)
        fake_adapters.SHARED.pop("demo", None)


async def take(events: AsyncIterator[ChangeEvent], count: int, *, skip_heartbeats: bool = True) -> list[ChangeEvent]:
    taken: list[ChangeEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            if skip_heartbeats and isinstance(event.change, Heartbeat):
                continue
            taken.append(event)
            if len(taken) == count:
                return taken
    return taken


async def test_a_change_in_the_pvs_reaches_a_watcher_as_busy_time(tmp_path: Path) -> None:
    async with change_env(tmp_path) as env:
        cursor = await env.cursor()
        entry = env.entry(9)
        await env.pvs_write(entry)
        (event,) = await take(env.watch(cursor=cursor), 1)
        assert event.change == BusyTimeChanged("berg", added=(entry.interval,))
        assert event.cursor != cursor


async def test_a_dialled_remote_pvs_announces_its_own_changes_to_watchers(tmp_path: Path) -> None:
    async with change_env(tmp_path, transport="remote") as env:
        cursor = await env.cursor()  # the first call describes the remote and starts following its changes
        await asyncio.sleep(0.2)  # the gateway's WatchDataChanges stream is subscribed
        entry = env.entry(9)
        pvs_id = await env.pvs_write(entry)
        (added,) = await take(env.watch(cursor=cursor), 1)
        assert added.change == BusyTimeChanged("berg", added=(entry.interval,))
        assert env.adapter.calendar_writer is not None
        await env.adapter.calendar_writer.delete_appointment(CallContext("staff"), pvs_id)
        (removed,) = await take(env.watch(cursor=added.cursor), 1)
        assert removed.change == BusyTimeChanged("berg", removed=(entry.interval,))


@pytest.mark.parametrize("transport", ["in_process", "remote"])
async def test_the_gateways_engine_follows_changes_made_in_the_pvs(tmp_path: Path, transport: str) -> None:
    """Free time is computed by the gateway from an engine it keeps; a change staff make in the PVS
    reaches it through the practice's feed, so the next answer reflects it without a re-read."""
    async with change_env(tmp_path, transport=transport) as env:
        day = Interval(env.entry(0).interval.start, env.entry(0).interval.start + timedelta(days=1))

        async def free() -> IntervalArray:
            (column,) = await env.client.get_free_time("demo", day, ["berg"], metadata=as_partner("alpha"))
            return column.intervals

        before = await free()
        gap = next(i for i in before.intervals() if i.end - i.start >= timedelta(minutes=20))
        entry = dataclasses.replace(env.entry(0), interval=Interval(gap.start, gap.start + timedelta(minutes=20)))
        cursor = await env.cursor()
        await asyncio.sleep(0.2)
        pvs_id = await env.pvs_write(entry)
        (added,) = await take(env.watch(cursor=cursor), 1)
        assert _overlaps(before, entry.interval)
        assert not _overlaps(await free(), entry.interval)
        assert env.adapter.calendar_writer is not None
        await env.adapter.calendar_writer.delete_appointment(CallContext("staff"), pvs_id)
        await take(env.watch(cursor=added.cursor), 1)
        assert await free() == before


def _overlaps(intervals: IntervalArray, interval: Interval) -> bool:
    return any(i.start < interval.end and interval.start < i.end for i in intervals.intervals())


async def test_resume_from_a_cursor_gets_every_later_event_once_in_order(tmp_path: Path) -> None:
    async with change_env(tmp_path) as env:
        start = await env.cursor()
        entries = [env.entry(8 + i) for i in range(6)]
        for entry in entries[:3]:
            await env.pvs_write(entry)
        first = await take(env.watch(cursor=start), 2)  # disconnect after two of three
        for entry in entries[3:]:
            await env.pvs_write(entry)
        rest = await take(env.watch(cursor=first[-1].cursor), 4)
        seen = [e.change.added[0] for e in first + rest if isinstance(e.change, BusyTimeChanged)]
        assert seen == [e.interval for e in entries]
        cursors = [e.cursor for e in first + rest]
        assert len(set(cursors)) == len(cursors)


async def test_cursor_and_events_survive_a_gateway_restart(tmp_path: Path) -> None:
    async with change_env(tmp_path) as env:
        cursor = await env.cursor()
        before = env.entry(10)
        await env.pvs_write(before)
        (event,) = await take(env.watch(cursor=cursor), 1)
    async with change_env(tmp_path) as env:  # same state store file, new gateway process state
        after = env.entry(11)
        await env.pvs_write(after)
        replayed = await take(env.watch(cursor=cursor), 2)
        assert [e.change.added[0] for e in replayed if isinstance(e.change, BusyTimeChanged)] == [
            before.interval,
            after.interval,
        ]
        assert replayed[0].cursor == event.cursor


async def test_stale_and_foreign_cursors_get_clear_statuses(tmp_path: Path) -> None:
    async with change_env(tmp_path, change_retention=100) as env:
        old = await env.cursor()
        feed = env.gateway.router.feed("demo")
        assert feed is not None
        for _ in range(150):
            feed.publish(CalendarConfigChanged())
        async with asyncio.timeout(10):
            while int((await env.cursor()).removeprefix("c1-")) < int(old.removeprefix("c1-")) + 150:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the writer task stores them in the background
        with pytest.raises(FailedPrecondition, match="re-read ListBusyTimes"):
            await take(env.watch(cursor=old), 1)
        with pytest.raises(InvalidArgument) as bad:
            await take(env.watch(cursor="garbage"), 1)
        assert bad.value.violations[0].field == "cursor"
        with pytest.raises(InvalidArgument):
            await take(env.watch(cursor="c1-999999999"), 1)


async def test_idle_streams_get_heartbeats_with_the_current_cursor(tmp_path: Path) -> None:
    async with change_env(tmp_path, heartbeat_seconds=0.2) as env:
        cursor = await env.cursor()
        (beat,) = await take(env.watch(cursor=cursor), 1, skip_heartbeats=False)
        assert isinstance(beat.change, Heartbeat)
        assert beat.cursor == cursor


async def test_own_appointments_reach_only_their_partner_and_columns_filter(tmp_path: Path) -> None:
    async with change_env(tmp_path) as env:
        cursor = await env.cursor()
        patient, _ = await env.client.find_or_create_patient(
            "demo", PatientQuery("Erika", "Mustermann", date(1964, 8, 12)), metadata=as_partner("alpha")
        )
        start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        query = SlotQuery("kontrolle", Interval(start, start + timedelta(days=7)), ("weber",), PageRequest(1))
        (slot,) = (await env.client.find_slots("demo", query, metadata=as_partner("alpha"))).items
        booked = await env.client.book_appointment(
            "demo", SlotRequest("kontrolle", "weber", slot.start, patient.id), metadata=as_partner("alpha")
        )
        mine = await take(env.watch("alpha", cursor), 2)
        kinds = {type(e.change) for e in mine}
        assert kinds == {BusyTimeChanged, AppointmentChanged}
        own = next(e.change for e in mine if isinstance(e.change, AppointmentChanged))
        assert own.appointment.id == booked.id
        theirs = await take(env.watch("beta", cursor), 1)
        assert isinstance(theirs[0].change, BusyTimeChanged)  # beta sees the time taken, nothing else
        await env.pvs_write(env.entry(9, column="berg"))
        (only_berg,) = await take(env.watch("beta", cursor, columns=("berg",)), 1)
        assert isinstance(only_berg.change, BusyTimeChanged)
        assert only_berg.change.column_id == "berg"


async def test_signed_partners_watch_through_the_authenticated_gateway(gateway: Gateway) -> None:
    if gateway.router.feed("demo") is None:
        pytest.skip("no feed")
    async with PartnerClient.connect(gateway.address, signer=signer()) as client:
        window = Interval(datetime.now(UTC), datetime.now(UTC) + timedelta(days=1))
        _, cursor = await client.busy_snapshot("demo", window)
        assert cursor.startswith("c1-")
        feed = gateway.router.feed("demo")
        assert feed is not None
        feed.publish(CalendarConfigChanged())
        async with asyncio.timeout(10):
            async for event in client.watch_changes("demo", cursor=cursor):
                assert isinstance(event.change, CalendarConfigChanged)
                break


@pytest.mark.slow
async def test_five_hundred_watchers_without_a_thread_each(tmp_path: Path) -> None:
    async with change_env(tmp_path) as env:
        cursor = await env.cursor()
        threads_before = threading.active_count()
        streams = [env.watch(f"p{i % 7}", cursor) for i in range(500)]
        tasks = [asyncio.ensure_future(take(s, 1)) for s in streams]
        await asyncio.sleep(1.0)  # let every stream open
        entry = env.entry(12)
        await env.pvs_write(entry)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert all(r[0].change == BusyTimeChanged("berg", added=(entry.interval,)) for r in results)
        assert threading.active_count() - threads_before < 50


# --- replicas sharing PostgreSQL: announced at commit, heard by the other replica's listeners --------


@asynccontextmanager
async def two_replicas(tmp_path: Path, **feed: Any) -> AsyncIterator[tuple[PracticeFeed, PracticeFeed]]:
    """Two feeds of one practice on two stores (two connection pools, two listening connections) in
    one PostgreSQL schema: what two gateway processes have, in one process."""
    cipher = FieldCipher({"k1": bytes(range(32))}, "k1")
    with store_for("postgres", tmp_path) as (first_store, url):
        second_store = open_store(url)
        here = PracticeFeed("demo", first_store, cipher, **feed)
        there = PracticeFeed("demo", second_store, cipher, **feed)
        try:
            yield here, there
        finally:
            await here.aclose()
            await there.aclose()
            second_store.close()


def _busy(hour: int) -> BusyTimeChanged:
    start = datetime.combine(ANCHOR, datetime.min.time(), UTC) + timedelta(hours=hour)
    return BusyTimeChanged("berg", (Interval(start, start + timedelta(minutes=10)),))


async def _listening(feed: PracticeFeed) -> None:
    """Start the feed (and its replica's listening connection) and wait until it hears announcements."""
    await feed.current_cursor(CallContext("alpha"))
    for _ in range(200):
        if wakeups_for(feed._store).listening:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the listening connection never started")


async def test_an_event_stored_on_one_replica_reaches_a_watcher_on_another_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    # A poll of a minute: only the announcement can deliver within the test's few seconds.
    async with two_replicas(tmp_path, poll_seconds=60, listening_poll_seconds=60) as (here, there):
        await _listening(there)
        heard: list[Change] = []
        there.listen(heard.append)
        delivered: list[tuple[float, bool]] = []
        there.on_delivered = lambda seconds, elsewhere: delivered.append((seconds, elsewhere))
        watch = there.watch(CallContext("alpha"), (), "")
        first = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.1)  # the watcher is waiting on the tail
        change = _busy(1)
        began = time.monotonic()
        here.publish(change)
        event = await asyncio.wait_for(first, 10)
        took = time.monotonic() - began
        assert event.change == _busy(1)
        assert took < 5.0, took  # the poll would take a minute
        assert heard == [event.change], "the other replica's listeners (engine, cache, inbox) hear it once"
        assert len(delivered) == 1
        assert delivered[0][1] is True, "stored by the other replica"
        assert delivered[0][0] < 5.0
        await watch.aclose()  # type: ignore[attr-defined]


async def test_a_replica_hears_its_own_published_changes_once_and_announcements_of_others_once(
    tmp_path: Path,
) -> None:
    async with two_replicas(tmp_path, poll_seconds=60, listening_poll_seconds=60) as (here, there):
        await _listening(here)
        await _listening(there)
        heard_here: list[Change] = []
        heard_there: list[Change] = []
        here.listen(heard_here.append)
        there.listen(heard_there.append)
        for hour in range(5):
            here.publish(_busy(hour))
        there.publish(CalendarConfigChanged())
        for _ in range(1000):
            if len(heard_here) == 6 and len(heard_there) == 6:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # nothing more arrives: a change published here is not heard again
        # Each replica hears its own at once and the other's as stored: the same six, in its own order.
        assert sorted(map(repr, heard_here)) == sorted(map(repr, heard_there))
        assert len(heard_here) == 6
        assert heard_here[:5] == [_busy(hour) for hour in range(5)] or heard_here[0] == CalendarConfigChanged()


async def test_a_missed_announcement_costs_at_most_the_fallback_poll(tmp_path: Path) -> None:
    async with two_replicas(tmp_path, poll_seconds=0.3, listening_poll_seconds=0.3) as (here, there):
        await _listening(there)
        metrics = GatewayMetrics()
        metrics.watch_feeds([there])
        watch = there.watch(CallContext("alpha"), (), "")
        first = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.1)

        def store_quietly(tx: Tx) -> None:  # as if the notification were lost: stored, not announced
            tx.execute(
                "INSERT INTO change_events (practice, seq, at_s, partner, column_id, body) VALUES (?, ?, ?, ?, ?, ?)",
                ("demo", 1, int(time.time()), None, "berg", here._seal(CalendarConfigChanged())),
            )

        await here._store.run(store_quietly)
        event = await asyncio.wait_for(first, 5)
        assert isinstance(event.change, CalendarConfigChanged)
        exposition = metrics.exposition().decode()
        assert 'otv_change_feed_delivery_seconds_count{replica="other"} 1.0' in exposition
        assert 'otv_change_feed_delivery_seconds_count{replica="this"} 0.0' in exposition
        await watch.aclose()  # type: ignore[attr-defined]


async def test_sqlite_stores_announce_nothing_and_feeds_poll(tmp_path: Path) -> None:
    with store_for("sqlite", tmp_path) as (store, url):
        assert store.announcements() is None
        cipher = FieldCipher({"k1": bytes(range(32))}, "k1")
        other = open_store(url)
        here, there = PracticeFeed("demo", store, cipher), PracticeFeed("demo", other, cipher, poll_seconds=0.2)
        try:
            heard: list[Change] = []
            there.listen(heard.append)
            await there.current_cursor(CallContext("alpha"))
            here.publish(CalendarConfigChanged())
            for _ in range(300):
                if heard:
                    break
                await asyncio.sleep(0.01)
            assert heard == [CalendarConfigChanged()]
        finally:
            await here.aclose()
            await there.aclose()
            other.close()


async def test_a_listening_connection_killed_on_the_server_is_replaced_and_nothing_is_missed(tmp_path: Path) -> None:
    async with two_replicas(tmp_path, poll_seconds=60, listening_poll_seconds=60) as (here, there):
        await _listening(here)
        await _listening(there)
        channel = f'LISTEN "{getattr(there._store, "channel", "")}"'

        def kill_listeners(tx: Tx) -> int:
            rows = tx.all("SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity WHERE query = ?", (channel,))
            return sum(1 for row in rows if row["gone"])

        assert await here._store.run(kill_listeners) == 2  # both replicas' listening connections
        watch = there.watch(CallContext("alpha"), (), "")
        first = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.1)
        here.publish(_busy(2))  # stored while the other replica may not be listening yet
        event = await asyncio.wait_for(first, 10)  # the new connection's EVERYTHING, not the minute's poll
        assert event.change == _busy(2)
        await watch.aclose()  # type: ignore[attr-defined]


class _DeafStore(SqliteStore):
    """Announcements connect but never deliver anything after the first EVERYTHING: a half-open
    connection, as far as the hub can tell."""

    announces = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.connections = 0

    async def announcements(self) -> AsyncGenerator[str, None]:
        self.connections += 1
        yield EVERYTHING
        await asyncio.Event().wait()


async def test_a_listening_connection_that_stops_hearing_its_own_ping_is_replaced(tmp_path: Path) -> None:
    store = _DeafStore(tmp_path / "state.sqlite")
    hub = ReplicaWakeups(store, ping_seconds=0.05, pong_seconds=0.05)
    woken: list[str] = []
    unsubscribe = hub.subscribe("feed:demo", woken.append)
    try:
        for _ in range(1000):
            if store.connections >= 3:
                break
            await asyncio.sleep(0.01)
        assert store.connections >= 3
        assert hub.restarts >= 2
        assert woken.count("") >= 3, "each new connection wakes every subscriber (EVERYTHING)"
    finally:
        unsubscribe()
        store.close()
