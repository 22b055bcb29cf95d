"""Wake-ups between gateway replicas sharing one state store.

Each replica keeps views in memory (a practice's change-feed tail, its kept availability engine and
calendar configuration, the practice inbox's watchers) that must follow what other replicas store.
The stored rows are the truth and every view re-reads them on a fallback poll; this only makes the
re-read happen as soon as another replica commits, instead of at the next poll: a transaction
announces a topic (`tx.announce`, PostgreSQL NOTIFY at commit) and every replica's `ReplicaWakeups`
calls whoever subscribed to that topic. One listening connection per replica and store, however
many practices, started with the first subscription and closed with the last.

A missed announcement costs at most the poll: after a gap (a lost connection, or one found deaf by
the hub's own ping) the store says EVERYTHING and every subscriber re-reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import weakref
from collections.abc import AsyncGenerator, Callable

from gateway.state_store import EVERYTHING, StateStore, Tx

__all__ = ["ReplicaWakeups", "announce", "wakeups_for"]

log = logging.getLogger("otv.gateway.replicas")

_PING = "otv-ping"


class ReplicaWakeups:
    """Subscriptions by topic to the announcements of one store; obtain with `wakeups_for(store)`.

    The listening connection is checked by announcing a ping to itself every `ping_seconds`: a
    connection that stopped delivering without an error (a half-open TCP connection, a server-side
    UNLISTEN) is replaced when its ping is not heard within `pong_seconds`, and the new one starts
    with EVERYTHING. So a notification lost while listening costs at most about ping + pong seconds,
    and the feeds' own poll can stay slow while the pings are heard."""

    def __init__(self, store: StateStore, *, ping_seconds: float = 10.0, pong_seconds: float = 5.0) -> None:
        self._store = store
        self._ping_seconds = ping_seconds
        self._pong_seconds = pong_seconds
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._me = secrets.token_hex(8)  # tells this hub's pings from other replicas'
        self._pinged = 0
        self._ponged = 0
        self._pong = asyncio.Event()
        self.listening = False  # True while announcements arrive (the fallback poll may slow down)
        self.heard = 0  # announcements received: how a test or an operator tells they flow
        self.restarts = 0  # listening connections replaced because their ping was not heard

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
        if self._task is not None or not self._store.announces:
            return  # a store without announcements: subscribers poll
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        """Listen; replace the listening connection whenever its own ping goes unheard."""
        while True:
            announcements = self._store.announcements()
            if announcements is None:
                return
            listener = asyncio.get_running_loop().create_task(self._listen(announcements))
            try:
                while not listener.done():
                    await asyncio.sleep(self._ping_seconds)
                    if self.listening and not await self._ping():
                        log.warning("the listening connection missed its own ping; replacing it")
                        self.restarts += 1
                        break
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _ping(self) -> bool:
        """Announce a ping to this hub through the store; True when it was heard in time (or the
        store could not be reached: then the listening connection reports its own trouble)."""
        self._pinged += 1
        number = self._pinged
        self._pong = asyncio.Event()
        try:
            await self._store.run(lambda tx: tx.announce(f"{_PING} {self._me}:{number}"), durable=False)
        except Exception:  # the store is down: nothing to learn about the connection from this ping
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._pong_seconds):
                while self._ponged < number:
                    await self._pong.wait()
                    self._pong = asyncio.Event()
        return self._ponged >= number

    async def _listen(self, announcements: AsyncGenerator[str, None]) -> None:
        try:
            async for topic in announcements:
                self.listening = True
                self.heard += 1
                self._wake(topic)
        except asyncio.CancelledError:
            raise
        except Exception:  # never expected: the store's generator retries by itself
            log.exception("listening for other replicas' changes failed")
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await announcements.aclose()

    def _wake(self, payload: str) -> None:
        topic, _, detail = payload.partition(" ")
        if topic == _PING:
            me, _, number = detail.partition(":")
            if me == self._me and number.isdigit():
                self._ponged = max(self._ponged, int(number))
                self._pong.set()
            return
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
