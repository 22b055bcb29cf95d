"""A connector practice served by three gateway processes on one PostgreSQL database.

What only separate processes show: a replica killed with SIGKILL releases nothing and keeps no
lease running, yet the calls of the other replicas never stay with its stale registry entry once
the connector has attached elsewhere; and behind nginx, where neither the connector nor the
partners choose a replica, every partner call reaches the practice wherever its stream is.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SECRET, reference_settings, signer
from load_balancer import Replica, free_port, nginx, start_replica
from store_backends import require_postgres, store_for

from gateway.connector_registry import ConnectorRegistry, Holder
from gateway.state_store import StateStore
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.connector import Backoff, OutboundConnector
from otv_sdk.models import Interval
from otv_sdk.ports import Adapter, PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter

pytestmark = pytest.mark.slow

ANCHOR = date.today() + timedelta(days=7 - date.today().weekday() + 7)
FAST = Backoff(first=0.05, factor=2.0, ceiling=0.3)
LEASE_SECONDS = 10  # long enough that a killed holder's entry is still running when the calls are made


def write_config(path: Path, state_store: str, internal_port: int) -> Path:
    path.write_text(
        f"""[gateway]
listen = "127.0.0.1:{free_port()}"
shutdown_grace_seconds = 1
secret_key = "{SECRET}"
state_store = "{state_store}"

[gateway.replicas]
listen = "127.0.0.1:{internal_port}"
lease_seconds = {LEASE_SECONDS}

[practices.edge.adapter.connector]
practice = "demo"
ping_seconds = 1
"""
    )
    return path


@dataclass
class Deployment:
    replicas: list[Replica]
    internal: list[str]  # each replica's ReplicaService address, as it registers it
    registry: ConnectorRegistry  # a reader of the shared registry
    adapters: AdapterServer
    adapter: Adapter
    connectors: list[OutboundConnector] = field(default_factory=list)

    def connect(self, target: str) -> OutboundConnector:
        connector = OutboundConnector(
            target, "edge", f"127.0.0.1:{self.adapters.port}", signer(), local_practice="demo", backoff=FAST,
            changes=self.adapter.changes,
        )  # fmt: skip
        connector.start()
        self.connectors.append(connector)
        return connector

    async def holder(self, after_epoch: int = 0, timeout: float = 15) -> Holder:
        """The registry's live holder, once its epoch is newer than `after_epoch`."""
        async with asyncio.timeout(timeout):
            while True:
                holder = await self.registry.holder("edge")
                if holder is not None and holder.epoch > after_epoch:
                    return holder
                await asyncio.sleep(0.05)


def window() -> Interval:
    start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
    return Interval(start, start + timedelta(days=7))


@asynccontextmanager
async def deployment(directory: Path, count: int = 3) -> AsyncIterator[Deployment]:
    require_postgres()
    adapter = create_adapter(
        "demo", reference_settings(database=str(directory / "pvs.sqlite"), demo_anchor=ANCHOR.isoformat())
    )
    adapters = await serve_adapters({"demo": adapter})
    with store_for("postgres", directory) as (store, url):
        started: list[Replica] = []
        env: Deployment | None = None
        try:
            internal = [free_port() for _ in range(count)]
            for index, port in enumerate(internal):
                started.append(await start_replica(write_config(directory / f"replica-{index}.toml", url, port)))
            env = Deployment(started, [f"127.0.0.1:{p}" for p in internal], _reader(store), adapters, adapter)
            yield env
        finally:
            for connector in env.connectors if env is not None else ():
                await connector.stop()
            for replica in started:
                replica.kill()
            await asyncio.gather(*(r.process.wait() for r in started))
            await adapters.stop(0)


def _reader(store: StateStore) -> ConnectorRegistry:
    return ConnectorRegistry(store, "test-reader", "127.0.0.1:9")


async def test_a_killed_holder_is_never_used_after_the_connector_attached_elsewhere(tmp_path: Path) -> None:
    async with deployment(tmp_path) as env:
        clients = [PartnerClient.connect(r.address) for r in env.replicas]
        try:
            first = env.connect(env.replicas[0].address)
            holder = await env.holder()
            assert holder.address == env.internal[0]
            for client in clients[1:]:  # both others relay to replica 0, and remember it holds epoch 1
                assert (await client.list_calendars("edge", timeout=10)).columns
            env.replicas[0].kill()
            await env.replicas[0].process.wait()
            await first.stop()  # its only target is dead; the practice's next connector dials replica 1
            env.connect(env.replicas[1].address)
            moved = await env.holder(after_epoch=holder.epoch)
            assert moved.address == env.internal[1]
            # Replica 2 still has replica 0's entry, whose lease has seconds to run: it must not stay there.
            started = time.monotonic()
            busy = await clients[2].list_busy_times("edge", window(), ["berg"], timeout=10)
            assert len(busy[0].intervals) > 0
            assert time.monotonic() - started < LEASE_SECONDS / 2
            patient, _ = await clients[2].find_or_create_patient(
                "edge", PatientQuery("Erika", "Muster", date(1970, 1, 2)), timeout=10
            )
            (slot,) = (
                await clients[2].find_slots("edge", SlotQuery("kontrolle", window(), ("berg",), PageRequest(1)))
            ).items
            booked = await clients[2].book_appointment(
                "edge", SlotRequest("kontrolle", slot.column_id, slot.start, patient.id), timeout=10
            )
            with sqlite3.connect(tmp_path / "pvs.sqlite") as conn:  # in the PVS, through replica 1's stream
                references = {row[0] for row in conn.execute("SELECT reference FROM calendar_entries")}
            assert booked.id in references
        finally:
            for client in clients:
                await client.close()


async def test_through_nginx_calls_reach_the_connector_wherever_it_attached(tmp_path: Path) -> None:
    async with (
        deployment(tmp_path) as env,
        nginx(tmp_path / "nginx", [r.address for r in env.replicas]) as balancer,
    ):
        env.connect(balancer)  # nginx picks the replica that holds the stream
        holder = await env.holder()
        async with PartnerClient.connect(balancer) as client:
            calls = [client.list_busy_times("edge", window(), ["berg"], timeout=10) for _ in range(30)]
            for busy in await asyncio.gather(*calls):  # round-robin: most land on replicas without the stream
                assert len(busy[0].intervals) > 0
            env.replicas[env.internal.index(holder.address)].kill()  # the stream breaks; the connector redials
            moved = await env.holder(after_epoch=holder.epoch)
            assert moved.address != holder.address
            calls = [client.list_busy_times("edge", window(), ["berg"], timeout=10) for _ in range(30)]
            for busy in await asyncio.gather(*calls):
                assert len(busy[0].intervals) > 0
