"""Connector practices reachable from every replica: several gateways on one PostgreSQL store.

A connector attaches to one replica; partner calls arriving at the others are relayed to it
(ReplicaService), follow it when it reconnects elsewhere, and never go to a registry entry that
a newer attach or a lease that ran out made stale.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import SECRET, reference_settings, signer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from patient_env import header_identity
from store_backends import BACKENDS, require_postgres, store_for

from gateway.app import Gateway
from gateway.certificates import init_dev_pki
from gateway.config import load_secret, parse_config
from gateway.connector_registry import ConnectorRegistry
from gateway.replica_forwarding import TOKEN_METADATA_KEY, replica_token
from otv.v1 import (
    connector_service_pb2,
    reader_service_pb2,
    reader_service_pb2_grpc,
    replica_service_pb2,
    replica_service_pb2_grpc,
)
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.connector import Backoff, OutboundConnector
from otv_sdk.errors import Unavailable
from otv_sdk.models import Interval
from otv_sdk.ports import Adapter, PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter
from otv_sdk.tracing import TracingServerInterceptor

ANCHOR = date.today() + timedelta(days=7 - date.today().weekday() + 7)
FAST = Backoff(first=0.05, factor=2.0, ceiling=0.3)


def replica_config(state_store: str, lease_seconds: float = 3.0, **replicas: Any) -> Any:
    return parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "shutdown_grace_seconds": 0,
                "secret_key": SECRET,
                "state_store": state_store,
                "replicas": {"listen": "127.0.0.1:0", "lease_seconds": lease_seconds, **replicas},
            },
            "practices": {"edge": {"adapter": {"connector": {"practice": "demo", "ping_seconds": 1}}}},
        }
    )


@dataclass
class Replicas:
    gateways: list[Gateway]
    adapters: AdapterServer
    adapter: Adapter
    store_url: str
    database: Path
    clients: list[PartnerClient] = field(default_factory=list)
    connectors: list[OutboundConnector] = field(default_factory=list)

    def connect(self, replica: int) -> OutboundConnector:
        connector = OutboundConnector(
            self.gateways[replica].address,
            "edge",
            f"127.0.0.1:{self.adapters.port}",
            signer(),  # the test gateways name callers by header; the stream is not checked here
            local_practice="demo",
            backoff=FAST,
            changes=self.adapter.changes,
        )
        connector.start()
        self.connectors.append(connector)
        return connector

    async def online_at(self, replica: int) -> None:
        await self.gateways[replica].router.connectors.wait_online("edge", 10)

    def window(self, days: int = 7) -> Interval:
        start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        return Interval(start, start + timedelta(days=days))

    def pvs_references(self) -> list[str]:
        with sqlite3.connect(self.database) as conn:
            rows = conn.execute("SELECT reference FROM calendar_entries WHERE reference IS NOT NULL")
            return [row[0] for row in rows]

    def holders(self) -> list[int]:
        """The replicas with the practice's stream on them."""
        return [i for i, g in enumerate(self.gateways) if g.router.connectors.link("edge") is not None]


@asynccontextmanager
async def replicas(
    tmp_path: Path,
    count: int,
    tracing: list[TracerProvider] | None = None,
    settings: list[dict[str, Any]] | None = None,
    adapter_tracing: TracerProvider | None = None,
) -> AsyncIterator[Replicas]:
    """`count` replicas on one fresh PostgreSQL schema; `settings[i]` adds to replica i's [gateway.replicas]."""
    require_postgres()
    adapter = create_adapter(
        "demo", reference_settings(database=str(tmp_path / "pvs.sqlite"), demo_anchor=ANCHOR.isoformat())
    )
    observers = [] if adapter_tracing is None else [TracingServerInterceptor(adapter_tracing)]
    adapters = await serve_adapters({"demo": adapter}, interceptors=observers)
    with store_for("postgres", tmp_path) as (store, url):
        store.close()
        env = Replicas([], adapters, adapter, url, tmp_path / "pvs.sqlite")
        try:
            for i in range(count):
                provider = None if tracing is None else tracing[i]
                config = replica_config(url, **(settings[i] if settings is not None else {}))
                gateway = await Gateway.start(config, header_identity, tracer_provider=provider)
                env.gateways.append(gateway)
                env.clients.append(PartnerClient.connect(gateway.address))
            yield env
        finally:
            for connector in env.connectors:
                await connector.stop()
            for client in env.clients:
                await client.close()
            for gateway in env.gateways:
                await gateway.stop(0)
            await adapters.stop(0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_attach_claims_a_newer_epoch_and_stale_holders_lose(backend: str, tmp_path: Path) -> None:
    now = [1_000_000.0]
    with store_for(backend, tmp_path) as (store, _):
        first = ConnectorRegistry(store, "replica-a", "10.0.0.1:7000", 5, clock=lambda: now[0])
        second = ConnectorRegistry(store, "replica-b", "10.0.0.2:7000", 5, clock=lambda: now[0])
        assert await first.holder("edge") is None
        assert await first.claim("edge") == 1
        holder = await second.holder("edge")
        assert holder is not None
        assert (holder.replica, holder.address, holder.epoch) == (
            "replica-a",
            "10.0.0.1:7000",
            1,
        )
        assert await second.claim("edge") == 2  # the connector reconnected to b
        assert await first.renew({"edge": 1}) == {"edge"}  # a learns that its stream is stale
        await first.release("edge", 1)  # a's old stream ends: b's entry stays
        holder = await first.holder("edge")
        assert holder is not None
        assert (holder.replica, holder.epoch) == ("replica-b", 2)
        now[0] += 4
        assert await second.renew({"edge": 2}) == set()
        now[0] += 4  # 8 s after the claim, 4 after the renewal: still b's
        assert (await first.holder("edge")) is not None
        now[0] += 1.5  # b stopped renewing (it died): nobody holds the stream
        assert await first.holder("edge") is None
        assert await first.claim("edge") == 3  # epochs never go back, not even after a lapse
        await first.release("edge", 3)
        assert await second.holder("edge") is None
        assert await second.claim("edge") == 4


async def test_a_connector_on_one_replica_serves_calls_arriving_at_the_others(tmp_path: Path) -> None:
    async with replicas(tmp_path, 3) as env:
        env.connect(0)
        await env.online_at(0)
        assert env.holders() == [0]
        for client in env.clients[1:]:
            calendar = await client.list_calendars("edge")
            assert {column.id for column in calendar.columns} == {"berg", "weber", "prophylaxe"}
            busy = await client.list_busy_times("edge", env.window(), ["berg"])
            assert len(busy[0].intervals) > 0
        patient, _ = await env.clients[2].find_or_create_patient(
            "edge", PatientQuery("Erika", "Muster", date(1970, 1, 2))
        )
        (slot,) = (
            await env.clients[1].find_slots("edge", SlotQuery("kontrolle", env.window(), ("berg",), PageRequest(1)))
        ).items
        booked = await env.clients[2].book_appointment(
            "edge", SlotRequest("kontrolle", slot.column_id, slot.start, patient.id)
        )
        assert booked.id in env.pvs_references()  # in the practice's system, through replica 0's stream
        assert env.holders() == [0]  # served by relaying, not by a stream of their own


async def test_calls_follow_the_connector_when_it_reconnects_to_another_replica(tmp_path: Path) -> None:
    async with replicas(tmp_path, 3) as env:
        first = env.connect(0)
        await env.online_at(0)
        assert (await env.clients[2].list_calendars("edge")).columns  # replica 2 now knows replica 0 holds it
        await first.stop()
        env.connect(1)
        await env.online_at(1)
        assert env.holders() == [1]
        third, second = env.gateways[2].replicas, env.gateways[1].replicas
        assert third is not None
        assert second is not None
        holder = await third.registry.holder("edge")
        assert holder is not None
        assert holder.address == second.address
        assert holder.epoch == 2
        # Replica 2 still remembers epoch 1 on replica 0; replica 0 answers not held, and the call follows.
        for client in env.clients:
            assert (await client.list_calendars("edge")).columns


async def test_a_stream_taken_over_elsewhere_is_closed_where_it_was(tmp_path: Path) -> None:
    async with replicas(tmp_path, 2) as env:
        first = env.connect(0)
        await env.online_at(0)
        second = env.connect(1)  # a second stream of the practice, as after a half-open connection
        await env.online_at(1)
        hub = env.gateways[0].router.connectors
        async with asyncio.timeout(10):  # replica 0's next lease renewal finds epoch 2 on replica 1
            await hub.wait_until(lambda: hub.link("edge") is None)
        await asyncio.wait_for(first.disconnected.wait(), 10)
        assert second.connected.is_set()
        assert (await env.clients[0].list_calendars("edge")).columns


async def test_an_entry_whose_lease_ran_out_is_never_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with replicas(tmp_path, 1) as env:
        gateway = env.gateways[0]
        # A replica that claimed the stream and died: nothing listens at its address any more.
        dead = ConnectorRegistry(gateway.router.store, "dead-replica", "127.0.0.1:9", lease_seconds=1)
        await dead.claim("edge")

        def tried_the_dead_replica() -> bool:
            return any("127.0.0.1:9" in record.getMessage() for record in caplog.records)

        with pytest.raises(Unavailable):  # within its lease: tried, found unreachable
            await env.clients[0].list_calendars("edge")
        assert tried_the_dead_replica()
        await asyncio.sleep(1.1)
        caplog.clear()
        with pytest.raises(Unavailable, match="not connected"):  # lease over: not even tried
            await env.clients[0].list_calendars("edge")
        assert not tried_the_dead_replica()
        env.connect(0)
        await env.online_at(0)
        assert (await env.clients[0].list_calendars("edge")).columns
        holder = await dead.holder("edge")
        assert holder is not None
        assert gateway.replicas is not None
        assert (holder.replica, holder.epoch) == (gateway.replicas.registry.replica, 2)


async def test_the_holder_relays_only_its_own_epoch_and_only_for_replicas(tmp_path: Path) -> None:
    async with replicas(tmp_path, 2) as env:
        env.connect(0)
        await env.online_at(0)
        holder = env.gateways[0].replicas
        assert holder is not None
        link = env.gateways[0].router.connectors.link("edge")
        assert link is not None
        call = connector_service_pb2.ForwardedCall(
            method="/otv.v1.PracticeDataService/GetPracticeProfile", partner_id="alpha"
        )
        token = replica_token(load_secret(env.gateways[0].config))
        async with grpc.aio.insecure_channel(holder.address) as channel:
            stub = replica_service_pb2_grpc.ReplicaServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RelayCall(
                    replica_service_pb2.RelayCallRequest(practice="edge", epoch=link.epoch, call=call),
                    metadata=((TOKEN_METADATA_KEY, "0" * 64),),
                )
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            stale = await stub.RelayCall(
                replica_service_pb2.RelayCallRequest(practice="edge", epoch=link.epoch - 1, call=call),
                metadata=((TOKEN_METADATA_KEY, token),),
            )
            assert stale.WhichOneof("outcome") == "not_held"
            assert stale.not_held.held_epoch == link.epoch


async def test_one_partner_call_is_one_trace_across_the_replicas_and_the_connector(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    providers = [TracerProvider(), TracerProvider(), TracerProvider()]  # two replicas, and the PVS's adapter server
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with replicas(tmp_path, 2, providers[:2], adapter_tracing=providers[2]) as env:
        env.connect(0)
        await env.online_at(0)
        exporter.clear()
        stub = reader_service_pb2_grpc.ReaderServiceStub(grpc.aio.insecure_channel(env.gateways[1].address))
        await stub.ListCalendars(reader_service_pb2.ListCalendarsRequest(parent="practices/edge"))
        spans = exporter.get_finished_spans()
        (partner_call,) = [s for s in spans if s.name == "otv.v1.ReaderService/ListCalendars"]
        relays = [s for s in spans if s.name == "otv.v1.ReplicaService/RelayCall"]
        assert {s.kind for s in relays} == {SpanKind.CLIENT, SpanKind.SERVER}
        assert {s.context.trace_id for s in relays} == {partner_call.context.trace_id}
        clients = {s.context.span_id for s in relays if s.kind is SpanKind.CLIENT}
        assert all(s.parent is not None and s.parent.span_id in clients for s in relays if s.kind is SpanKind.SERVER)
        # Over the connector stream to the PVS: each adapter call is a child of the relay that carried it.
        pvs = [s for s in spans if s.name.startswith("otv.v1.PracticeDataService/")]
        assert pvs
        assert {s.context.trace_id for s in pvs} == {partner_call.context.trace_id}
        servers = {s.context.span_id for s in relays if s.kind is SpanKind.SERVER}
        assert all(s.parent is not None and s.parent.span_id in servers for s in pvs)


async def test_replicas_relay_over_mutual_tls_and_refuse_a_peer_without_certificate(tmp_path: Path) -> None:
    pki = init_dev_pki(tmp_path / "certs")
    listener = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), "client_ca_file": str(pki.ca)}
    with_certificate = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    settings = [
        {"tls": listener, "peer_tls": with_certificate},
        {"tls": listener, "peer_tls": with_certificate},
        {"tls": listener, "peer_tls": {"ca_file": str(pki.ca)}},  # trusts the others, but shows no certificate
    ]
    async with replicas(tmp_path, 3, settings=settings) as env:
        env.connect(0)
        await env.online_at(0)
        assert (await env.clients[1].list_calendars("edge", timeout=5)).columns
        with pytest.raises(Unavailable):
            await env.clients[2].list_calendars("edge", timeout=5)
        holder = env.gateways[0].replicas
        assert holder is not None
        async with grpc.aio.insecure_channel(holder.address) as channel:  # plaintext: not even a handshake
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await replica_service_pb2_grpc.ReplicaServiceStub(channel).RelayCall(
                    replica_service_pb2.RelayCallRequest(practice="edge", epoch=1), timeout=5
                )
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_connector_the_registry_cannot_record_is_refused_until_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with replicas(tmp_path, 1) as env:
        listener = env.gateways[0].replicas
        assert listener is not None
        claim = listener.registry.claim

        async def database_down(practice: str) -> int:
            raise ConnectionError("the state store is unreachable")

        monkeypatch.setattr(listener.registry, "claim", database_down)
        connector = env.connect(0)
        await asyncio.sleep(0.5)  # several attempts, each refused (UNAVAILABLE): no stream without a registry entry
        assert connector.sessions == 0
        assert env.holders() == []
        ended = [r.getMessage() for r in caplog.records if r.name == "otv.connector"]
        assert ended
        assert all(message.endswith("UNAVAILABLE") for message in ended)  # retry later, not a gateway fault
        monkeypatch.setattr(listener.registry, "claim", claim)
        await env.online_at(0)  # the connector's next attempt
        assert (await env.clients[0].list_calendars("edge")).columns
