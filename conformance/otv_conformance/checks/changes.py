"""Change announcements: what the PVS writes and deletes reaches the gateway, and the watch stays open.

The gateway keeps its engine current from these announcements alone (docs/vendor-guide.md,
WatchDataChanges), so an unannounced change leaves partners offered time that is taken, or not
offered time that is free. The cases write and delete through the adapter's own writer and watch
what it announces: its outbox in-process, its WatchDataChanges stream read straight from a remote
adapter server (change_watch.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from otv_conformance.cases import Group, case, check
from otv_conformance.change_watch import ChangeWatch
from otv_conformance.session import Session
from otv_sdk.changes import BusyTimeChanged, Change, Heartbeat
from otv_sdk.models import Interval
from otv_sdk.ports import CalendarEntry, CalendarWriterPort

__all__ = ["ANNOUNCE_SECONDS", "HEARTBEAT_SECONDS", "SYNC_SECONDS"]

G = Group.PVS

# Budgets (docs/conformance.md, time budgets). A change must be announced once committed, so a few
# seconds is generous; the vendor guide asks for a heartbeat after about 15 s without a change.
SYNC_SECONDS = 10.0  # until the first probe write is announced: the watch is live from then on
ANNOUNCE_SECONDS = 5.0  # from a write's or delete's answer to its announcement
HEARTBEAT_SECONDS = 20.0  # an idle watch's longest silence


def _writer(session: Session) -> CalendarWriterPort:
    writer = session.adapter.calendar_writer
    check(writer is not None, "the adapter declares the writer capability but has no calendar writer")
    assert writer is not None
    return writer


def _entry(session: Session, start: str, end: str, column_id: str) -> CalendarEntry:
    return CalendarEntry(
        reference=f"conformance-{uuid.uuid4()}",
        column_id=column_id,
        appointment_type_id="kontrolle",
        interval=Interval(session.at(start), session.at(end)),
        patient_id=session.placed.patient("p-karl").id,
        partner_id=session.partner_a,
        category="online",
    )


def _show(session: Session, interval: Interval) -> str:
    tz = session.placed.tz
    return f"{interval.start.astimezone(tz).isoformat()} to {interval.end.astimezone(tz).isoformat()}"


def _added(column_id: str, interval: Interval) -> Callable[[Change], bool]:
    def wanted(change: Change) -> bool:
        return isinstance(change, BusyTimeChanged) and change.column_id == column_id and interval in change.added

    return wanted


def _removed(column_id: str, interval: Interval) -> Callable[[Change], bool]:
    def wanted(change: Change) -> bool:
        return isinstance(change, BusyTimeChanged) and change.column_id == column_id and interval in change.removed

    return wanted


def _why(watch: ChangeWatch) -> str:
    return f" ({watch.ended})" if watch.ended else ""


def _announced(session: Session, watch: ChangeWatch, column_id: str) -> str:
    """What the watch did announce for the column, so a wrong interval reads as one, not as silence."""
    parts = [
        f"{kind} {_show(session, interval)}"
        for _, change in watch.received
        if isinstance(change, BusyTimeChanged) and change.column_id == column_id
        for kind, intervals in (("added", change.added), ("removed", change.removed))
        for interval in intervals
    ]
    return "; announced in " + column_id + ": " + (", ".join(parts[-6:]) if parts else "nothing")


def _any_addition(change: Change) -> bool:
    return isinstance(change, BusyTimeChanged) and bool(change.added)


async def _synchronised(session: Session, watch: ChangeWatch) -> None:
    """Write probes until one is announced: a stream's subscription is set up in the background, so
    a write made at once could precede it and be missed without any fault of the adapter. Any
    announced addition counts (nothing else writes meanwhile); whether announcements are exact, and
    in the right column, is for the writes that follow."""
    writer = _writer(session)
    probe = _entry(session, "A+45 07:00", "A+45 07:05", "dr-b")
    deadline = time.monotonic() + SYNC_SECONDS
    attempts = 0
    written: list[str] = []
    try:
        while True:
            one = replace(probe, reference=f"conformance-{uuid.uuid4()}")
            written.append((await writer.write_appointment(session.pvs_context(), one)).pvs_id)
            attempts += 1
            if await watch.wait_for(_any_addition, 0.5) is not None:
                return
            check(
                time.monotonic() < deadline and watch.ended is None,
                f"no write was announced within {SYNC_SECONDS:.0f} s of watching{_why(watch)}:"
                f" {attempts} probe write(s) of {_show(session, probe.interval)} in dr-b, none announced",
            )
            await writer.delete_appointment(session.pvs_context(), written.pop())
    finally:
        for pvs_id in written:
            await writer.delete_appointment(session.pvs_context(), pvs_id)


@case("pvs.changes.announced", "PV-10", G)
async def changes_announced(session: Session) -> str | None:
    """Every write and delete, regular and extra, in summer (S+5) and winter time (F+5), is announced
    with its column and exact interval within 5 s: by an in-process adapter on its outbox, by a
    remote one on WatchDataChanges. Not applicable to an adapter that announces nothing."""
    watching = session.watch_changes()
    if watching is None:
        return "not applicable: the adapter does not announce its changes (no DATA_CAPABILITY_CHANGES)"
    writer = _writer(session)
    async with watching as watch:
        await _synchronised(session, watch)
        for day in ("S+5", "F+5"):
            regular = _entry(session, f"{day} 10:00", f"{day} 10:20", "dr-a")
            extra = _entry(session, f"{day} 10:10", f"{day} 10:40", "dr-a")
            ids: dict[str, str] = {}
            for what, entry in (("regular", regular), ("extra", extra)):
                ids[what] = (await writer.write_appointment(session.pvs_context(), entry)).pvs_id
                seen = await watch.wait_for(_added("dr-a", entry.interval), ANNOUNCE_SECONDS)
                check(
                    seen is not None,
                    f"the write of the {what} entry {_show(session, entry.interval)} in dr-a was not announced"
                    f" (as added in dr-a) within {ANNOUNCE_SECONDS:.0f} s{_why(watch)}"
                    f"{_announced(session, watch, 'dr-a')}",
                )
            for what, entry in (("extra", extra), ("regular", regular)):
                await writer.delete_appointment(session.pvs_context(), ids[what])
                seen = await watch.wait_for(_removed("dr-a", entry.interval), ANNOUNCE_SECONDS)
                check(
                    seen is not None,
                    f"the delete of the {what} entry {_show(session, entry.interval)} in dr-a was not announced"
                    f" (as removed from dr-a) within {ANNOUNCE_SECONDS:.0f} s{_why(watch)}"
                    f"{_announced(session, watch, 'dr-a')}",
                )
    return None


@case("pvs.changes.heartbeat", "PV-13", G)
async def changes_heartbeat(session: Session) -> str | None:
    """An idle WatchDataChanges stream carries a DataHeartbeat within 20 s and stays open, so proxies
    keep it. Heartbeats are the stream's: an in-process adapter's outbox has none to send."""
    watching = session.watch_changes()
    if watching is None:
        return "not applicable: the adapter does not announce its changes (no DATA_CAPABILITY_CHANGES)"
    if not session.remote:
        return "not applicable in-process: the adapter server that serves this adapter sends the heartbeats"
    async with watching as watch:
        seen = await watch.wait_for(lambda change: isinstance(change, Heartbeat), HEARTBEAT_SECONDS)
        check(
            seen is not None,
            f"no DataHeartbeat within {HEARTBEAT_SECONDS:.0f} s on an idle WatchDataChanges stream{_why(watch)}",
        )
        check(watch.ended is None, f"the stream did not stay open: {watch.ended}")
    return None
