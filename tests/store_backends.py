"""State store backends for tests: a SQLite file, and a PostgreSQL schema of its own per test.

PostgreSQL is at OTV_TEST_POSTGRES (default: the machine's server on loopback). CI must have it
(`.ci/run` starts it); elsewhere the PostgreSQL variants are skipped with the reason shown.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.state_store import PostgresStore, SqliteStore, StateStore

POSTGRES_URL = os.environ.get("OTV_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgres"]


def postgres_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as error:  # any reason at all means: not usable here
        return f"PostgreSQL at {POSTGRES_URL} is not usable: {type(error).__name__}"


def require_postgres() -> None:
    reason = postgres_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must provide it; see .ci/run)")
        pytest.skip(reason)


@contextmanager
def store_for(backend: str, tmp_path: Path) -> Iterator[tuple[StateStore, str]]:
    """A fresh store, and the URL another process can open it with."""
    if backend == "sqlite":
        path = tmp_path / "state.sqlite"
        store: StateStore = SqliteStore(path)
        try:
            yield store, f"sqlite:///{path}"
        finally:
            store.close()
        return
    require_postgres()
    schema = f"otv_test_{secrets.token_hex(4)}"
    store = PostgresStore(POSTGRES_URL, schema=schema)
    try:
        yield store, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        store.close()
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
