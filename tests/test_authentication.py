"""Signed calls and grants: every way to get it wrong gets the right status and changes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import AUDIENCE, KEY_ID, PARTNER_ID, PRIVATE_KEY, gateway_config, reference_settings, start_signed

from gateway.app import Gateway
from gateway.partners import PartnerRegistry
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from otv_sdk.signing import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, Signer, generate_key_pair

UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
GET_PRACTICE = "/otv.v1.ReaderService/GetPractice"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    practices = {
        name: {"adapter": {"plugin": "reference", "settings": reference_settings()}} for name in ("demo", "other")
    }
    started = await start_signed(gateway_config(practices))
    # The test partner may use only the demo practice's reader.
    registry = PartnerRegistry(started.router.store)
    registry.revoke_grant(PARTNER_ID, "other")
    registry.grant(PARTNER_ID, "demo", ("reader",))
    yield started
    await started.stop(0)


def request(practice: str = "demo") -> reader_service_pb2.GetPracticeRequest:
    return reader_service_pb2.GetPracticeRequest(name=f"practices/{practice}")


def signed(
    message: Any, method: str = GET_PRACTICE, signer: Signer | None = None, now: float | None = None
) -> list[tuple[str, str]]:
    return list((signer or Signer(KEY_ID, PRIVATE_KEY, AUDIENCE)).headers(method, message.SerializeToString(), now))


def replace(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k == name else v) for k, v in headers]


async def call(gateway: Gateway, metadata: list[tuple[str, str]], message: Any = None) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
        try:
            await stub.GetPractice(message or request(), metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK


async def test_a_correctly_signed_call_passes(gateway: Gateway) -> None:
    assert await call(gateway, signed(request())) == grpc.StatusCode.OK


async def test_missing_signature(gateway: Gateway) -> None:
    assert await call(gateway, []) == UNAUTHENTICATED


async def test_unknown_key_id(gateway: Gateway) -> None:
    assert await call(gateway, signed(request(), signer=Signer("nobody-1", PRIVATE_KEY, AUDIENCE))) == UNAUTHENTICATED


async def test_wrong_key(gateway: Gateway) -> None:
    other_private, _ = generate_key_pair()
    assert await call(gateway, signed(request(), signer=Signer(KEY_ID, other_private, AUDIENCE))) == UNAUTHENTICATED


async def test_revoked_key_and_rotation_without_downtime(gateway: Gateway) -> None:
    registry = PartnerRegistry(gateway.router.store)
    new_private, new_public = generate_key_pair()
    registry.add_key(PARTNER_ID, "test-partner-2", new_public)
    rotated = Signer("test-partner-2", new_private, AUDIENCE)
    assert await call(gateway, signed(request())) == grpc.StatusCode.OK  # both keys valid at once
    assert await call(gateway, signed(request(), signer=rotated)) == grpc.StatusCode.OK
    registry.revoke_key(KEY_ID)
    assert await call(gateway, signed(request())) == UNAUTHENTICATED
    assert await call(gateway, signed(request(), signer=rotated)) == grpc.StatusCode.OK


async def test_tampered_body(gateway: Gateway) -> None:
    headers = signed(request("demo"))
    assert await call(gateway, headers, request("other")) == UNAUTHENTICATED


async def test_tampered_method(gateway: Gateway) -> None:
    headers = signed(request(), method="/otv.v1.ReaderService/ListCalendars")
    assert await call(gateway, headers) == UNAUTHENTICATED


async def test_replayed_nonce(gateway: Gateway) -> None:
    headers = signed(request())
    assert await call(gateway, headers) == grpc.StatusCode.OK
    assert await call(gateway, headers) == UNAUTHENTICATED


@pytest.mark.parametrize("offset", [-301, 301])
async def test_timestamp_too_old_or_in_the_future(gateway: Gateway, offset: int) -> None:
    assert await call(gateway, signed(request(), now=time.time() + offset)) == UNAUTHENTICATED


async def test_signature_for_another_audience(gateway: Gateway) -> None:
    assert (
        await call(gateway, signed(request(), signer=Signer(KEY_ID, PRIVATE_KEY, "another-gateway"))) == UNAUTHENTICATED
    )


async def test_edited_header_values(gateway: Gateway) -> None:
    headers = signed(request())
    for name, value in ((NONCE_HEADER, "AAAAAAAAAAAAAAAAAAAAAA"), (TIMESTAMP_HEADER, str(int(time.time()) - 1))):
        assert await call(gateway, replace(headers, name, value)) == UNAUTHENTICATED
    assert await call(gateway, replace(headers, SIGNATURE_HEADER, "not-base64!")) == UNAUTHENTICATED


async def test_oversized_metadata_is_refused(gateway: Gateway) -> None:
    headers = [*signed(request()), ("x-padding", "x" * 20_000)]
    code = await call(gateway, headers)
    assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
    assert code != grpc.StatusCode.OK


async def test_ungranted_practice_and_missing_practice_look_the_same(gateway: Gateway) -> None:
    answers = []
    for practice in ("other", "does-not-exist"):
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetPractice(request(practice), metadata=signed(request(practice)), timeout=5)
        answers.append((caught.value.code(), caught.value.details()))
    assert answers[0] == answers[1]
    assert answers[0][0] == DENIED


async def test_a_grant_names_its_services(gateway: Gateway) -> None:
    message = writer_service_pb2.ListAppointmentsRequest(parent="practices/demo")
    headers = signed(message, method="/otv.v1.WriterService/ListAppointments")
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await writer_service_pb2_grpc.WriterServiceStub(channel).ListAppointments(
                message, metadata=headers, timeout=5
            )
    assert caught.value.code() == DENIED


async def test_health_checks_need_no_signature(gateway: Gateway) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(gateway.address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_calls_on_personal_data_are_audited_without_personal_values(gateway: Gateway) -> None:
    from otv.v1 import patient_lookup_service_pb2, patient_lookup_service_pb2_grpc, time_pb2

    PartnerRegistry(gateway.router.store).grant(PARTNER_ID, "demo", ("reader", "patient_lookup"))
    message = patient_lookup_service_pb2.FindOrCreatePatientRequest(
        parent="practices/demo",
        request_id="audit-1",
        given_name="Erika",
        family_name="Mustermann",
        birth_date=time_pb2.Date(year=1964, month=8, day=12),
    )
    method = "/otv.v1.PatientLookupService/FindOrCreatePatient"
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
        await stub.FindOrCreatePatient(message, metadata=signed(message, method=method), timeout=5)
        bad = patient_lookup_service_pb2.FindOrCreatePatientRequest(parent="practices/demo", request_id="audit-2")
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.FindOrCreatePatient(bad, metadata=signed(bad, method=method), timeout=5)
        await call(gateway, signed(request()))  # a reader call: no personal data, not audited
    rows = gateway.router.store.run_sync(lambda tx: tx.all("SELECT * FROM audit ORDER BY at_s, outcome"))
    assert sorted((r["partner"], r["practice"], r["action"], r["outcome"]) for r in rows) == [
        (PARTNER_ID, "demo", method, "INVALID_ARGUMENT"),
        (PARTNER_ID, "demo", method, "OK"),
    ]
    assert all(r["at_s"] > 0 for r in rows)
    assert "Mustermann" not in repr(rows)
    assert "Erika" not in repr(rows)
