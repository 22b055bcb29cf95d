"""What the web page needs of the practice's desk (gateway.practice_desk.PracticeDesk).

A protocol, so the page depends on the calls only; the records (InboxItem, AuditEntry, ...) are
read by attribute in the templates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway.practice_desk import practice_desk

if TYPE_CHECKING:
    from gateway.routing import PracticeRouter

__all__ = ["Desk", "DeskProvider", "router_desks"]


class Desk(Protocol):
    async def inbox(self) -> list[Any]: ...

    def watch(self, cursor: str = "") -> AsyncIterator[Any]: ...

    async def accept(self, actor: str, appointment_id: str, etag: str, request_id: str) -> Any: ...

    async def reject(self, actor: str, appointment_id: str, etag: str, reason: str, request_id: str) -> Any: ...

    async def mark_transferred(
        self, actor: str, appointment_id: str, etag: str, pvs_id: str | None, request_id: str
    ) -> Any: ...

    async def audit(
        self,
        *,
        partner_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[Any], str]: ...

    async def recent(self, limit: int = 50) -> list[Any]: ...

    async def licences(self) -> list[Any]: ...

    async def set_licence(self, actor: str, partner_id: str, services: frozenset[str]) -> Any: ...


# The desk of one practice, by its id (raises otv_sdk.errors.NotFound for an unknown practice).
DeskProvider = Callable[[str], Awaitable[Desk]]


def router_desks(router: PracticeRouter) -> DeskProvider:
    """The gateway's own desks: `gateway.practice_desk.practice_desk(router, practice_id)`."""

    async def desk_for(practice_id: str) -> Desk:
        desk: Desk = await practice_desk(router, practice_id)
        return desk

    return desk_for
