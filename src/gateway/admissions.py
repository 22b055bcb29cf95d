"""Admitting signed calls in batches: signatures, nonces, keys and grants checked together (group commit).

Each admitted call must leave its nonce in the shared store before it runs, so replicas can
refuse a replay. One store transaction per call would cap throughput at the store's transaction
rate; instead calls that arrive while a transaction is under way wait and are admitted together
in the next one. Every batch reads the registry version first: a key revoked or a grant removed
on any replica is honoured by the next batch everywhere.

Calls of the otv-session-v1 scheme need no batch: their MAC and replay window are checked in
memory (sessions.py). They take keys and grants from `current()`, a registry at most
REGISTRY_MAX_AGE seconds old, which bounds how long a revoked key or a removed grant still counts.

Signatures are verified on the admissions' own worker thread (Ed25519 releases the GIL, so the event loop
keeps serving), before the store transaction opens; only calls whose signature verifies get their
nonce recorded. Keys and grants are held in memory between batches (they are few).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gateway.partners import PVS_SERVICES, local_changes
from gateway.state_store import StateStore, Tx
from otv_sdk.signing import public_key_bytes, verify_signature

__all__ = ["REGISTRY_MAX_AGE", "Admissions", "Decision", "allows"]

_CLEANUP_EVERY = 200
# How old the keys and grants a session call is judged by may be: the bound on revocation.
REGISTRY_MAX_AGE = 5.0


@dataclass(frozen=True, slots=True)
class _Key:
    partner: str
    public_key: bytes
    revoked: bool


@dataclass(frozen=True, slots=True)
class _Registry:
    version: int = -1
    keys: dict[str, _Key] = field(default_factory=dict)
    grants: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)


def allows(registry: _Registry, partner: str, practice: str | None, service: str) -> bool:
    """Whether the partner may use the service of the practice (a call naming no practice needs none)."""
    if practice is None:
        return True
    allowed = registry.grants.get((partner, practice), frozenset())
    return service in allowed or ("*" in allowed and service not in PVS_SERVICES)


@dataclass(frozen=True, slots=True)
class Decision:
    """`outcome` is "ok", "key", "signature", "replay" or "denied"; `partner` is whose the key is,
    set for every outcome but "key" (the audit names who was refused)."""

    outcome: str
    partner: str = ""


@dataclass(slots=True)
class _Waiting:
    key_id: str
    message: bytes
    signature: str
    nonce: str
    expire_s: int
    practice: str | None
    service: str
    future: asyncio.Future[Decision]


class Admissions:
    def __init__(self, store: StateStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._registry = _Registry()
        self._clock = clock
        self._read_at = float("-inf")  # when the registry was last compared with the store
        self._reading: asyncio.Future[None] | None = None
        self._local_changes = local_changes()  # changes made in this process, as last seen
        self._waiting: list[_Waiting] = []
        self._flushing = False
        self._batches = 0
        # A thread of its own: admitting a call must not queue behind adapter reads in the shared pool.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otv-admissions")

    def partner_of(self, key_id: str) -> str | None:
        """The partner an active key belonged to at the last batch; unverified, for cheap refusals only."""
        key = self._registry.keys.get(key_id)
        return None if key is None or key.revoked else key.partner

    def fresh(self) -> _Registry | None:
        """The registry if it is young enough to judge a call by, else None (then await `current`)."""
        if self._clock() - self._read_at < REGISTRY_MAX_AGE and self._local_changes == local_changes():
            return self._registry
        return None

    async def current(self) -> _Registry:
        """Keys and grants as the store held them at most REGISTRY_MAX_AGE seconds ago.

        Calls arriving while the registry is read wait for that one read; a quiet gateway reads
        on its next call, so the bound holds however long it was idle."""
        if self._clock() - self._read_at < REGISTRY_MAX_AGE and self._local_changes == local_changes():
            return self._registry
        if self._reading is None:
            loop = asyncio.get_running_loop()
            self._reading = loop.run_in_executor(self._worker, self._store.run_sync, self._refresh)
        reading = self._reading
        try:
            await asyncio.shield(reading)
        finally:
            if self._reading is reading and reading.done():
                self._reading = None
        return self._registry

    async def admit(
        self,
        key_id: str,
        message: bytes,
        signature: str,
        nonce: str,
        expire_s: int,
        practice: str | None,
        service: str,
    ) -> Decision:
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(key_id, message, signature, nonce, expire_s, practice, service, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    decisions = await asyncio.get_running_loop().run_in_executor(
                        self._worker, self._verify_and_decide, batch
                    )
                except BaseException as error:  # the store failed: every waiting call learns it
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(error)
                    continue
                for item, decision in zip(batch, decisions, strict=True):
                    if not item.future.done():
                        item.future.set_result(decision)
        finally:
            self._flushing = False

    def _refresh(self, tx: Tx) -> None:
        read_at, changes = self._clock(), local_changes()
        row = tx.one("SELECT version FROM registry_version WHERE id = 1")
        self._read_at = read_at
        version = int(row["version"]) if row else 0
        if version == self._registry.version and changes != self._local_changes:
            # A change this process made has not committed yet (or rolled back): look again soon.
            self._read_at = read_at - REGISTRY_MAX_AGE + 0.2
        self._local_changes = changes
        if version == self._registry.version:
            return
        keys = {
            r["key_id"]: _Key(r["partner"], public_key_bytes(r["public_key"]), r["revoke_s"] is not None)
            for r in tx.all("SELECT key_id, partner, public_key, revoke_s FROM partner_keys")
        }
        grants = {
            (r["partner"], r["practice"]): frozenset(r["services"].split(","))
            for r in tx.all("SELECT partner, practice, services FROM grants")
        }
        self._registry = _Registry(version, keys, grants)

    def _verify_and_decide(self, batch: list[_Waiting]) -> list[Decision]:
        """On a worker thread: signatures first (no lock held), then one store transaction."""
        registry = self._registry
        verified = []
        for item in batch:
            key = registry.keys.get(item.key_id)
            verified.append(key is not None and verify_signature(key.public_key, item.message, item.signature))
        if not all(verified) or any(item.key_id not in registry.keys for item in batch):
            # Unknown keys may be new ones: look again with the registry as it is now.
            self._store.run_sync(self._refresh)
            registry = self._registry
            verified = [
                ok
                or (
                    (key := registry.keys.get(item.key_id)) is not None
                    and verify_signature(key.public_key, item.message, item.signature)
                )
                for ok, item in zip(verified, batch, strict=True)
            ]
        # Not durable: a seen nonce lost in a machine crash only reopens replay for calls signed in
        # the moments before it, within the timestamp window (docs/security.md).
        return self._store.run_sync(functools.partial(self._decide, batch=batch, verified=verified), durable=False)

    def _decide(self, tx: Tx, *, batch: list[_Waiting], verified: list[bool]) -> list[Decision]:
        self._refresh(tx)
        self._batches += 1
        if self._batches % _CLEANUP_EVERY == 0:
            tx.execute("DELETE FROM nonces WHERE expire_s < ?", (min(item.expire_s for item in batch) - 3600,))
        decisions: list[Decision] = []
        for item, good in zip(batch, verified, strict=True):
            key = self._registry.keys.get(item.key_id)
            if key is None or key.revoked:
                decisions.append(Decision("key"))
                continue
            if not good:
                decisions.append(Decision("signature", key.partner))
                continue
            if not allows(self._registry, key.partner, item.practice, item.service):
                decisions.append(Decision("denied", key.partner))
                continue
            fresh = tx.execute(
                "INSERT INTO nonces (partner, nonce, expire_s) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (key.partner, item.nonce, item.expire_s),
            )
            decisions.append(Decision("ok" if fresh == 1 else "replay", key.partner))
        return decisions
