"""One practice as its desk's parts reach it: its booking desk, calendar names, clock, wakeup.

The desk's parts (the inbox, decisions, history, licences) each hold the same scope, so what they
share is in one place and each part shows what it uses. The wakeup lives here rather than in the
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

__all__ = ["PracticeScope"]

log = logging.getLogger("otv.gateway.practice")


class PracticeScope:
    """One practice as the gateway's own caller reaches it: through the router, as `practice:<id>`."""

    def __init__(self, router: PracticeRouter, practice_id: str, clock: Callable[[], float] = time.time) -> None:
        self.router = router
        self.practice_id = practice_id
        self.store = router.store
        self.ctx = CallContext(partner_id=f"practice:{practice_id}")
        self._clock = clock
        self._wakeup = asyncio.Event()
        feed = router.feed(practice_id)
        if feed is not None:
            feed.listen(self._heard)

    @property
    def wakeup(self) -> asyncio.Event:
        """Set at the next change of the inbox; take it before reading, so a change meanwhile counts."""
        return self._wakeup

    def _heard(self, change: Change) -> None:
        if isinstance(change, AppointmentChanged):
            self.wake()

    def wake(self) -> None:
        """Wake every watcher of the inbox (a decision here, or a partner's change heard on the feed)."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def now(self) -> int:
        return int(self._clock())

    async def booking_desk(self) -> BookingDesk:
        from gateway.routing import booking_desk

        adapter = await self.router.resolve(self.practice_id, self.ctx, "parent")
        desk = booking_desk(adapter)
        if desk is None:
            raise FailedPrecondition("this practice takes no bookings through the gateway")
        return desk

    async def calendar(self, desk: BookingDesk) -> Calendar | None:
        """The practice's calendar for column and type names, or None if the PVS cannot say now."""
        try:
            return await desk.reader.list_calendars(self.ctx)
        except OtvError as error:  # the names are a convenience: the inbox works without the PVS
            log.warning("no calendar names for practice %s: %s", self.practice_id, error.code.value)
            return None
