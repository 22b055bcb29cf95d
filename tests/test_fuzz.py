"""Fuzzing every RPC the gateway serves, as a signed partner and as a stranger.

Requests are generated from the message descriptors of the gateway's own services (found through
its registered handlers, so a new RPC is fuzzed without touching this file), signed as a partner
granted everything, including the PVS-only services. Whatever arrives, the answer must be one of
the documented statuses, never INTERNAL or UNKNOWN, never a Python exception's text, and never slow;
health must stay SERVING. A few examples per RPC by default, many more under the slow marker.

The gateway runs on its own event loop in a thread, so hypothesis drives plain blocking calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import KEY_ID, PARTNER_ID, PRIVATE_KEY, PUBLIC_KEY, SECRET, reference_settings
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from message_strategies import messages

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.partners import PartnerRegistry
from otv.v1 import (
    connector_service_pb2,
    consent_service_pb2,
    patient_lookup_service_pb2,
    reader_service_pb2,
    snapshot_service_pb2,
    writer_service_pb2,
)
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer

# What a client's mistake may earn; UNAVAILABLE is documented for practices that have no data yet
# (a snapshot practice before its first upload, a connector practice that never connected).
CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ALREADY_EXISTS,
}
# Words that only a leaked Python exception puts into a status message.
LEAKS = ("Traceback", "Error(", "Exception", "exceeds the limit", "object has no attribute", "invalid literal")
FAST_EXAMPLES = 6
SLOW_EXAMPLES = int(os.environ.get("OTV_FUZZ_EXAMPLES", "150"))
UNARY_TIMEOUT = 10.0
STREAM_TIMEOUT = 1.5

SERVICES = [
    reader_service_pb2.DESCRIPTOR.services_by_name["ReaderService"],
    writer_service_pb2.DESCRIPTOR.services_by_name["WriterService"],
    patient_lookup_service_pb2.DESCRIPTOR.services_by_name["PatientLookupService"],
    consent_service_pb2.DESCRIPTOR.services_by_name["ConsentService"],
    snapshot_service_pb2.DESCRIPTOR.services_by_name["SnapshotService"],
    connector_service_pb2.DESCRIPTOR.services_by_name["ConnectorService"],
]
METHODS = [method for service in SERVICES for method in service.methods]

SNAPSHOT = {
    "display_name": "Upload",
    "window_days": 14,
    "columns": [{"id": "dr-a", "display_name": "Dr. A", "weekly_hours": ["mon 08:00-12:00"]}],
    "appointment_types": [{"id": "kontrolle", "display_name": "Kontrolle", "minutes": 20, "columns": ["dr-a"]}],
}
# Names worth trying in string fields: real ones reach past parsing into the gateway.
NAMES = [
    "practices/demo",
    "practices/snap",
    "practices/conn",
    "practices/nowhere",
    "practices/demo/columns/berg",
    "practices/demo/columns/nowhere",
    "practices/snap/columns/dr-a",
    "practices/demo/appointmentTypes/kontrolle",
    "practices/snap/appointmentTypes/kontrolle",
    "practices/demo/appointments/a0000000000000000",
    "practices/demo/holds/h0000000000000000",
    "practices/demo/patients/p1",
    "practices/demo/patients/p1/consent",
    "c1-0",
    "c1-99999999999999999999",
    "request-1",
    "Erika",
    "+49 30 1234567",
    "erika@example.org",
]
PRACTICES = ["practices/demo", "practices/remote", "practices/snap", "practices/conn"]
HINTS = {
    "parent": PRACTICES,
    "name": [
        *PRACTICES,
        "practices/demo/appointments/a0000000000000000",
        "practices/demo/holds/h0000000000000000",
        "practices/demo/patients/p1/consent",
    ],
    "columns": [
        "practices/demo/columns/berg",
        "practices/demo/columns/weber",
        "practices/remote/columns/berg",
        "practices/snap/columns/dr-a",
    ],
    "column": ["practices/demo/columns/berg", "practices/remote/columns/weber", "practices/snap/columns/dr-a"],
    "appointment_type": [
        "practices/demo/appointmentTypes/kontrolle",
        "practices/remote/appointmentTypes/kontrolle",
        "practices/snap/appointmentTypes/kontrolle",
    ],
    "patient": ["practices/demo/patients/p1"],
    "request_id": ["r-1", "r-2", "r-3", "r-4", "r-5", "r-6", "r-7", "r-8"],
    "cursor": ["c1-0", "c1-1", "c1-99999999999999999999", "c1-١٢"],
    "page_token": ["", "1:a", "99999999999999999999999:a", "-99999999999999999999:z"],
    "value": ["+49 30 1234567", "erika@example.org"],
}


@dataclass
class Running:
    address: str
    loop: asyncio.AbstractEventLoop


def _start(state: Path) -> Iterator[Running]:
    """A gateway on its own loop in a thread: the demo practice in-process and behind a remote
    adapter server, a snapshot practice and a connector practice that never connected."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    async def adapter_server() -> AdapterServer:
        return await serve_adapters({"remote": create_adapter("remote", reference_settings())})

    remote = run(adapter_server())
    config = {
        "gateway": {
            "listen": "127.0.0.1:0",
            "shutdown_grace_seconds": 0,
            "secret_key": SECRET,
            "state_store": f"sqlite:///{state}",
            "rate_limit": {"per_second": 100_000, "burst": 100_000},  # the fuzzer is one busy partner
        },
        "practices": {
            "demo": {"adapter": {"plugin": "reference", "settings": reference_settings()}},
            "remote": {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}},
            "snap": {"adapter": {"snapshot": SNAPSHOT}},
            "conn": {"adapter": {"connector": {}}},
        },
    }
    gateway: Gateway = run(Gateway.start(parse_config(config)))
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner(PARTNER_ID)
    registry.add_key(PARTNER_ID, KEY_ID, PUBLIC_KEY)
    for practice in gateway.router.practice_ids:
        registry.grant(PARTNER_ID, practice, ("*", "snapshot", "connector"))
    try:
        yield Running(gateway.address, loop)
    finally:
        run(gateway.stop(0))
        run(remote.stop(0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from _start(tmp_path_factory.mktemp("fuzz") / "state.sqlite")


@pytest.fixture(scope="module")
def channel(running: Running) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(running.address) as opened:
        yield opened


SIGNER = Signer(KEY_ID, PRIVATE_KEY, "otv")


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _call(channel: grpc.Channel, method: MethodDescriptor, body: bytes, signed: bool = True) -> tuple[Any, str]:
    """(status code, details) of one call carrying exactly `body`."""
    path = _path(method)
    metadata = list(SIGNER.headers(path, body)) if signed else []
    identity = bytes
    try:
        if method.client_streaming:
            call = channel.stream_stream(path, request_serializer=identity, response_deserializer=identity)
            for _ in call(iter([body]), metadata=metadata, timeout=STREAM_TIMEOUT):
                pass
        elif method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)
            for _ in stream(body, metadata=metadata, timeout=STREAM_TIMEOUT):
                pass
        else:
            unary = channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)
            unary(body, metadata=metadata, timeout=UNARY_TIMEOUT)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


def _assert_clean(channel: grpc.Channel, method: MethodDescriptor, code: Any, details: str) -> None:
    streaming = method.server_streaming or method.client_streaming
    allowed = CLIENT_ERRORS | ({grpc.StatusCode.DEADLINE_EXCEEDED} if streaming else set())
    assert code in allowed, f"{_path(method)} answered {code.name}: {details[:300]}"
    assert not any(word in details for word in LEAKS), f"{_path(method)} leaked {details[:300]!r}"
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def _fuzz_method(method: MethodDescriptor, examples: int) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=examples == FAST_EXAMPLES,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=messages(method.input_type, NAMES, HINTS))
    def check(channel: grpc.Channel, request: Any) -> None:
        code, details = _call(channel, method, request.SerializeToString())
        _assert_clean(channel, method, code, details)

    return check


@pytest.mark.parametrize("method", METHODS, ids=_path)
def test_generated_requests_get_documented_statuses(channel: grpc.Channel, method: MethodDescriptor) -> None:
    _fuzz_method(method, FAST_EXAMPLES)(channel)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=_path)
def test_many_generated_requests_get_documented_statuses(channel: grpc.Channel, method: MethodDescriptor) -> None:
    _fuzz_method(method, SLOW_EXAMPLES)(channel)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=300))
def test_random_bytes_signed_are_invalid_argument_not_a_crash(
    channel: grpc.Channel, method: MethodDescriptor, body: bytes
) -> None:
    code, details = _call(channel, method, body)
    _assert_clean(channel, method, code, details)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=300))
def test_random_bytes_unsigned_are_unauthenticated(
    channel: grpc.Channel, method: MethodDescriptor, body: bytes
) -> None:
    code, details = _call(channel, method, body, signed=False)
    assert code == grpc.StatusCode.UNAUTHENTICATED, f"{_path(method)} answered {code.name}: {details[:200]}"


LIBRARY_METHODS = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(LIBRARY_METHODS), body=st.binary(min_size=1, max_size=200))
def test_health_and_reflection_answer_garbage_with_a_status(channel: grpc.Channel, path: str, body: bytes) -> None:
    identity = bytes
    try:
        if path.endswith("Check"):
            channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)(body, timeout=5)
        elif path.endswith("Watch"):
            stream = channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)
            next(iter(stream(body, timeout=STREAM_TIMEOUT)))
        else:
            bidi = channel.stream_stream(path, request_serializer=identity, response_deserializer=identity)
            next(iter(bidi(iter([body]), timeout=STREAM_TIMEOUT)))
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
    except StopIteration:
        code, details = grpc.StatusCode.OK, ""
    assert code in CLIENT_ERRORS | {grpc.StatusCode.DEADLINE_EXCEEDED}, f"{path} answered {code.name}: {details}"


@pytest.mark.parametrize("size", [9 * 1024, 64 * 1024])
def test_oversized_metadata_is_refused_with_a_status(channel: grpc.Channel, size: int) -> None:
    method = SERVICES[0].methods_by_name["GetPractice"]
    body = reader_service_pb2.GetPracticeRequest(name="practices/demo").SerializeToString()
    path = _path(method)
    metadata = [*SIGNER.headers(path, body), ("x-padding", "a" * size)]
    unary = channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
    with pytest.raises(grpc.RpcError) as failed:
        unary(body, metadata=metadata, timeout=5)
    assert failed.value.code() in {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT}  # type: ignore[attr-defined]
    _assert_clean(channel, method, grpc.StatusCode.OK, "")


def test_an_oversized_timestamp_header_is_unauthenticated(channel: grpc.Channel) -> None:
    method = SERVICES[0].methods_by_name["GetPractice"]
    body = reader_service_pb2.GetPracticeRequest(name="practices/demo").SerializeToString()
    headers = [(k, "9" * 5000 if k == "x-otv-timestamp" else v) for k, v in SIGNER.headers(_path(method), body)]
    unary = channel.unary_unary(_path(method), request_serializer=bytes, response_deserializer=bytes)
    with pytest.raises(grpc.RpcError) as failed:
        unary(body, metadata=headers, timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_a_connector_stream_with_a_malformed_later_message_ends_with_invalid_argument(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/otv.v1.ConnectorService/Connect"
    hello = connector_service_pb2.ConnectRequest(
        hello=connector_service_pb2.ConnectorHello(parent="practices/conn")
    ).SerializeToString()
    accepted = threading.Event()

    def messages() -> Iterator[bytes]:
        yield hello
        accepted.wait(5)  # the gateway took the hello: now a message that is no ConnectRequest
        yield b"\xff\xff\xff"

    def read_all() -> None:
        bidi = channel.stream_stream(path, request_serializer=bytes, response_deserializer=bytes)
        for response in bidi(messages(), metadata=list(SIGNER.headers(path, hello)), timeout=10):
            if connector_service_pb2.ConnectResponse.FromString(response).HasField("accepted"):
                accepted.set()

    with caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as ended:
        read_all()
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
