"""The practice's side of online booking: its inbox, decisions, audit and partner licences.

Both the PVS (PracticeService, practice_service.py) and the staff web page (practice_web/) use this
one desk per practice; `actor` says who decided ("pvs:<key id>", "staff:<user>") and goes into the
audit with the decision. The desk is assembled from its parts, one module each:

- practice_inbox.py      the bookings waiting for the practice, read once or watched live
- practice_decisions.py  accept, reject, mark transferred: idempotent, announced to the partner
- practice_history.py    the practice's audit and its recently changed bookings
- practice_licences.py   which partners may book here, with which services
- practice_scope.py      what the parts share: the booking desk, calendar names, clock, wakeup

One desk per practice and router, so every watcher of an inbox wakes on the decisions taken here.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.practice_decisions import PracticeDecisions
from gateway.practice_history import AuditEntry, PracticeHistory, RecentBooking
from gateway.practice_inbox import InboxEvent, InboxItem, PatientDetails, PracticeInbox
from gateway.practice_licences import PartnerLicence, PracticeLicences
from gateway.practice_scope import PracticeScope
from otv_sdk.errors import NotFound

if TYPE_CHECKING:
    from gateway.routing import PracticeRouter

__all__ = [
    "AuditEntry",
    "InboxEvent",
    "InboxItem",
    "PartnerLicence",
    "PatientDetails",
    "PracticeDesk",
    "RecentBooking",
    "practice_desk",
]


class PracticeDesk:
    """One practice's desk; obtain it with `await practice_desk(router, practice_id)`.

    Its calls are its parts' methods, each part holding the one scope of the practice."""

    def __init__(self, router: PracticeRouter, practice_id: str, clock: Callable[[], float] = time.time) -> None:
        scope = PracticeScope(router, practice_id, clock)
        self.practice_id = practice_id
        inbox, decisions = PracticeInbox(scope), PracticeDecisions(scope)
        history, licences = PracticeHistory(scope), PracticeLicences(scope)
        self.inbox, self.watch = inbox.inbox, inbox.watch
        self.accept, self.reject, self.mark_transferred = decisions.accept, decisions.reject, decisions.mark_transferred
        self.audit, self.recent = history.audit, history.recent
        self.licences, self.set_licence = licences.licences, licences.set_licence


_DESKS: weakref.WeakKeyDictionary[PracticeRouter, dict[str, PracticeDesk]] = weakref.WeakKeyDictionary()


async def practice_desk(router: PracticeRouter, practice_id: str) -> PracticeDesk:
    """The desk of one practice of this gateway; NotFound naming `parent` for an unknown practice."""
    if practice_id not in router.practice_ids:
        raise NotFound.field("parent", "no practice with this id is connected to this gateway")
    desks = _DESKS.setdefault(router, {})
    desk = desks.get(practice_id)
    if desk is None:
        desk = PracticeDesk(router, practice_id)
        desks[practice_id] = desk
    return desk
