"""Metrics, traces and JSON logs (docs/operations.md)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import aiohttp
import grpc
import pytest
from booking_env import booking_env, slot_request
from conftest import PRACTICE, gateway_config, reference_settings, register_test_partner, signer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from patient_env import as_partner
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.config import TracingConfig
from gateway.metrics import GatewayMetrics
from gateway.observability import JsonFormatter
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.call_observation import Begin, End, ObservingInterceptor, joined
from otv_sdk.client import PartnerClient
from otv_sdk.errors import PermissionDenied, Unauthenticated
from otv_sdk.models import Contact, ContactKind
from otv_sdk.ports import PatientQuery
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer, generate_key_pair
from otv_sdk.tracing import TracingServerInterceptor

REFERENCE = {PRACTICE: {"adapter": {"plugin": "reference", "settings": reference_settings()}}}


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape(gateway: Gateway) -> str:
    assert gateway.http is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gateway.http.port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def test_metrics_count_calls_by_code_time_them_and_count_refusals() -> None:
    base = gateway_config(REFERENCE)
    config = base.model_copy(update={"gateway": base.gateway.model_copy(update={"http_listen": "127.0.0.1:0"})})
    gateway = await Gateway.start(config)
    register_test_partner(gateway)
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            for _ in range(3):
                await client.get_practice(PRACTICE)
            with pytest.raises(PermissionDenied):  # no grant for a practice that is not here
                await client.get_practice("no-such-practice")
        private, _ = generate_key_pair()
        async with PartnerClient.connect(gateway.address, signer=Signer("unknown-1", private, "otv")) as stranger:
            with pytest.raises(Unauthenticated):
                await stranger.get_practice(PRACTICE)
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await channel.unary_unary("/otv.v1.NoSuchService/Anything")(b"")
            assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
        samples = _samples(await _scrape(gateway))
    finally:
        await gateway.stop(0)

    def handled(code: str, method: str = "GetPractice", service: str = "otv.v1.ReaderService") -> float:
        labels = {"grpc_type": "unary", "grpc_service": service, "grpc_method": method, "grpc_code": code}
        return samples.get(("grpc_server_handled_total", frozenset(labels.items())), 0.0)

    service = next(
        dict(labels)["grpc_service"]
        for name, labels in samples
        if name == "grpc_server_started_total" and dict(labels).get("grpc_method") == "GetPractice"
    )
    assert handled("OK", service=service) == 3
    assert handled("PERMISSION_DENIED", service=service) == 1
    # The stranger's client opens a session first (otv-session-v1): that is the call refused.
    assert handled("UNAUTHENTICATED", "OpenSession", service.replace("ReaderService", "SessionService")) == 1
    assert handled("OK", "OpenSession", service.replace("ReaderService", "SessionService")) == 1
    method = {"grpc_type": "unary", "grpc_service": service, "grpc_method": "GetPractice"}
    assert samples[("grpc_server_started_total", frozenset(method.items()))] == 4
    assert samples[("grpc_server_handling_seconds_count", frozenset(method.items()))] == 4
    assert samples[("grpc_server_handling_seconds_bucket", frozenset({**method, "le": "+Inf"}.items()))] == 4
    unknown = {"grpc_type": "unknown", "grpc_service": "unknown", "grpc_method": "unknown"}
    unknown["grpc_code"] = "UNIMPLEMENTED"
    assert samples[("grpc_server_handled_total", frozenset(unknown.items()))] == 1
    assert samples[("otv_refused_calls_total", frozenset({"reason": "key"}.items()))] == 1
    assert samples[("otv_refused_calls_total", frozenset({"reason": "denied"}.items()))] == 1
    adapter_calls = {dict(labels)["practice"] for name, labels in samples if name == "otv_adapter_call_seconds_count"}
    assert adapter_calls == {PRACTICE}
    assert samples[("otv_holds_active", frozenset({"practice": PRACTICE}.items()))] == 0
    assert samples[("otv_inbox_pending", frozenset({"practice": PRACTICE}.items()))] == 0
    assert samples[("otv_change_feed_watchers", frozenset({"practice": PRACTICE}.items()))] == 0


async def test_one_partner_call_is_one_trace_through_gateway_and_remote_adapter() -> None:
    exporter = InMemorySpanExporter()
    gateway_tracing = TracerProvider()
    gateway_tracing.add_span_processor(SimpleSpanProcessor(exporter))
    adapter_tracing = TracerProvider()  # the PVS side: a tracer of its own, the same collector
    adapter_tracing.add_span_processor(SimpleSpanProcessor(exporter))
    remote = await serve_adapters(
        {PRACTICE: create_adapter(PRACTICE, reference_settings())},
        interceptors=[TracingServerInterceptor(adapter_tracing)],
    )
    practices = {PRACTICE: {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}}}
    gateway = await Gateway.start(gateway_config(practices), tracer_provider=gateway_tracing)
    register_test_partner(gateway)
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            await client.get_practice(PRACTICE)
    finally:
        await gateway.stop(0)
        await remote.stop(0)
    spans = exporter.get_finished_spans()
    (partner_call,) = [s for s in spans if s.kind is SpanKind.SERVER and s.name.endswith("/GetPractice")]
    trace_id = partner_call.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    adapter_side = [s for s in in_trace if s.kind is SpanKind.SERVER and "PracticeDataService" in s.name]
    client_side = [s for s in in_trace if s.kind is SpanKind.CLIENT and "PracticeDataService" in s.name]
    assert adapter_side, [s.name for s in spans]
    assert client_side
    by_id = {s.context.span_id: s for s in in_trace}
    for span in adapter_side:  # each hangs, through the gateway's client span, off the partner's call
        assert span.parent is not None
        parent = by_id[span.parent.span_id]
        assert parent.kind is SpanKind.CLIENT
        assert parent.parent is not None
        assert parent.parent.span_id == partner_call.context.span_id
    for span in in_trace:  # no request content: service, method and status only
        assert set(span.attributes or {}) <= {"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code"}


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_json_logs_of_a_whole_booking_carry_no_personal_data(json_log: io.StringIO, tmp_path: Path) -> None:
    given, family, birth = "Henriette", "Quastenberg", date(1971, 2, 3)
    phone, email = "+491701234567", "henriette.quastenberg@example.org"
    alpha = as_partner("alpha")
    async with booking_env("sqlite", tmp_path, "remote") as env:
        contacts = (Contact(ContactKind.MOBILE, phone), Contact(ContactKind.EMAIL, email))
        patient, _ = await env.client.find_or_create_patient(
            "demo", PatientQuery(given, family, birth, contacts), metadata=alpha
        )
        slot = (await env.slots())[0]
        hold = await env.client.hold_slot("demo", slot_request(slot, patient.id), metadata=alpha)
        booked = await env.client.confirm_hold("demo", hold.id, metadata=alpha)
        await env.client.cancel_appointment("demo", booked.id, booked.etag, metadata=alpha)
        logging.getLogger("otv.test").warning("a line with a trace-free context", extra={"practice": "demo"})
    lines = json_log.getvalue().splitlines()
    assert lines
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    assert all({"time", "level", "logger", "message"} <= set(event) for event in events)
    assert [e["practice"] for e in events if e["logger"] == "otv.test"] == ["demo"]
    text = json_log.getvalue()
    for personal in (given, family, birth.isoformat(), "03.02.1971", phone, "1701234567", email):
        assert personal not in text


def test_json_lines_carry_the_active_spans_ids() -> None:
    provider = TracerProvider()
    record = logging.LogRecord("otv.test", logging.INFO, __file__, 1, "inside %s", ("a span",), None)
    with provider.get_tracer("test").start_as_current_span("call") as span:
        event = json.loads(JsonFormatter().format(record))
    assert event["message"] == "inside a span"
    assert event["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert event["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in json.loads(JsonFormatter().format(record))


CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("traceparent", "sample_ratio", "adapter_traces"),
    [
        (f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", 0.0, "caller's"),  # the caller sampled: followed, ratio or not
        (f"00-{CALLER_TRACE}-{CALLER_SPAN}-00", 1.0, "none"),  # the caller did not sample: nor does anyone after
        (None, 1.0, "new"),
        (None, 0.0, "none"),
    ],
)
async def test_a_gateway_tracing_without_an_exporter_carries_the_trace_to_its_adapters(
    traceparent: str | None, sample_ratio: float, adapter_traces: str
) -> None:
    """[gateway.tracing] without an endpoint: the gateway records nothing (no one would see it),
    but its adapters see the trace, the sampling decision and span ids of the gateway's own."""
    exporter = InMemorySpanExporter()
    adapter_tracing = TracerProvider()
    adapter_tracing.add_span_processor(SimpleSpanProcessor(exporter))
    remote = await serve_adapters(
        {PRACTICE: create_adapter(PRACTICE, reference_settings())},
        interceptors=[TracingServerInterceptor(adapter_tracing)],
    )
    base = gateway_config({PRACTICE: {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}}})
    tracing = TracingConfig(sample_ratio=sample_ratio)
    gateway = await Gateway.start(
        base.model_copy(update={"gateway": base.gateway.model_copy(update={"tracing": tracing})})
    )
    register_test_partner(gateway)
    called = time.time_ns()  # the gateway's own calls as it starts are traces of their own
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            metadata = None if traceparent is None else [("traceparent", traceparent)]
            await client.get_practice(PRACTICE, metadata=metadata)
    finally:
        await gateway.stop(0)
        await remote.stop(0)
    spans = exporter.get_finished_spans()
    # and so is its change watch, which it opens in the background
    own = [s for s in spans if (s.start_time or 0) < called or s.name.endswith("/WatchDataChanges")]
    adapter_side = [s for s in spans if s.kind is SpanKind.SERVER and s not in own]
    if adapter_traces == "none":
        assert adapter_side == []
        return
    assert adapter_side
    trace_ids = {s.context.trace_id for s in adapter_side}
    assert len(trace_ids) == 1  # one partner call, one trace
    if adapter_traces == "caller's":
        assert trace_ids == {int(CALLER_TRACE, 16)}
    else:
        assert trace_ids != {int(CALLER_TRACE, 16)}
    for span in adapter_side:  # each the child of a span of the gateway's, not of the caller's
        assert span.parent is not None
        assert span.parent.is_remote
        assert span.parent.span_id != int(CALLER_SPAN, 16)


async def test_metrics_and_tracing_together_see_each_call_and_its_code() -> None:
    """Stacked in one server (metrics outside tracing), they share one wrapper: both are told."""
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    gateway = await Gateway.start(gateway_config(REFERENCE), tracer_provider=tracing)
    register_test_partner(gateway)
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            await client.get_practice(PRACTICE)
            with pytest.raises(PermissionDenied):
                await client.get_practice("no-such-practice")
        samples = _samples(gateway.metrics.exposition().decode())
    finally:
        await gateway.stop(0)
    calls = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER and s.name.endswith("/GetPractice")]
    codes = sorted((s.attributes or {})["rpc.grpc.status_code"] for s in calls)
    assert codes == [grpc.StatusCode.OK.value[0], grpc.StatusCode.PERMISSION_DENIED.value[0]]
    handled = {
        dict(labels)["grpc_code"]: value
        for (name, labels), value in samples.items()
        if name == "grpc_server_handled_total" and dict(labels)["grpc_method"] == "GetPractice"
    }
    assert handled == {"OK": 1, "PERMISSION_DENIED": 1}
    count = [v for (name, labels), v in samples.items() if name == "grpc_server_handling_seconds_count"]
    assert sum(count) >= 2


def test_the_handling_histogram_counts_each_call_in_its_bucket_and_above() -> None:
    metrics = GatewayMetrics()
    method = "/otv.v1.ReaderService/GetPractice"
    begin, end = metrics.interceptor()._hooks(method, "unary")  # type: ignore[attr-defined]
    end(begin(None), grpc.StatusCode.OK)  # a quick call
    end(time.perf_counter() - 0.0126, grpc.StatusCode.NOT_FOUND)  # one that took longer than 12.6 ms
    samples = _samples(metrics.exposition().decode())
    labels = {"grpc_type": "unary", "grpc_service": "otv.v1.ReaderService", "grpc_method": "GetPractice"}

    def bucket(le: str) -> float:
        return samples[("grpc_server_handling_seconds_bucket", frozenset({**labels, "le": le}.items()))]

    assert bucket("0.01") <= 1  # the slow call is not in it, whatever the quick one took
    assert bucket("30.0") == 2
    assert bucket("+Inf") == 2
    assert samples[("grpc_server_handling_seconds_count", frozenset(labels.items()))] == 2
    assert samples[("grpc_server_handling_seconds_sum", frozenset(labels.items()))] >= 0.0126
    assert samples[("grpc_server_started_total", frozenset(labels.items()))] == 1
    for code in ("OK", "NOT_FOUND"):
        assert samples[("grpc_server_handled_total", frozenset({**labels, "grpc_code": code}.items()))] == 1


def _observer(name: str, log: list[str]) -> ObservingInterceptor:
    def hooks(method: str, kind: str) -> tuple[Begin, End]:
        def begin(context: object) -> str:
            log.append(f"{name} begins {method} {kind}")
            return name

        def end(state: str, code: grpc.StatusCode) -> None:
            log.append(f"{state} ends {code.name}")

        return begin, end

    return ObservingInterceptor(hooks, lambda method: log.append(f"{name} unknown {method}"))


@pytest.mark.parametrize("stacking", ["stacked", "joined"])
async def test_observers_stacked_or_joined_begin_in_order_end_in_reverse_with_the_code(stacking: str) -> None:
    log: list[str] = []
    outer, inner = _observer("outer", log), _observer("inner", log)

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        if request == b"missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return request

    async def count(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        for item in (b"1", b"2"):
            yield item

    server = grpc.aio.server(interceptors=[outer, inner] if stacking == "stacked" else [joined(outer, inner)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "t.Test",
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(echo),
                    "Count": grpc.unary_stream_rpc_method_handler(count),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await channel.unary_unary("/t.Test/Echo")(b"hello") == b"hello"
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary("/t.Test/Echo")(b"missing")
            assert [item async for item in channel.unary_stream("/t.Test/Count")(b"")] == [b"1", b"2"]
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary("/t.Test/Nothing")(b"")
    finally:
        await server.stop(0)
    call = ["outer begins /t.Test/Echo unary", "inner begins /t.Test/Echo unary"]
    stream = ["outer begins /t.Test/Count server_stream", "inner begins /t.Test/Count server_stream"]
    assert log[:12] == [
        *call,
        "inner ends OK",
        "outer ends OK",
        *call,
        "inner ends NOT_FOUND",
        "outer ends NOT_FOUND",
        *stream,
        "inner ends OK",
        "outer ends OK",
    ]
    assert sorted(log[12:]) == ["inner unknown /t.Test/Nothing", "outer unknown /t.Test/Nothing"]
