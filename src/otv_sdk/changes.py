"""Calendar changes: what a change feed carries, and how an adapter announces its own changes.

An adapter that knows when its calendar changes (the reference adapter does: it writes it) gives
the gateway a `ChangeOutbox` and publishes into it; the gateway numbers, stores and fans the
changes out to partners' WatchChanges streams. Busy-time changes carry no patient data; a
partner's own appointments reach only that partner (the gateway adds those).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from otv_sdk.models import Appointment, Interval

__all__ = [
    "AppointmentChanged",
    "BusyTimeChanged",
    "CalendarConfigChanged",
    "Change",
    "ChangeEvent",
    "ChangeOutbox",
    "Heartbeat",
]


@dataclass(frozen=True, slots=True)
class BusyTimeChanged:
    column_id: str
    added: tuple[Interval, ...] = ()
    removed: tuple[Interval, ...] = ()


@dataclass(frozen=True, slots=True)
class AppointmentChanged:
    """One of the watching partner's own appointments, with its details."""

    appointment: Appointment


@dataclass(frozen=True, slots=True)
class CalendarConfigChanged:
    """Columns, hours or types changed: re-read the calendar."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened; the stream is alive."""


Change = BusyTimeChanged | AppointmentChanged | CalendarConfigChanged | Heartbeat


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    cursor: str
    change_time: datetime
    change: Change


class ChangeOutbox:
    """Where an adapter publishes its changes; the gateway subscribes.

    Publishing never blocks and never fails the adapter's own work: subscribers queue what they
    get. Changes published before anyone subscribed are dropped (nobody could have missed them:
    a feed starts with a snapshot).
    """

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Change], None]] = []

    def subscribe(self, subscriber: Callable[[Change], None]) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Callable[[Change], None]) -> None:
        """Stop delivering to subscriber (a watch that ended); one never subscribed is ignored."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def publish(self, change: Change) -> None:
        for subscriber in self._subscribers:
            subscriber(change)
