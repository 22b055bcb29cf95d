"""`otv adapter serve` with tracing: a remote adapter server's spans join the partner's trace.

The adapter server runs as the vendor would run it (a subprocess of the real command) and exports
over OTLP/gRPC to a collector this test plays; the gateway traces in-process into memory. The two
must agree on one trace: the adapter's SERVER spans are children of the gateway's CLIENT spans.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import gateway_config, reference_settings, register_test_partner, signer
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import Gateway
from gateway.partners import PartnerRegistry
from otv_sdk.client import PartnerClient
from otv_sdk.signing import generate_key_pair, save_key_file

OTV = [sys.executable, "-m", "otv_cli.main"]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that keeps what it receives, with the resource of each span."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, str], trace_pb2.Span]] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@asynccontextmanager
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    server = grpc.aio.server()
    kept = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(kept, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield kept, port
    finally:
        await server.stop(0)


@asynccontextmanager
async def adapter_process(*tracing: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    settings = json.dumps(reference_settings())
    process = await asyncio.create_subprocess_exec(
        *OTV, "adapter", "serve", "--plugin", "reference", "--practice", "demo", "--settings", settings,
        "--listen", "127.0.0.1:0", *tracing, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        match = re.search(r"listening on port (\d+)", line)
        assert match, line + (await process.stderr.read()).decode() if process.stderr else line
        yield process, int(match.group(1))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


def practice_key(gateway: Gateway, path: Path) -> Path:
    """A PVS key with the `connector` grant for practice "edge", in a key file for the command."""
    private, public = generate_key_pair()
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner("edge-pvs")
    registry.add_key("edge-pvs", "edge-pvs-1", public)
    registry.grant("edge-pvs", "edge", ("connector",))
    save_key_file(path, "edge-pvs", "edge-pvs-1", private, "otv")
    return path


@pytest.mark.parametrize("transport", ["remote", "connector"])
async def test_an_adapter_servers_spans_join_the_partners_trace(transport: str, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    gateway_tracing = TracerProvider()
    gateway_tracing.add_span_processor(SimpleSpanProcessor(exporter))
    async with collector() as (kept, collector_port):
        tracing = ("--tracing-endpoint", f"http://127.0.0.1:{collector_port}", "--tracing-service-name", "praxis-pvs")
        if transport == "remote":
            async with adapter_process(*tracing) as (process, port):
                practices = {"demo": {"adapter": {"remote": {"address": f"127.0.0.1:{port}"}}}}
                gateway = await Gateway.start(gateway_config(practices), tracer_provider=gateway_tracing)
                try:
                    await partner_call(gateway, "demo", exporter)
                finally:
                    await gateway.stop(0)
                assert "stopped" in await stop(process)  # SIGTERM: a graceful stop exports what is batched
        else:
            practices = {"edge": {"adapter": {"connector": {"practice": "demo", "ping_seconds": 1}}}}
            gateway = await Gateway.start(gateway_config(practices), tracer_provider=gateway_tracing)
            key = practice_key(gateway, tmp_path / "edge.key")
            dial = ("--connect", gateway.address, "--key", str(key), "--gateway-practice", "edge")
            try:
                async with adapter_process(*tracing, *dial) as (process, _):
                    await gateway.router.connectors.wait_online("edge", 30)
                    await partner_call(gateway, "edge", exporter)
                    assert "stopped" in await stop(process)
            finally:
                await gateway.stop(0)
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.kind is SpanKind.SERVER and s.name.endswith("/ListCalendars")]
    trace_id = call.context.trace_id.to_bytes(16, "big")
    # Remote: each a child of the gateway's CLIENT span; over the connector: of the partner call's span.
    parents = {s.context.span_id.to_bytes(8, "big") for s in spans if s.kind is SpanKind.CLIENT or s is call}
    pvs = [(resource, s) for resource, s in kept.spans if s.trace_id == trace_id]
    assert pvs, [s.name for _, s in kept.spans]
    for resource, span in pvs:
        assert span.name.startswith("otv.v1.PracticeDataService/")
        assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
        assert span.parent_span_id in parents
        assert resource["service.name"] == "praxis-pvs"


async def partner_call(gateway: Gateway, practice: str, exporter: InMemorySpanExporter) -> None:
    """One partner call, the only one the gateway's exporter keeps."""
    register_test_partner(gateway)
    async with PartnerClient.connect(gateway.address, signer=signer()) as client:
        exporter.clear()
        await client.list_calendars(practice)


async def test_a_sample_ratio_out_of_range_is_a_usage_error() -> None:
    process = await asyncio.create_subprocess_exec(
        *OTV, "adapter", "serve", "--plugin", "reference", "--practice", "demo", "--tracing-sample-ratio", "1.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "--tracing-sample-ratio" in err.decode()
    assert "between 0 and 1" in err.decode()
