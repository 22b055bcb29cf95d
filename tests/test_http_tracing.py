"""Traces of the HTTP snapshot upload (gateway.http_tracing) through a real, signed gateway's state."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from conftest import SECRET
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.app import Gateway
from gateway.authentication import SignatureAuthenticator
from gateway.config import parse_config
from gateway.http_api import HttpApi
from gateway.partners import PartnerRegistry
from gateway.snapshot_service import SnapshotCalls
from otv_sdk.signing import Signer, generate_key_pair

PVS_PRIVATE, PVS_PUBLIC = generate_key_pair()
PVS = Signer("trace-pvs-1", PVS_PRIVATE, "otv")
UPLOAD = "/v1/practices/{practice}/snapshot:upload"
WINDOW = "/v1/practices/{practice}/snapshot:window"
PRACTICE = {
    "display_name": "Zahnarztpraxis Upload",
    "window_days": 14,
    "upload_interval_seconds": 90,
    "columns": [{"id": "dr-a", "display_name": "Dr. A", "weekly_hours": ["mon 08:00-12:00"]}],
    "appointment_types": [{"id": "kontrolle", "display_name": "Kontrolle", "minutes": 20, "columns": ["dr-a"]}],
}


@dataclass
class Env:
    url: str
    exporter: InMemorySpanExporter
    pvs_tracer: trace.Tracer  # the PVS's own tracing, which an upload may continue

    async def post(self, route: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        method = "/otv.v1.SnapshotService/" + ("UploadSnapshot" if route.endswith(":upload") else "GetUploadWindow")
        sent = {"Content-Type": "application/json", **dict(PVS.headers(method, body)), **(headers or {})}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + route.replace("{practice}", "up"), data=io.BytesIO(body), headers=sent) as response,
        ):
            return response.status, await response.json()

    def spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


@asynccontextmanager
async def traced_http(tmp_path: Path) -> AsyncIterator[Env]:
    """A gateway's snapshot practice, served over an HTTP listener that traces with a test provider."""
    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "shutdown_grace_seconds": 0,
                "secret_key": SECRET,
                "state_store": f"sqlite:///{tmp_path / 'state.sqlite'}",
            },
            "practices": {"up": {"adapter": {"snapshot": PRACTICE}}},
        }
    )
    gateway = await Gateway.start(config)
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner("trace-pvs")
    registry.add_key("trace-pvs", "trace-pvs-1", PVS_PUBLIC)
    registry.grant("trace-pvs", "up", ("snapshot",))
    exporter = InMemorySpanExporter()
    gateway_tracing, pvs_tracing = TracerProvider(), TracerProvider()
    for provider in (gateway_tracing, pvs_tracing):
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = gateway.router
    api = HttpApi(
        SnapshotCalls(router.snapshot_keepers, frozenset(router.practice_ids)),
        SignatureAuthenticator(router.store, config.gateway.audience),
        tracer_provider=gateway_tracing,
    )
    await api.start("127.0.0.1:0")
    try:
        yield Env(f"http://127.0.0.1:{api.port}", exporter, pvs_tracing.get_tracer("pvs"))
    finally:
        await api.stop()
        await gateway.stop(0)


def upload_body(window: dict[str, str], request_id: str) -> bytes:
    start = datetime.fromisoformat(window["startTime"].replace("Z", "+00:00")) + timedelta(days=3, hours=1)
    busy = {"startTime": start.isoformat(), "endTime": (start + timedelta(minutes=30)).astimezone(UTC).isoformat()}
    column = {"column": "practices/up/columns/dr-a", "busyTimes": [busy]}
    return json.dumps({"requestId": request_id, "window": window, "columns": [column]}).encode()


async def test_an_upload_continues_the_pvs_trace_and_names_no_values(tmp_path: Path) -> None:
    async with traced_http(tmp_path) as env:
        status, window = await env.post(WINDOW, b"{}")
        assert status == 200
        request_id = str(uuid.uuid4())
        with env.pvs_tracer.start_as_current_span("pvs upload") as pvs_span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            status, answer = await env.post(UPLOAD, upload_body(window["window"], request_id), carrier)
        assert status == 200, answer
        spans = env.spans()
    (window_span,) = [s for s in spans if s.name == f"POST {WINDOW}"]
    assert window_span.parent is None  # no traceparent: a trace of its own
    (upload,) = [s for s in spans if s.name == f"POST {UPLOAD}"]
    assert upload.context.trace_id == pvs_span.get_span_context().trace_id
    assert upload.parent is not None
    assert upload.parent.span_id == pvs_span.get_span_context().span_id
    assert dict(upload.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": UPLOAD,
        "url.scheme": "http",
        "rpc.service": "otv.v1.SnapshotService",
        "rpc.method": "UploadSnapshot",
        "http.response.status_code": 200,
    }
    assert upload.status.status_code is StatusCode.UNSET
    for span in spans:  # neither the practice, the request id nor a busy time in any value
        values = " ".join(str(v) for v in (span.attributes or {}).values())
        assert request_id not in values
        assert "/practices/up/" not in values
        assert "columns" not in values


async def test_refused_uploads_are_spans_with_the_status_the_caller_got(tmp_path: Path) -> None:
    async with traced_http(tmp_path) as env:
        status, answer = await env.post(UPLOAD, b"{not json")
        assert (status, answer["code"]) == (400, "INVALID_ARGUMENT")
        status, answer = await env.post(UPLOAD, b" " * (5 << 20))
        assert (status, answer["code"]) == (413, "RESOURCE_EXHAUSTED")
        status, _ = await env.post("/v1/practices/{practice}/snapshot:nothing", b"{}")
        assert status == 404
        spans = env.spans()
    assert [s.attributes["http.response.status_code"] for s in spans if s.attributes] == [400, 413]
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)  # the caller's mistakes, not errors
