"""Staff accounts of the practice web page: one per person and practice, passwords as Argon2id hashes.

argon2-cffi's defaults (RFC 9106's second recommended profile: 64 MiB, 3 passes) make every guess
cost memory as well as time. A login for an unknown user still verifies against a dummy hash, so the
answer takes as long as for a known one and does not tell which user names exist.
"""

from __future__ import annotations

import asyncio
import re
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.state_store import StateStore, Tx

__all__ = ["MIN_PASSWORD_LENGTH", "StaffAccounts", "valid_username"]

MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def valid_username(username: str) -> bool:
    return _USERNAME.fullmatch(username) is not None


class StaffAccounts:
    def __init__(self, store: StateStore, hasher: PasswordHasher | None = None) -> None:
        self._store = store
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash("not a password of anyone")

    def add(self, practice: str, username: str, password: str) -> bool:
        """Create the account, or set a new password for it; True when it was new."""
        if not valid_username(username):
            raise ValueError("user names are 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        hashed = self._hasher.hash(password)

        def work(tx: Tx) -> bool:
            known = tx.one(
                "SELECT 1 AS x FROM staff_accounts WHERE practice = ? AND username = ?", (practice, username)
            )
            tx.execute(
                "INSERT INTO staff_accounts (practice, username, password_hash, create_s) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (practice, username) DO UPDATE SET password_hash = excluded.password_hash",
                (practice, username, hashed, int(time.time())),
            )
            # A new password ends every session of the old one.
            tx.execute("DELETE FROM staff_sessions WHERE practice = ? AND username = ?", (practice, username))
            return known is None

        return self._store.run_sync(work)

    def remove(self, practice: str, username: str) -> bool:
        """Delete the account and end its sessions; False when there was none."""

        def work(tx: Tx) -> bool:
            tx.execute("DELETE FROM staff_sessions WHERE practice = ? AND username = ?", (practice, username))
            return (
                tx.execute("DELETE FROM staff_accounts WHERE practice = ? AND username = ?", (practice, username)) > 0
            )

        return self._store.run_sync(work)

    def list(self, practice: str | None = None) -> list[tuple[str, str]]:
        """(practice, username) pairs, sorted."""
        sql = "SELECT practice, username FROM staff_accounts"
        params: tuple[str, ...] = ()
        if practice is not None:
            sql, params = sql + " WHERE practice = ?", (practice,)
        rows = self._store.run_sync(lambda tx: tx.all(sql + " ORDER BY practice, username", params))
        return [(r["practice"], r["username"]) for r in rows]

    async def verify(self, practice: str, username: str, password: str) -> bool:
        """Whether the password is the account's; hashing runs on a worker thread."""
        row = await self._store.run(
            lambda tx: tx.one(
                "SELECT password_hash FROM staff_accounts WHERE practice = ? AND username = ?", (practice, username)
            )
        )
        hashed = self._dummy if row is None else str(row["password_hash"])
        ok = await asyncio.to_thread(self._check, hashed, password)
        return ok and row is not None

    def _check(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False
