"""Signed calls and grants: every way to get it wrong gets the right status and changes nothing."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import (
    AUDIENCE,
    KEY_ID,
    PARTNER_ID,
    PRIVATE_KEY,
    gateway_config,
    reference_settings,
    register_other_partner,
    start_signed,
)
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.app import Gateway
from gateway.config import RateLimitConfig
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


@pytest.mark.parametrize("size", [8_300, 20_000])
async def test_oversized_metadata_is_refused(gateway: Gateway, size: int) -> None:
    headers = [*signed(request()), ("x-padding", "x" * size)]
    assert await call(gateway, headers) == grpc.StatusCode.RESOURCE_EXHAUSTED


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


async def raw_call(gateway: Gateway, body: bytes, metadata: list[tuple[str, str]]) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        unary = channel.unary_unary(GET_PRACTICE, request_serializer=bytes, response_deserializer=bytes)
        try:
            await unary(body, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_the_signature_is_checked_before_the_body_is_parsed(gateway: Gateway) -> None:
    garbage = b"\xff\xff\xff"
    assert (await raw_call(gateway, garbage, []))[0] == UNAUTHENTICATED
    other_private, _ = generate_key_pair()
    forged = list(Signer(KEY_ID, other_private, AUDIENCE).headers(GET_PRACTICE, garbage))
    assert (await raw_call(gateway, garbage, forged))[0] == UNAUTHENTICATED
    genuine = list(Signer(KEY_ID, PRIVATE_KEY, AUDIENCE).headers(GET_PRACTICE, garbage))
    assert await raw_call(gateway, garbage, genuine) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the request is not a valid message for this method",
    )


def audit_rows(gateway: Gateway) -> list[dict[str, Any]]:
    return gateway.router.store.run_sync(lambda tx: tx.all("SELECT * FROM audit ORDER BY at_s, id"))


async def test_refused_calls_are_audited_without_personal_values(gateway: Gateway) -> None:
    from otv.v1 import patient_lookup_service_pb2, time_pb2

    assert await call(gateway, []) == UNAUTHENTICATED
    other_private, _ = generate_key_pair()
    assert await call(gateway, signed(request(), signer=Signer(KEY_ID, other_private, AUDIENCE))) == UNAUTHENTICATED
    assert await call(gateway, signed(request("other")), request("other")) == DENIED
    message = patient_lookup_service_pb2.FindOrCreatePatientRequest(
        parent="practices/demo",
        request_id="refused-1",
        given_name="Erika",
        family_name="Mustermann",
        birth_date=time_pb2.Date(year=1964, month=8, day=12),
    )
    method = "/otv.v1.PatientLookupService/FindOrCreatePatient"
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        unary = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
        body = message.SerializeToString()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(body, metadata=signed(message, method=method), timeout=5)
    assert caught.value.code() == DENIED  # the partner may use only the reader
    rows = [(r["partner"], r["practice"], r["action"], r["subject"], r["outcome"]) for r in audit_rows(gateway)]
    assert sorted(rows) == sorted(
        [
            ("", "", GET_PRACTICE, "", "UNAUTHENTICATED"),
            (PARTNER_ID, "demo", GET_PRACTICE, f"key:{KEY_ID}", "UNAUTHENTICATED"),
            (PARTNER_ID, "other", GET_PRACTICE, f"key:{KEY_ID}", "PERMISSION_DENIED"),
            (PARTNER_ID, "demo", method, f"key:{KEY_ID}", "PERMISSION_DENIED"),
        ]
    )
    assert "Mustermann" not in repr(audit_rows(gateway))


async def test_a_flood_of_refusals_is_audited_up_to_a_rate(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
        for _ in range(120):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetPractice(request(), timeout=5)
        recorded = len(audit_rows(gateway))
        assert 50 <= recorded < 120
        await asyncio.sleep(0.5)  # the audit's bucket refills
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetPractice(request(), timeout=5)
    rows = audit_rows(gateway)
    assert len(rows) == recorded + 1
    # Every refusal is accounted for: recorded, or counted in the next entry that is.
    pattern = re.compile(r"^UNAUTHENTICATED(?: \(\+(\d+) refusals not recorded\))?$")
    matches = [pattern.match(r["outcome"]) for r in rows]
    assert all(matches)
    assert len(rows) + sum(int(m.group(1) or 0) for m in matches if m) == 121
    assert any(m.group(1) for m in matches if m)


async def test_a_partner_over_its_rate_is_told_when_to_retry_and_others_are_not_slowed() -> None:
    practices = {"demo": {"adapter": {"plugin": "reference", "settings": reference_settings()}}}
    config = gateway_config(practices)
    config = config.model_copy(
        update={
            "gateway": config.gateway.model_copy(
                update={"partner_rate_limits": {PARTNER_ID: RateLimitConfig(per_second=4, burst=3)}}
            )
        }
    )
    gateway = await start_signed(config)
    try:
        other = register_other_partner(gateway)
        codes = [await call(gateway, signed(request())) for _ in range(4)]
        assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert [await call(gateway, signed(request(), signer=other)) for _ in range(5)] == [grpc.StatusCode.OK] * 5
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetPractice(request(), metadata=signed(request()), timeout=5)
        status = rpc_status.from_call(caught.value)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry)
        delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        assert 0 < delay <= 0.25 + 0.01  # one token at 4 per second
        await asyncio.sleep(delay + 0.05)
        assert await call(gateway, signed(request())) == grpc.StatusCode.OK
    finally:
        await gateway.stop(0)
