"""Wake-ups between gateway replicas sharing one state store.

Each replica keeps views in memory (a practice's change-feed tail, its kept availability engine and
calendar configuration, the practice inbox's watchers) that must follow what other replicas store.
The stored rows are the truth and every view re-reads them on a fallback poll; this only makes the
re-read happen as soon as another replica commits, instead of at the next poll: a transaction
announces a topic (`tx.announce`, PostgreSQL NOTIFY at commit) and every replica's `ReplicaWakeups`
calls whoever subscribed to that topic. One listening connection per replica and store, however
many practices, started with the first subscription and closed with the last.

A missed announcement (a reconnect, a full notification queue) costs at most the poll: after a
gap the store says EVERYTHING and every subscriber re-reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator, Callable

from gateway.state_store import EVERYTHING, StateStore, Tx

__all__ = ["ReplicaWakeups", "announce", "wakeups_for"]

log = logging.getLogger("otv.gateway.replicas")


class ReplicaWakeups:
    """Subscriptions by topic to the announcements of one store; obtain with `wakeups_for(store)`."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = False  # True while announcements arrive (the fallback poll may slow down)
        self.heard = 0  # announcements received: how a test or an operator tells they flow

    def subscribe(self, topic: str, wake: Callable[[str], None]) -> Callable[[], None]:
        """Call `wake(detail)` on the event loop when `topic` is announced (`announce(tx, topic,
        detail)`), or `wake("")` when announcements may have been missed. Returns the unsubscribe
        function."""
        self._subscribers.setdefault(topic, []).append(wake)
        self._start()

        def unsubscribe() -> None:
            wakes = self._subscribers.get(topic, [])
            if wake in wakes:
                wakes.remove(wake)
            if not wakes:
                self._subscribers.pop(topic, None)
            if not self._subscribers and self._task is not None:
                self._task.cancel()
                self._task = None
                self.listening = False

        return unsubscribe

    def _start(self) -> None:
        if self._task is not None:
            return
        announcements = self._store.announcements()
        if announcements is None:
            return
        self._task = asyncio.get_running_loop().create_task(self._listen(announcements))

    async def _listen(self, announcements: AsyncGenerator[str, None]) -> None:
        try:
            async for topic in announcements:
                self.listening = True
                self.heard += 1
                self._wake(topic)
        except asyncio.CancelledError:
            raise
        except Exception:  # never expected: the store's generator retries by itself
            log.exception("listening for other replicas' changes failed; polling only")
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await announcements.aclose()

    def _wake(self, payload: str) -> None:
        topic, _, detail = payload.partition(" ")
        topics = list(self._subscribers) if topic == EVERYTHING else [topic]
        for name in topics:
            for wake in list(self._subscribers.get(name, ())):
                try:
                    wake(detail)
                except Exception:  # one subscriber's bug must not deafen the others
                    log.exception("a wake-up for %s failed", name)


def announce(tx: Tx, topic: str, detail: str = "") -> None:
    """In `tx`: wake the subscribers of `topic` on every replica when it commits. `topic` has no
    spaces; `detail` is for the subscriber (not personal data: NOTIFY payloads reach the server's log
    when it logs statements)."""
    tx.announce(f"{topic} {detail}" if detail else topic)


_HUBS: weakref.WeakKeyDictionary[StateStore, ReplicaWakeups] = weakref.WeakKeyDictionary()


def wakeups_for(store: StateStore) -> ReplicaWakeups:
    """The one hub of this process for `store` (one listening connection however many practices)."""
    hub = _HUBS.get(store)
    if hub is None:
        hub = _HUBS[store] = ReplicaWakeups(store)
    return hub
