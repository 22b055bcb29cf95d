"""The reference PVS's SQLite database.

One connection guarded by a lock and used from worker threads, so the gateway's event loop never
waits on disk. `:memory:` databases work the same way (tests use them).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

__all__ = ["Database"]

T = TypeVar("T")
SCHEMA_VERSION = 2


class Database:
    def __init__(self, path: str | Path) -> None:
        target = str(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA foreign_keys = ON")
            if target != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(f"{target} has schema version {version}; this adapter knows {SCHEMA_VERSION}")
            schema = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
            self._conn.executescript(schema)

    def run_sync(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run work in one transaction; committed if it returns, rolled back if it raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self.run_sync, work)

    def is_empty(self) -> bool:
        count: int = self.run_sync(lambda c: c.execute("SELECT COUNT(*) FROM practice").fetchone()[0])
        return count == 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()
