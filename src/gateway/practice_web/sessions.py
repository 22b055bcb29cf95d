"""Staff sessions: a random cookie, stored only as its SHA-256, ending after idle and absolute time.

The cookie is HttpOnly, SameSite=Strict, path /practice/, and Secure when the page is served over
TLS. Each session carries its own CSRF token (see csrf.py). Sessions live in the state store, so
every gateway replica sharing it knows them and a restart logs nobody out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.state_store import StateStore, Tx

__all__ = ["COOKIE", "Session", "Sessions"]

COOKIE = "otv_practice_session"


@dataclass(frozen=True, slots=True)
class Session:
    practice: str
    username: str
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(
        self,
        store: StateStore,
        *,
        idle_seconds: float = 30 * 60,
        absolute_seconds: float = 10 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        self._clock = clock

    async def create(self, practice: str, username: str) -> tuple[str, Session]:
        """A new session; returns the cookie value (never stored) and the session."""
        token = secrets.token_urlsafe(32)
        session = Session(practice, username, secrets.token_urlsafe(32))
        now = int(self._clock())

        def work(tx: Tx) -> None:
            # Expired sessions of anyone go when someone logs in: no background job needed.
            tx.execute(
                "DELETE FROM staff_sessions WHERE seen_s < ? OR create_s < ?",
                (now - self.idle_seconds, now - self.absolute_seconds),
            )
            tx.execute(
                "INSERT INTO staff_sessions (id_hash, practice, username, csrf, create_s, seen_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_digest(token), practice, username, session.csrf, now, now),
            )

        await self._store.run(work)
        return token, session

    async def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of this cookie, or None; `touch` starts its idle time anew."""
        if not token:
            return None
        key, now = _digest(token), int(self._clock())

        def work(tx: Tx) -> Session | None:
            row = tx.one("SELECT * FROM staff_sessions WHERE id_hash = ?", (key,))
            if row is None:
                return None
            if now - int(row["seen_s"]) > self.idle_seconds or now - int(row["create_s"]) > self.absolute_seconds:
                tx.execute("DELETE FROM staff_sessions WHERE id_hash = ?", (key,))
                return None
            if touch and now != int(row["seen_s"]):
                tx.execute("UPDATE staff_sessions SET seen_s = ? WHERE id_hash = ?", (now, key))
            return Session(str(row["practice"]), str(row["username"]), str(row["csrf"]))

        return await self._store.run(work)

    async def end(self, token: str | None) -> None:
        if token:
            key = _digest(token)
            await self._store.run(lambda tx: tx.execute("DELETE FROM staff_sessions WHERE id_hash = ?", (key,)))
