"""What every part of one practice's desk shares: its booking desk, calendar names, clock, wakeup.

The desk's parts (the inbox, decisions, history, licences) are mixins over this base, so one
`PracticeDesk` object per practice holds the state once. The wakeup lives here rather than in the
inbox because a decision wakes the inbox's watchers as much as a partner's event heard on the
practice's change feed does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.booking import BookingDesk
from otv_sdk.changes import AppointmentChanged, Change
from otv_sdk.errors import FailedPrecondition, OtvError
from otv_sdk.models import Calendar
from otv_sdk.ports import CallContext

if TYPE_CHECKING:
    from gateway.routing import PracticeRouter

__all__ = ["PracticeDeskBase"]

log = logging.getLogger("otv.gateway.practice")


class PracticeDeskBase:
    """One practice as its desk's parts reach it: through the router, as `practice:<id>`."""

    def __init__(self, router: PracticeRouter, practice_id: str, clock: Callable[[], float] = time.time) -> None:
        self._router = router
        self._practice = practice_id
        self._store = router.store
        self._clock = clock
        self._ctx = CallContext(partner_id=f"practice:{practice_id}")
        self._wakeup = asyncio.Event()
        feed = router.feed(practice_id)
        self._heartbeat = feed.heartbeat_seconds if feed is not None else 15.0
        if feed is not None:
            feed.listen(self._heard)

    @property
    def practice_id(self) -> str:
        return self._practice

    def _heard(self, change: Change) -> None:
        if isinstance(change, AppointmentChanged):
            self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _now(self) -> int:
        return int(self._clock())

    async def _desk(self) -> BookingDesk:
        from gateway.routing import booking_desk

        adapter = await self._router.resolve(self._practice, self._ctx, "parent")
        desk = booking_desk(adapter)
        if desk is None:
            raise FailedPrecondition("this practice takes no bookings through the gateway")
        return desk

    async def _calendar(self, desk: BookingDesk) -> Calendar | None:
        try:
            return await desk.reader.list_calendars(self._ctx)
        except OtvError as error:  # the names are a convenience: the inbox works without the PVS
            log.warning("no calendar names for practice %s: %s", self._practice, error.code.value)
            return None
