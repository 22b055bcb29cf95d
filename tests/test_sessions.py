"""otv-session-v1 under attack: every way to misuse a session is refused, through the real gRPC stack.

The scheme (otv_sdk.session_scheme, docs/security.md): an Ed25519-signed OpenSession agrees a key,
then each call carries an HMAC over method, audience, timestamp, sequence number and body hash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
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
)
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.app import Gateway
from gateway.partners import PartnerRegistry
from gateway.sessions import ReplayWindow, SessionBook, SessionsExhausted, SessionTaken
from otv.v1 import (
    reader_service_pb2,
    reader_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
)
from otv_sdk.client import PartnerClient
from otv_sdk.errors import PermissionDenied, Unauthenticated
from otv_sdk.session_scheme import (
    MAC_HEADER,
    SEQUENCE_HEADER,
    SESSION_HEADER,
    KeyAgreement,
    call_mac,
    derive_session_key,
    new_session_id,
)
from otv_sdk.session_signer import SessionSigner
from otv_sdk.signing import CONTENT_HEADER, TIMESTAMP_HEADER, Signer

GET_PRACTICE = "/otv.v1.ReaderService/GetPractice"
LIST_CALENDARS = "/otv.v1.ReaderService/ListCalendars"
OPEN_SESSION = "/otv.v1.SessionService/OpenSession"
OK, UNAUTHENTICATED = grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED


def _practices() -> dict[str, Any]:
    return {name: {"adapter": {"plugin": "reference", "settings": reference_settings()}} for name in ("demo", "other")}


def _register(gateway: Gateway) -> None:
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner(PARTNER_ID)
    registry.add_key(PARTNER_ID, KEY_ID, Signer(KEY_ID, PRIVATE_KEY, AUDIENCE).public_key)
    registry.grant(PARTNER_ID, "demo", ("reader",))


async def _start(store: str = "sqlite://:memory:", *, register: bool = True) -> Gateway:
    config = gateway_config(_practices())
    config = config.model_copy(update={"gateway": config.gateway.model_copy(update={"state_store": store})})
    gateway = await Gateway.start(config)
    if register:
        _register(gateway)
    return gateway


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    started = await _start()
    yield started
    await started.stop(0)


def _request(practice: str = "demo") -> reader_service_pb2.GetPracticeRequest:
    return reader_service_pb2.GetPracticeRequest(name=f"practices/{practice}")


class _Partner:
    """A partner's channel and session, with calls whose headers a test may keep, edit and resend."""

    def __init__(self, gateway: Gateway, signer: Signer | None = None) -> None:
        self.channel = grpc.aio.insecure_channel(gateway.address)
        self.session = SessionSigner(signer or Signer(KEY_ID, PRIVATE_KEY, AUDIENCE), self.channel)
        self.reader = reader_service_pb2_grpc.ReaderServiceStub(self.channel)

    async def headers(self, message: Any = None, method: str = GET_PRACTICE) -> list[tuple[str, str]]:
        return await self.session.headers(method, (message or _request()).SerializeToString())

    async def close(self) -> None:
        await self.channel.close()


async def _call(gateway: Gateway, metadata: list[tuple[str, str]], message: Any = None) -> grpc.StatusCode:
    code, _ = await _call_with_reason(gateway, metadata, message)
    return code


async def _call_with_reason(
    gateway: Gateway, metadata: list[tuple[str, str]], message: Any = None
) -> tuple[grpc.StatusCode, str]:
    """The call's status and the google.rpc.ErrorInfo reason it carried ("" without one)."""
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        try:
            await reader_service_pb2_grpc.ReaderServiceStub(channel).GetPractice(
                message or _request(), metadata=metadata, timeout=5
            )
        except grpc.aio.AioRpcError as error:
            status = rpc_status.from_call(error)  # type: ignore[arg-type]
            reasons = []
            for detail in status.details if status is not None else ():
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reasons.append(info.reason)
            return error.code(), "".join(reasons)
        return OK, ""


def _edit(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k == name else v) for k, v in headers]


async def test_a_session_call_passes_and_its_replay_is_refused(gateway: Gateway) -> None:
    partner = _Partner(gateway)
    headers = await partner.headers()
    assert await _call(gateway, headers) == OK
    assert await _call(gateway, headers) == UNAUTHENTICATED  # the same sequence number again
    assert await _call(gateway, await partner.headers()) == OK  # the next number passes
    await partner.close()


async def test_calls_may_overtake_each_other_within_the_window_but_each_number_counts_once(gateway: Gateway) -> None:
    partner = _Partner(gateway)
    first, second, third = [await partner.headers() for _ in range(3)]
    assert await _call(gateway, third) == OK
    assert await _call(gateway, first) == OK  # arrived late, still inside the window
    assert await _call(gateway, first) == UNAUTHENTICATED
    assert await _call(gateway, second) == OK
    await partner.close()


async def test_a_call_replayed_under_another_session_is_refused(gateway: Gateway) -> None:
    one, two = _Partner(gateway), _Partner(gateway)
    headers = await one.headers()
    await two.headers()  # opens the second session
    assert two.session._session is not None
    moved = _edit(headers, SESSION_HEADER, two.session._session.id)
    assert await _call(gateway, moved) == UNAUTHENTICATED
    assert await _call(gateway, headers) == OK  # the refused copy used up nothing of the real one
    await one.close()
    await two.close()


@pytest.mark.parametrize(
    "tamper",
    ["body", "method", "timestamp", "sequence", "leading_zero", "mac", "digest"],
)
async def test_tampered_calls_are_refused(gateway: Gateway, tamper: str) -> None:
    partner = _Partner(gateway)
    headers = await partner.headers()
    message: Any = None
    if tamper == "body":
        message = _request("other")  # the headers hash practices/demo
    elif tamper == "method":  # a MAC made for ListCalendars presented on GetPractice
        headers = await partner.headers(
            reader_service_pb2.ListCalendarsRequest(parent="practices/demo"), LIST_CALENDARS
        )
        headers = _edit(headers, CONTENT_HEADER, dict(await partner.headers())[CONTENT_HEADER])
    elif tamper == "timestamp":
        headers = _edit(headers, TIMESTAMP_HEADER, str(int(dict(headers)[TIMESTAMP_HEADER]) - 1))
    elif tamper == "sequence":
        headers = _edit(headers, SEQUENCE_HEADER, str(int(dict(headers)[SEQUENCE_HEADER]) + 1000))
    elif tamper == "leading_zero":  # one number, one spelling: the MAC covers the text
        headers = _edit(headers, SEQUENCE_HEADER, "0" + dict(headers)[SEQUENCE_HEADER])
    elif tamper == "mac":
        mac = dict(headers)[MAC_HEADER]
        headers = _edit(headers, MAC_HEADER, ("A" if mac[0] != "A" else "B") + mac[1:])
    else:
        headers = _edit(headers, CONTENT_HEADER, "0" * 64)
    assert await _call(gateway, headers, message) == UNAUTHENTICATED
    await partner.close()


async def test_a_session_for_another_audience_is_refused(gateway: Gateway) -> None:
    partner = _Partner(gateway, Signer(KEY_ID, PRIVATE_KEY, "another-gateway"))
    # The handshake itself is signed for the other audience: refused before any session exists.
    with pytest.raises(Unauthenticated):
        await partner.headers()
    await partner.close()


async def test_a_session_of_one_partner_cannot_be_used_by_another(gateway: Gateway) -> None:
    other_signer = register_other_partner(gateway, "other-partner")
    PartnerRegistry(gateway.router.store).revoke_grant("other-partner", "demo")  # may not read demo at all
    ours, theirs = _Partner(gateway), _Partner(gateway, other_signer)
    await ours.headers()
    assert ours.session._session is not None
    # The other partner names our session id, but can only MAC with its own session's key.
    stolen = _edit(await theirs.headers(), SESSION_HEADER, ours.session._session.id)
    assert await _call(gateway, stolen) == UNAUTHENTICATED
    # Nor can it open a session under an id that is in use.
    stub = session_service_pb2_grpc.SessionServiceStub(theirs.channel)
    request = session_service_pb2.OpenSessionRequest(
        session_id=ours.session._session.id, client_public_key=KeyAgreement().public_key
    )
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.OpenSession(request, metadata=other_signer.headers(OPEN_SESSION, request.SerializeToString()))
    assert taken.value.code() is grpc.StatusCode.ALREADY_EXISTS
    # And its own session carries its own grants, not ours.
    assert await _call(gateway, await theirs.headers()) == grpc.StatusCode.PERMISSION_DENIED
    await ours.close()
    await theirs.close()


async def test_open_session_needs_an_ed25519_signature_not_a_session(gateway: Gateway) -> None:
    partner = _Partner(gateway)
    await partner.headers()
    stub = session_service_pb2_grpc.SessionServiceStub(partner.channel)
    request = session_service_pb2.OpenSessionRequest(session_id=new_session_id(), client_public_key=bytes(32))
    session_headers = await partner.session.headers(OPEN_SESSION, request.SerializeToString())
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # a session cannot prolong itself
        await stub.OpenSession(request, metadata=session_headers)
    assert refused.value.code() is UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as unsigned:
        await stub.OpenSession(request)
    assert unsigned.value.code() is UNAUTHENTICATED
    await partner.close()


@pytest.mark.parametrize(
    ("session_id", "public_key", "field"),
    [
        ("short", KeyAgreement().public_key, "session_id"),
        (new_session_id(), b"\x01" * 31, "client_public_key"),
        (new_session_id(), bytes(32), "client_public_key"),  # a low-order point: no shared secret
    ],
)
async def test_a_malformed_handshake_is_invalid_argument_naming_the_field(
    gateway: Gateway, session_id: str, public_key: bytes, field: str
) -> None:
    signer = Signer(KEY_ID, PRIVATE_KEY, AUDIENCE)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = session_service_pb2_grpc.SessionServiceStub(channel)
        request = session_service_pb2.OpenSessionRequest(session_id=session_id, client_public_key=public_key)
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.OpenSession(request, metadata=signer.headers(OPEN_SESSION, request.SerializeToString()))
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (invalid.value.details() or "").startswith(field)


async def test_a_handshake_routed_under_another_session_id_is_invalid(gateway: Gateway) -> None:
    """The x-otv-session header is what a load balancer routes by: it must name the session opened."""
    signer = Signer(KEY_ID, PRIVATE_KEY, AUDIENCE)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = session_service_pb2_grpc.SessionServiceStub(channel)
        request = session_service_pb2.OpenSessionRequest(
            session_id=new_session_id(), client_public_key=KeyAgreement().public_key
        )
        metadata = [(SESSION_HEADER, new_session_id()), *signer.headers(OPEN_SESSION, request.SerializeToString())]
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.OpenSession(request, metadata=metadata)
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (invalid.value.details() or "").startswith(SESSION_HEADER)


async def test_a_session_of_a_revoked_key_is_refused_at_once_when_revoked_here(gateway: Gateway) -> None:
    partner = _Partner(gateway)
    assert await _call(gateway, await partner.headers()) == OK
    PartnerRegistry(gateway.router.store).revoke_key(KEY_ID)
    code, reason = await _call_with_reason(gateway, await partner.headers())
    assert (code, reason) == (UNAUTHENTICATED, "SESSION_UNKNOWN")
    # Opening a new session with the revoked key fails too.
    partner.session.forget()
    with pytest.raises(Unauthenticated):
        await partner.headers()
    await partner.close()


async def test_a_revocation_by_another_process_counts_within_the_stated_bound(gateway: Gateway) -> None:
    """What the CLI or another replica does: the store changes, this process is not told."""
    partner = _Partner(gateway)
    assert await _call(gateway, await partner.headers()) == OK

    def revoke_elsewhere(tx: Any) -> None:
        tx.execute("UPDATE partner_keys SET revoke_s = ? WHERE key_id = ?", (int(time.time()), KEY_ID))
        tx.execute("UPDATE registry_version SET version = version + 1 WHERE id = 1")

    gateway.router.store.run_sync(revoke_elsewhere)
    revoked_at = time.monotonic()
    while await _call(gateway, await partner.headers()) == OK:
        assert time.monotonic() - revoked_at < 5.5, "a revoked key's session still worked after 5 s"
        await asyncio.sleep(0.1)
    assert await _call(gateway, await partner.headers()) == UNAUTHENTICATED
    await partner.close()


async def test_a_session_is_known_only_to_the_replica_that_opened_it(tmp_path: Path) -> None:
    """Two replicas on one store: a call (or its replay) sent to the other replica is refused, and
    the partner client opens a session there on its own and carries on."""
    store = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    first = await _start(store)
    second = await _start(store, register=False)
    try:
        partner = _Partner(first)
        headers = await partner.headers()
        assert await _call(first, headers) == OK
        code, reason = await _call_with_reason(second, headers)
        assert (code, reason) == (UNAUTHENTICATED, "SESSION_UNKNOWN")
        fresh = await partner.headers()
        assert await _call(second, fresh) == UNAUTHENTICATED  # not even an unused number
        assert await _call(first, fresh) == OK
        client = PartnerClient(grpc.aio.insecure_channel(second.address), Signer(KEY_ID, PRIVATE_KEY, AUDIENCE))
        assert (await client.get_practice("demo")).id == "demo"
        with pytest.raises(PermissionDenied):
            await client.get_practice("other")
        await client.close()
        await partner.close()
    finally:
        await first.stop(0)
        await second.stop(0)


async def test_the_partner_client_opens_a_new_session_after_a_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    gateway = await _start(store)
    port = gateway.port
    client = PartnerClient.connect(f"127.0.0.1:{port}", signer=Signer(KEY_ID, PRIVATE_KEY, AUDIENCE))
    assert (await client.get_practice("demo")).id == "demo"
    await gateway.stop(0)
    config = gateway_config(_practices())
    config = config.model_copy(
        update={"gateway": config.gateway.model_copy(update={"state_store": store, "listen": f"127.0.0.1:{port}"})}
    )
    restarted = await Gateway.start(config)  # knows the partner from the store, but no session
    try:
        assert (await client.get_practice("demo")).id == "demo"
    finally:
        await client.close()
        await restarted.stop(0)


# --- the pieces, without the network ---------------------------------------------------------------


def test_the_replay_window_accepts_each_number_once_and_refuses_what_fell_out() -> None:
    window = ReplayWindow(8)
    assert [window.accept(n) for n in (1, 3, 2, 3, 1)] == [True, True, True, False, False]
    assert window.accept(10)  # 2 and 3 fell out of the 8 below 10
    assert not window.accept(2)
    assert window.accept(9)
    assert window.accept(4)
    assert not window.accept(9)
    assert window.accept(10_000)
    assert not window.accept(10)
    edge = ReplayWindow(8)  # accepted: fewer than 8 below the highest
    assert edge.accept(100)
    assert edge.accept(93)
    assert not edge.accept(92)


def test_a_session_expires_and_a_partner_holds_a_bounded_number() -> None:
    now = [1000.0]
    book = SessionBook("otv", clock=lambda: now[0], lifetime_s=60, per_partner=2)
    first = book.open("p", "p-1", new_session_id(), KeyAgreement().public_key)
    book.open("p", "p-1", new_session_id(), KeyAgreement().public_key)
    with pytest.raises(SessionsExhausted):
        book.open("p", "p-1", new_session_id(), KeyAgreement().public_key)
    with pytest.raises(SessionTaken):
        book.open("q", "q-1", first.id, KeyAgreement().public_key)
    assert book.get(first.id) is not None
    now[0] += 60
    assert book.get(first.id) is None
    book.open("p", "p-1", new_session_id(), KeyAgreement().public_key)  # the expired ones made room
    assert len(book) == 1


def test_the_gateways_keyed_mac_is_the_schemes_mac() -> None:
    """The gateway keys HMAC once per session; it must give what every partner computes."""
    agreement = KeyAgreement()
    book = SessionBook("otv")
    opened = book.open("p", "p-1", new_session_id(), agreement.public_key)
    session = book.get(opened.id)
    assert session is not None
    key = derive_session_key(
        agreement.shared_secret(opened.server_public_key),
        opened.id,
        "p-1",
        "otv",
        agreement.public_key,
        opened.server_public_key,
    )
    assert key == session.key
    for canonical in (b"a", b"otv-session-v1\nx\notv\n/m\n1\n2\n" + b"0" * 64, b""):
        assert session.mac(canonical) == call_mac(key, canonical)
