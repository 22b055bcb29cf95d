"""The outbound connector through the real gRPC stack: a practice's adapter dials out to the gateway."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import SECRET, reference_settings, register_test_partner, signer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.partners import PartnerRegistry
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc
from otv_sdk import conversion as cv
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.changes import BusyTimeChanged, CalendarConfigChanged, Heartbeat
from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.connector import Backoff, OutboundConnector
from otv_sdk.errors import PermissionDenied, Unavailable
from otv_sdk.freshness import DATA_AGE_METADATA_KEY
from otv_sdk.models import Interval
from otv_sdk.ports import (
    Adapter,
    AppointmentQuery,
    CalendarEntry,
    CallContext,
    PageRequest,
    PatientQuery,
    SlotQuery,
    SlotRequest,
)
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer, generate_key_pair
from otv_sdk.tracing import TracingServerInterceptor

ANCHOR = date.today() + timedelta(days=7 - date.today().weekday() + 7)
PRACTICE_KEY, PRACTICE_PUBLIC = generate_key_pair()
FAST = Backoff(first=0.05, factor=2.0, ceiling=0.3)


def practice_signer() -> Signer:
    return Signer("edge-pvs-1", PRACTICE_KEY, "otv")


@dataclass
class Env:
    gateway: Gateway
    adapters: AdapterServer
    client: PartnerClient
    database: Path
    adapter: Adapter
    connector: OutboundConnector | None = None

    def start_connector(self, who: Signer | None = None, practice: str = "edge") -> OutboundConnector:
        self.connector = OutboundConnector(
            self.gateway.address,
            practice,
            f"127.0.0.1:{self.adapters.port}",
            who or practice_signer(),
            local_practice="demo",
            backoff=FAST,
            changes=self.adapter.changes,
        )
        self.connector.start()
        return self.connector

    async def online(self, connector: OutboundConnector | None = None) -> None:
        await asyncio.wait_for((connector or self.connector or self.start_connector()).connected.wait(), 10)
        await self.gateway.router.connectors.wait_online("edge", 10)

    async def offline(self) -> None:
        assert self.connector is not None
        await self.connector.stop()
        hub = self.gateway.router.connectors
        async with asyncio.timeout(10):
            await hub.wait_until(lambda: not hub.online("edge"))

    def window(self, days: int = 7) -> Interval:
        start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        return Interval(start, start + timedelta(days=days))

    def pvs_references(self) -> list[str]:
        with sqlite3.connect(self.database) as conn:
            rows = conn.execute("SELECT reference FROM calendar_entries WHERE reference IS NOT NULL")
            return [row[0] for row in rows]


def gateway_config(tmp_path: Path, listen: str = "127.0.0.1:0") -> Any:
    return parse_config(
        {
            "gateway": {
                "listen": listen,
                "shutdown_grace_seconds": 0,
                "secret_key": SECRET,
                "state_store": f"sqlite:///{tmp_path / 'state.sqlite'}",
            },
            "practices": {
                "edge": {"adapter": {"connector": {"practice": "demo", "ping_seconds": 1}}},
                "demo": {"adapter": {"plugin": "reference", "settings": reference_settings()}},
            },
        }
    )


def register_practice_key(gateway: Gateway) -> None:
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner("edge-pvs")
    if "edge-pvs-1" not in {key.key_id for key in registry.list_keys()}:
        registry.add_key("edge-pvs", "edge-pvs-1", PRACTICE_PUBLIC)
    registry.grant("edge-pvs", "edge", ("connector",))
    registry.grant("edge-pvs", "demo", ("connector",))


@asynccontextmanager
async def connector_env(
    tmp_path: Path, tracing: TracerProvider | None = None, adapter_tracing: TracerProvider | None = None
) -> AsyncIterator[Env]:
    database = tmp_path / "pvs.sqlite"
    adapter = create_adapter("demo", reference_settings(database=str(database), demo_anchor=ANCHOR.isoformat()))
    observers = [] if adapter_tracing is None else [TracingServerInterceptor(adapter_tracing)]
    adapters = await serve_adapters({"demo": adapter}, interceptors=observers)
    gateway = await Gateway.start(gateway_config(tmp_path), tracer_provider=tracing)
    register_test_partner(gateway)
    register_practice_key(gateway)
    env = Env(gateway, adapters, PartnerClient.connect(gateway.address, signer=signer()), database, adapter)
    try:
        yield env
    finally:
        if env.connector is not None:
            await env.connector.stop()
        await env.client.close()
        await env.gateway.stop(0)
        await adapters.stop(0)


async def test_partners_reach_the_practice_through_the_connector(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        await env.online()
        calendar = await env.client.list_calendars("edge")
        assert {column.id for column in calendar.columns} == {"berg", "weber", "prophylaxe"}
        practice = await env.client.get_practice("edge")
        assert practice.adapter.product  # described by the adapter behind the connector
        busy = await env.client.list_busy_times("edge", env.window(), ["berg"])
        assert len(busy[0].intervals) > 0


async def test_a_partner_call_through_the_connector_is_one_trace_with_the_pvs(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    gateway_tracing, adapter_tracing = TracerProvider(), TracerProvider()  # the PVS traces with its own
    for provider in (gateway_tracing, adapter_tracing):
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with connector_env(tmp_path, gateway_tracing, adapter_tracing) as env:
        await env.online()
        exporter.clear()
        await env.client.list_calendars("edge")
        spans = exporter.get_finished_spans()
    (partner_call,) = [s for s in spans if s.kind is SpanKind.SERVER and s.name == "otv.v1.ReaderService/ListCalendars"]
    pvs = [s for s in spans if s.name.startswith("otv.v1.PracticeDataService/")]
    assert pvs, [s.name for s in spans]
    for span in pvs:  # over the connector stream, each adapter call is a child of the partner's call
        assert span.kind is SpanKind.SERVER
        assert span.context.trace_id == partner_call.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == partner_call.context.span_id


async def test_without_tracing_the_connector_stream_carries_no_trace_context(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    adapter_tracing = TracerProvider()
    adapter_tracing.add_span_processor(SimpleSpanProcessor(exporter))
    async with connector_env(tmp_path, adapter_tracing=adapter_tracing) as env:
        await env.online()
        exporter.clear()
        await env.client.list_calendars("edge")
        spans = exporter.get_finished_spans()
    assert spans  # the PVS traces on its own: each call starts a trace of its own
    assert all(span.parent is None for span in spans)


async def test_a_booking_through_the_connector_lands_in_the_pvs(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        await env.online()
        patient, _ = await env.client.find_or_create_patient("edge", PatientQuery("Erika", "Muster", date(1970, 1, 2)))
        query = SlotQuery("kontrolle", env.window(), ("berg",), PageRequest(1))
        (slot,) = (await env.client.find_slots("edge", query)).items
        booked = await env.client.book_appointment(
            "edge", SlotRequest("kontrolle", slot.column_id, slot.start, patient.id)
        )
        assert booked.id in env.pvs_references()


async def test_changes_in_the_pvs_reach_watchers_through_the_connector(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        await env.online()
        _, cursor = await env.client.busy_snapshot("edge", env.window(), ["berg"])
        start = env.window().start + timedelta(days=1, hours=9)
        entry = CalendarEntry("ref-pvs-1", "berg", "kontrolle", Interval(start, start + timedelta(minutes=20)),
                              "p-1001", "staff", "")  # fmt: skip
        assert env.adapter.calendar_writer is not None
        await env.adapter.calendar_writer.write_appointment(CallContext("staff"), entry)  # staff, in the PVS
        async with asyncio.timeout(10):
            async for event in env.client.watch_changes("edge", (), cursor):
                if isinstance(event.change, BusyTimeChanged):
                    assert event.change == BusyTimeChanged("berg", added=(entry.interval,))
                    break


async def test_every_connect_tells_watchers_to_re_read(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:

        async def configuration_changes(expected: int) -> None:
            """Watch the feed from its start until `expected` configuration changes have come."""
            seen = 0
            async with asyncio.timeout(10):
                async for event in env.client.watch_changes("edge", (), "c1-0"):
                    assert isinstance(event.change, CalendarConfigChanged | Heartbeat)
                    seen += isinstance(event.change, CalendarConfigChanged)
                    if seen == expected:
                        return

        connector = env.start_connector()
        await env.online()
        # The first session's announcement must have crossed the stream before the stream is dropped.
        await configuration_changes(1)
        link = env.gateway.router.connectors.link("edge")
        assert link is not None
        await env.gateway.router.connectors.detach(link)
        await asyncio.wait_for(connector.disconnected.wait(), 10)
        await env.online()
        assert connector.sessions == 2
        await configuration_changes(2)  # one per session: what changed while offline was not forwarded


async def test_the_connector_reconnects_after_the_gateway_restarts(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        connector = env.start_connector()
        await env.online()
        port = env.gateway.port
        await env.gateway.stop(0)
        await asyncio.wait_for(connector.disconnected.wait(), 10)
        await asyncio.sleep(0.5)  # a few failed attempts while the gateway is down
        env.gateway = await Gateway.start(gateway_config(tmp_path, listen=f"127.0.0.1:{port}"))
        await env.online()
        assert connector.sessions == 2
        calendar = await env.client.list_calendars("edge")
        assert calendar.columns


async def test_a_dropped_stream_is_replaced_by_a_new_one(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        connector = env.start_connector()
        await env.online()
        link = env.gateway.router.connectors.link("edge")
        assert link is not None
        await env.gateway.router.connectors.detach(link)  # as when the gateway loses the stream
        await asyncio.wait_for(connector.disconnected.wait(), 10)
        await env.online()
        assert connector.sessions == 2
        assert (await env.client.list_calendars("edge")).columns


async def test_offline_reads_come_from_the_last_known_state_with_its_age(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        await env.online()
        live = await env.client.list_busy_times("edge", env.window(), ["berg"])
        calendar = await env.client.list_calendars("edge")
        await env.offline()
        stub = reader_service_pb2_grpc.ReaderServiceStub(
            grpc.aio.insecure_channel(env.gateway.address, interceptors=signing_interceptors(signer()))
        )
        inside = Interval(env.window().start + timedelta(days=1), env.window().end - timedelta(days=1))
        call = stub.ListBusyTimes(
            reader_service_pb2.ListBusyTimesRequest(
                parent="practices/edge", columns=["practices/edge/columns/berg"], window=cv.interval_to_proto(inside)
            )
        )
        response = await call
        age = dict(await call.trailing_metadata() or ())[DATA_AGE_METADATA_KEY]
        assert 0 <= int(age) < 30
        (packed,) = response.busy_times
        offline = cv.unpack_intervals(packed, "edge", "busy_times[0]").intervals
        lo, hi = int(inside.start.timestamp()), int(inside.end.timestamp())
        assert offline == live[0].intervals.clipped(lo, hi)
        assert await env.client.list_calendars("edge") == calendar
        with pytest.raises(Unavailable, match="offline"):  # never read, so not known
            await env.client.list_busy_times("edge", env.window(days=30), ["berg"])


async def test_a_live_read_states_no_age(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        await env.online()
        stub = reader_service_pb2_grpc.ReaderServiceStub(
            grpc.aio.insecure_channel(env.gateway.address, interceptors=signing_interceptors(signer()))
        )
        call = stub.ListCalendars(reader_service_pb2.ListCalendarsRequest(parent="practices/edge"))
        await call
        assert DATA_AGE_METADATA_KEY not in dict(await call.trailing_metadata() or ())


async def test_offline_writes_are_refused_and_nothing_is_recorded(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        await env.online()
        patient, _ = await env.client.find_or_create_patient("edge", PatientQuery("Erika", "Muster", date(1970, 1, 2)))
        query = SlotQuery("kontrolle", env.window(), ("berg",), PageRequest(1))
        (slot,) = (await env.client.find_slots("edge", query)).items
        await env.offline()
        request = SlotRequest("kontrolle", slot.column_id, slot.start, patient.id)
        with pytest.raises(Unavailable, match="nothing was held or booked"):
            await env.client.book_appointment("edge", request)
        with pytest.raises(Unavailable):
            await env.client.hold_slot("edge", request)
        listed = await env.client.list_appointments("edge", AppointmentQuery(PageRequest(10)))
        assert list(listed.items) == []
        assert env.pvs_references() == []


async def test_a_practice_never_connected_is_unavailable(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        with pytest.raises(Unavailable, match="not connected"):
            await env.client.list_calendars("edge")


async def test_only_the_practice_key_with_the_connector_grant_may_connect(tmp_path: Path) -> None:
    async with connector_env(tmp_path) as env:
        partner_connector = env.start_connector(who=signer())  # a booking partner with "*"
        await asyncio.sleep(0.5)
        assert partner_connector.sessions == 0
        assert not env.gateway.router.connectors.online("edge")
        await partner_connector.stop()
        wrong_practice = env.start_connector(practice="demo")  # granted, but demo is not a connector practice
        await asyncio.sleep(0.5)
        assert wrong_practice.sessions == 0
        with pytest.raises(PermissionDenied):
            await PartnerClient.connect(env.gateway.address, signer=practice_signer()).list_calendars("edge")
