"""Which gateway replica holds each connector practice's stream: a registry in the state store.

A practice's outbound connector keeps one stream to one replica (connectors.py); the other
replicas reach the practice through that one (replica_forwarding.py). They find it here. Every
attach claims the practice with the next epoch, so an entry from before a reconnect or a crash
can be told apart from the current one: a replica answers forwarded calls only for the epoch it
holds, and a forwarding replica that meets an older epoch reads the registry again.

The holder renews its lease while the stream lasts. A replica that dies stops renewing, and once
its lease runs out nobody routes to it any more; a connector that reconnects elsewhere claims a
newer epoch at once, without waiting for the lease. Leases compare the replicas' wall clocks:
keep them in step (NTP) to well under the lease.

Rows are never deleted: a released stream keeps its epoch with an expired lease, so epochs only
ever grow per practice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.state_store import StateStore, Tx

__all__ = ["ConnectorRegistry", "Holder"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS connector_holders (
    practice TEXT PRIMARY KEY,
    replica TEXT NOT NULL,
    address TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expire_ms BIGINT NOT NULL
)"""


@dataclass(frozen=True, slots=True)
class Holder:
    """The replica holding a practice's stream, as the registry said when read."""

    practice: str
    replica: str
    address: str  # where its ReplicaService listens
    epoch: int
    expires: float  # unix seconds; after that the entry says nothing


def _create_table(tx: Tx) -> None:
    tx.lock("otv:schema")  # replicas starting together must not race on the table
    tx.execute(_SCHEMA)


class ConnectorRegistry:
    """This replica's view of and part in the registry."""

    def __init__(
        self,
        store: StateStore,
        replica: str,
        address: str,
        lease_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`replica` names this process (new at every start); `address` is where others reach it."""
        self.replica = replica
        self.address = address
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._store = store
        store.run_sync(_create_table)

    def _expiry_ms(self) -> int:
        return int((self.clock() + self.lease_seconds) * 1000)

    async def claim(self, practice: str) -> int:
        """This replica holds the practice's stream from now on: the new epoch."""
        expire_ms = self._expiry_ms()

        def work(tx: Tx) -> int:
            tx.lock(f"otv:connector:{practice}")
            row = tx.one("SELECT epoch FROM connector_holders WHERE practice = ?", (practice,))
            if row is None:
                tx.execute(
                    "INSERT INTO connector_holders (practice, replica, address, epoch, expire_ms)"
                    " VALUES (?, ?, ?, 1, ?)",
                    (practice, self.replica, self.address, expire_ms),
                )
                return 1
            epoch = int(row["epoch"]) + 1
            tx.execute(
                "UPDATE connector_holders SET replica = ?, address = ?, epoch = ?, expire_ms = ? WHERE practice = ?",
                (self.replica, self.address, epoch, expire_ms, practice),
            )
            return epoch

        return await self._store.run(work)

    async def renew(self, epochs: Mapping[str, int]) -> set[str]:
        """Extend the leases of the streams held here; returns the practices another attach took over."""
        expire_ms = self._expiry_ms()

        def work(tx: Tx) -> set[str]:
            lost = set()
            for practice, epoch in epochs.items():
                renewed = tx.execute(
                    "UPDATE connector_holders SET expire_ms = ? WHERE practice = ? AND replica = ? AND epoch = ?",
                    (expire_ms, practice, self.replica, epoch),
                )
                if renewed == 0:
                    lost.add(practice)
            return lost

        # A renewal lost to a crash of the database machine is harmless: the next one follows.
        return await self._store.run(work, durable=False)

    async def release(self, practice: str, epoch: int) -> None:
        """The stream of this epoch ended here; a newer epoch (another attach) is left alone."""
        await self._store.run(
            lambda tx: tx.execute(
                "UPDATE connector_holders SET expire_ms = 0 WHERE practice = ? AND replica = ? AND epoch = ?",
                (practice, self.replica, epoch),
            )
        )

    async def holder(self, practice: str) -> Holder | None:
        """Who holds the practice's stream now; None when nobody's lease is running."""
        row = await self._store.run(
            lambda tx: tx.one(
                "SELECT replica, address, epoch, expire_ms FROM connector_holders WHERE practice = ?", (practice,)
            ),
            durable=False,
        )
        if row is None:
            return None
        expires = int(row["expire_ms"]) / 1000
        if expires <= self.clock():
            return None
        return Holder(practice, str(row["replica"]), str(row["address"]), int(row["epoch"]), expires)
