"""The gateway's state store: one interface, two backends (SQLite, PostgreSQL).

What the gateway itself must remember lives here: holds, claims on calendar time, idempotency
records, appointments booked through it and the practice inbox. Work is done in transactions:
`await store.run(work)` calls `work(tx)` (plain synchronous code, on a worker thread) inside one
transaction that commits when it returns and rolls back when it raises.

`tx.lock(key)` serialises transactions on a key across every gateway process sharing the store:
PostgreSQL takes a transaction-scoped advisory lock; SQLite already serialises writers
(`BEGIN IMMEDIATE`, with WAL so readers do not wait). That is what makes "exactly one winner"
hold for two gateway processes, not only inside one.

SQL is written once, with `?` placeholders and portable types; the PostgreSQL backend translates
the placeholders.

`tx.announce(topic)` tells every other process sharing the store that something under `topic`
changed, when (and only if) the transaction commits: PostgreSQL's NOTIFY on a channel named for
the store's schema, heard through `store.announcements()` on a connection of its own. What was
stored stays the truth; an announcement only saves a replica its wait for the next poll. SQLite
announces nothing: its processes poll (one gateway process per file is the deployment it is for).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = ["EVERYTHING", "SCHEMA", "Row", "StateStore", "Tx", "open_store"]

T = TypeVar("T")
Row = dict[str, Any]

log = logging.getLogger("otv.gateway.state_store")

# Said after (re)connecting the listening connection: announcements may have been missed meanwhile.
EVERYTHING = "*"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS claims (
        id TEXT PRIMARY KEY,
        practice TEXT NOT NULL,
        column_id TEXT NOT NULL,
        start_s BIGINT NOT NULL,
        end_s BIGINT NOT NULL,
        expire_s BIGINT,
        owner TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS claims_by_column ON claims (practice, column_id, start_s)",
    """CREATE TABLE IF NOT EXISTS holds (
        id TEXT PRIMARY KEY,
        practice TEXT NOT NULL,
        partner TEXT NOT NULL,
        column_id TEXT NOT NULL,
        type_id TEXT NOT NULL,
        start_s BIGINT NOT NULL,
        end_s BIGINT NOT NULL,
        patient TEXT NOT NULL,
        expire_s BIGINT NOT NULL,
        state TEXT NOT NULL,
        appointment TEXT,
        create_s BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS appointments (
        id TEXT PRIMARY KEY,
        practice TEXT NOT NULL,
        partner TEXT NOT NULL,
        column_id TEXT NOT NULL,
        type_id TEXT NOT NULL,
        start_s BIGINT NOT NULL,
        end_s BIGINT NOT NULL,
        patient TEXT NOT NULL,
        state TEXT NOT NULL,
        mode TEXT NOT NULL,
        extra INTEGER NOT NULL DEFAULT 0,
        pvs_id TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        create_s BIGINT NOT NULL,
        cancel_s BIGINT,
        rescheduled_from TEXT,
        rescheduled_to TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS appointments_by_partner ON appointments (practice, partner, start_s)",
    """CREATE TABLE IF NOT EXISTS requests (
        partner TEXT NOT NULL,
        request_id TEXT NOT NULL,
        method TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        result TEXT NOT NULL,
        create_s BIGINT NOT NULL,
        PRIMARY KEY (partner, request_id)
    )""",
    """CREATE TABLE IF NOT EXISTS audit (
        id TEXT PRIMARY KEY,
        at_s BIGINT NOT NULL,
        partner TEXT NOT NULL,
        practice TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        outcome TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (practice, at_s)",
    """CREATE TABLE IF NOT EXISTS partners (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        create_s BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS partner_keys (
        key_id TEXT PRIMARY KEY,
        partner TEXT NOT NULL REFERENCES partners (id),
        public_key TEXT NOT NULL,
        create_s BIGINT NOT NULL,
        revoke_s BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS grants (
        partner TEXT NOT NULL REFERENCES partners (id),
        practice TEXT NOT NULL,
        services TEXT NOT NULL,
        PRIMARY KEY (partner, practice)
    )""",
    """CREATE TABLE IF NOT EXISTS nonces (
        partner TEXT NOT NULL,
        nonce TEXT NOT NULL,
        expire_s BIGINT NOT NULL,
        PRIMARY KEY (partner, nonce)
    )""",
    "CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expire_s)",
    # The change feed: numbered per practice; body is the sealed WatchChangesResponse without cursor.
    """CREATE TABLE IF NOT EXISTS change_events (
        practice TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at_s BIGINT NOT NULL,
        partner TEXT,
        column_id TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (practice, seq)
    )""",
    # Snapshot practices: the last upload of each column (busy times as little-endian int64 pairs,
    # base64; no patient data), and the last upload's outcome for retries with the same request_id.
    """CREATE TABLE IF NOT EXISTS snapshot_columns (
        practice TEXT NOT NULL,
        column_id TEXT NOT NULL,
        window_lo BIGINT NOT NULL,
        window_hi BIGINT NOT NULL,
        upload_s BIGINT NOT NULL,
        busy TEXT NOT NULL,
        PRIMARY KEY (practice, column_id)
    )""",
    # Slot-list practices (DURIA): each column's free slots as last uploaded, encoded like busy.
    """CREATE TABLE IF NOT EXISTS snapshot_slots (
        practice TEXT NOT NULL,
        column_id TEXT NOT NULL,
        slots TEXT NOT NULL,
        PRIMARY KEY (practice, column_id)
    )""",
    """CREATE TABLE IF NOT EXISTS snapshot_uploads (
        practice TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        upload_s BIGINT NOT NULL,
        added BIGINT NOT NULL,
        removed BIGINT NOT NULL,
        backfilled TEXT NOT NULL
    )""",
    # The practice's decisions on bookings waiting for it (practice_desk.py): the reason is shown
    # to the partner and sealed at rest (staff may write anything into it).
    """CREATE TABLE IF NOT EXISTS decisions (
        appointment_id TEXT PRIMARY KEY,
        practice TEXT NOT NULL,
        action TEXT NOT NULL,
        reason TEXT,
        actor TEXT NOT NULL,
        at_s BIGINT NOT NULL
    )""",
    # The patient as a partner sent it with FindOrCreatePatient, per practice, PVS patient
    # (`patient` is a digest of its id) and partner: what the practice inbox shows. Sealed.
    """CREATE TABLE IF NOT EXISTS patient_details (
        practice TEXT NOT NULL,
        patient TEXT NOT NULL,
        partner TEXT NOT NULL,
        details TEXT NOT NULL,
        update_s BIGINT NOT NULL,
        PRIMARY KEY (practice, patient, partner)
    )""",
    # Every change to a booking in (or leaving) a practice's inbox, numbered per practice: what
    # WatchInbox resumes from. The rows only name the appointment; watchers read its state.
    """CREATE TABLE IF NOT EXISTS inbox_events (
        practice TEXT NOT NULL,
        seq BIGINT NOT NULL,
        appointment_id TEXT NOT NULL,
        at_s BIGINT NOT NULL,
        PRIMARY KEY (practice, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS appointments_by_state ON appointments (practice, state, create_s)",
    # Bumped by every change to partners, keys or grants, so every gateway notices it on its next check.
    """CREATE TABLE IF NOT EXISTS registry_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    )""",
    # Practice staff of the web page (gateway.practice_web): accounts with Argon2id hashes, and
    # sessions keyed by the SHA-256 of their cookie (the cookie itself is never stored).
    """CREATE TABLE IF NOT EXISTS staff_accounts (
        practice TEXT NOT NULL,
        username TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        create_s BIGINT NOT NULL,
        PRIMARY KEY (practice, username)
    )""",
    """CREATE TABLE IF NOT EXISTS staff_sessions (
        id_hash TEXT PRIMARY KEY,
        practice TEXT NOT NULL,
        username TEXT NOT NULL,
        csrf TEXT NOT NULL,
        create_s BIGINT NOT NULL,
        seen_s BIGINT NOT NULL
    )""",
]


class Tx(Protocol):
    """One transaction. `?` placeholders; rows come back as dicts."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def lock(self, key: str) -> None:
        """Serialise with every other transaction that locks the same key, until this one ends."""

    def announce(self, topic: str) -> None:
        """Tell the other processes sharing the store, at commit, that `topic` changed."""


class StateStore(ABC):
    """`durable=False` commits without waiting for the disk: the transaction survives a crash of
    the gateway process, but may be lost if the machine itself goes down right after. Only for
    records whose loss is harmless (seen nonces); bookings always commit durably."""

    announces = False  # whether `announcements` hears other processes (else they poll)

    @abstractmethod
    def run_sync(self, work: Callable[[Tx], T], *, durable: bool = True) -> T: ...

    async def run(self, work: Callable[[Tx], T], *, durable: bool = True) -> T:
        return await asyncio.to_thread(functools.partial(self.run_sync, work, durable=durable))

    def announcements(self) -> AsyncGenerator[str, None] | None:
        """Topics other processes announced, as they commit; `EVERYTHING` after a gap in listening.
        None when the backend has no way to announce (each process polls instead)."""
        return None

    @abstractmethod
    def close(self) -> None: ...


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self._conn.execute(sql, tuple(params)).fetchone()
        return None if row is None else dict(row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [dict(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]

    def lock(self, key: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def announce(self, topic: str) -> None:
        """Nothing to do: other processes on the file poll."""


class SqliteStore(StateStore):
    """The embedded default. Several processes may share the file (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        target = str(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            if target != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
        self.run_sync(_create_schema)

    def run_sync(self, work: Callable[[Tx], T], *, durable: bool = True) -> T:
        with self._lock:
            if not durable:
                self._conn.execute("PRAGMA synchronous = NORMAL")  # WAL: no fsync at this commit
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(_SqliteTx(self._conn))
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return result
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous = FULL")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PostgresTx:
    def __init__(self, cursor: Any, channel: str) -> None:
        self._cursor = cursor
        self._channel = channel

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(sql.replace("?", "%s"), tuple(params))
        return int(self._cursor.rowcount)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(sql.replace("?", "%s"), tuple(params))
        row: Row | None = self._cursor.fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(sql.replace("?", "%s"), tuple(params))
        return list(self._cursor.fetchall())

    def lock(self, key: str) -> None:
        self._cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    def announce(self, topic: str) -> None:
        # Delivered at commit, never for a rollback; identical ones in a transaction are folded into one.
        self._cursor.execute("SELECT pg_notify(%s, %s)", (self._channel, topic))


class PostgresStore(StateStore):
    """For several gateway replicas sharing one store."""

    announces = True

    def __init__(self, url: str, *, schema: str | None = None, max_connections: int = 8) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        kwargs: dict[str, Any] = {"row_factory": dict_row}
        if schema:
            kwargs["options"] = f"-c search_path={schema}"
        self._url = url
        self._connect_kwargs = kwargs
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, kwargs=kwargs, open=True)
        if schema:
            with self._pool.connection() as conn:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        with self._pool.connection() as conn:
            row: Any = conn.execute("SELECT current_schema() AS name").fetchone()
        # NOTIFY channels are per database: stores in other schemas of it must not hear this one.
        self.channel = f"otv:{row['name'] if row else 'public'}"
        self.run_sync(_create_schema)

    def run_sync(self, work: Callable[[Tx], T], *, durable: bool = True) -> T:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            if not durable:
                cursor.execute("SET LOCAL synchronous_commit = off")
            return work(_PostgresTx(cursor, self.channel))

    async def announcements(self) -> AsyncGenerator[str, None]:
        """LISTEN on a connection of its own (not from the pool: it stays in LISTEN for good).
        Says EVERYTHING each time it starts listening, since what was announced before (or while
        reconnecting after a lost connection) is gone; retries every `_RECONNECT_SECONDS`."""
        import psycopg
        from psycopg import sql

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, **_LISTEN_KEEPALIVES, **self._connect_kwargs
                )
            except psycopg.OperationalError as error:
                log.warning("cannot listen for other replicas' changes (%s); polling meanwhile", type(error).__name__)
                await asyncio.sleep(_RECONNECT_SECONDS)
                continue
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                yield EVERYTHING
                async for notification in conn.notifies():
                    yield notification.payload
            except psycopg.OperationalError as error:
                log.warning("listening for other replicas' changes stopped (%s); reconnecting", type(error).__name__)
                await asyncio.sleep(_RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    def close(self) -> None:
        self._pool.close()


_RECONNECT_SECONDS = 1.0
# A listening connection only reads: without TCP keepalives a silently dropped one would wait for
# ever. These notice it within about 25 s, and the reconnect says EVERYTHING.
_LISTEN_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def _create_schema(tx: Tx) -> None:
    tx.lock("otv:schema")  # two gateways starting together must not race on the schema
    for statement in SCHEMA:
        tx.execute(statement)


def open_store(url: str, base_dir: Path | None = None) -> StateStore:
    """`sqlite:///relative/or/absolute.sqlite`, `sqlite://:memory:` or `postgresql://...`."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    if url.startswith("sqlite://"):
        target = url.removeprefix("sqlite://")
        if target == ":memory:":
            return SqliteStore(":memory:")
        path = Path(target.removeprefix("/")) if not target.startswith("//") else Path(target[1:])
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        return SqliteStore(path)
    raise ValueError("must start with sqlite:// or postgresql://")
