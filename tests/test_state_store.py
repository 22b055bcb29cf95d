"""The state store behaves the same on both backends: transactions, rollback, serialising locks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from store_backends import BACKENDS, store_for

from gateway.state_store import StateStore, open_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with store_for(str(request.param), tmp_path) as (opened, _url):
        yield opened


def _insert_claim(store: StateStore, claim_id: str) -> None:
    store.run_sync(
        lambda tx: tx.execute(
            "INSERT INTO claims (id, practice, column_id, start_s, end_s, expire_s, owner)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (claim_id, "demo", "berg", 0, 60, None, "test"),
        )
    )


def test_a_transaction_commits_and_a_failing_one_leaves_nothing(store: StateStore) -> None:
    _insert_claim(store, "c1")

    def fail(tx):  # type: ignore[no-untyped-def]
        tx.execute("DELETE FROM claims WHERE id = ?", ("c1",))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run_sync(fail)
    assert store.run_sync(lambda tx: tx.all("SELECT id FROM claims")) == [{"id": "c1"}]


def test_locked_read_modify_write_loses_no_update(store: StateStore) -> None:
    store.run_sync(
        lambda tx: tx.execute(
            "INSERT INTO requests (partner, request_id, method, fingerprint, result, create_s)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ("p", "counter", "m", "f", "0", 0),
        )
    )

    def increment(tx):  # type: ignore[no-untyped-def]
        tx.lock("counter")
        value = int(tx.one("SELECT result FROM requests WHERE request_id = ?", ("counter",))["result"])
        tx.execute("UPDATE requests SET result = ? WHERE request_id = ?", (str(value + 1), "counter"))

    threads = [threading.Thread(target=lambda: [store.run_sync(increment) for _ in range(20)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.run_sync(lambda tx: tx.one("SELECT result FROM requests WHERE request_id = ?", ("counter",))) == {
        "result": "80"
    }


def test_open_store_urls(tmp_path: Path) -> None:
    relative = open_store("sqlite:///state/gw.sqlite", tmp_path)
    relative.close()
    assert (tmp_path / "state" / "gw.sqlite").exists()
    absolute = open_store(f"sqlite:///{tmp_path / 'abs.sqlite'}")
    absolute.close()
    assert (tmp_path / "abs.sqlite").exists()
    with pytest.raises(ValueError, match="sqlite://"):
        open_store("mysql://nope")
