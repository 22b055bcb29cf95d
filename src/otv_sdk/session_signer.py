"""A partner's side of otv-session-v1: open a session when needed, authenticate each call with it.

One SessionSigner belongs to one channel: the session lives on the gateway replica the channel
reaches (or that a load balancer hashing `x-otv-session` picks). It opens a session on first use,
opens the next one a minute before the current one expires, and forgets it when the gateway says
it does not know it (SESSION_UNKNOWN: the replica restarted, the session expired or its key was
revoked), so that the caller can send the call once more with a new session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from otv.v1 import session_service_pb2, session_service_pb2_grpc
from otv_sdk.session_scheme import (
    MAC_HEADER,
    MAX_SEQUENCE,
    SEQUENCE_HEADER,
    SESSION_HEADER,
    SESSION_SCHEME,
    KeyAgreement,
    call_mac,
    canonical_string,
    derive_session_key,
    new_session_id,
)
from otv_sdk.signing import CONTENT_HEADER, SCHEME_HEADER, TIMESTAMP_HEADER, Signer, content_hash
from otv_sdk.status import error_from_rpc_error

__all__ = ["OPEN_SESSION_METHOD", "SessionSigner", "is_session_unknown"]

OPEN_SESSION_METHOD = "/otv.v1.SessionService/OpenSession"
# Open the next session this long before the current one ends, so no call races the expiry.
_RENEW_BEFORE_S = 60.0
_SESSION_UNKNOWN = "SESSION_UNKNOWN"


@dataclass(slots=True)
class _Session:
    id: str
    key: bytes
    expire_s: float
    sequence: int = 0


def is_session_unknown(error: grpc.aio.AioRpcError) -> bool:
    """Whether the gateway refused the call because it does not know (any more) the session it named."""
    if error.code() is not grpc.StatusCode.UNAUTHENTICATED:
        return False
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an aio error is a grpc.Call
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason == _SESSION_UNKNOWN:
            return True
    return False


class SessionSigner:
    def __init__(self, signer: Signer, channel: grpc.aio.Channel, clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._stub = session_service_pb2_grpc.SessionServiceStub(channel)
        self._clock = clock
        self._session: _Session | None = None
        self._opening: asyncio.Task[_Session] | None = None

    @property
    def key_id(self) -> str:
        return self._signer.key_id

    async def headers(self, method: str, body: bytes) -> list[tuple[str, str]]:
        """Fresh metadata for one call (every attempt gets its own sequence number)."""
        session = self._session
        if session is None or session.expire_s - self._clock() < _RENEW_BEFORE_S or session.sequence >= MAX_SEQUENCE:
            session = await self._open()
        session.sequence += 1
        timestamp, sequence, digest = str(int(self._clock())), str(session.sequence), content_hash(body)
        canonical = canonical_string(session.id, self._signer.audience, method, timestamp, sequence, digest)
        return [
            (SCHEME_HEADER, SESSION_SCHEME),
            (SESSION_HEADER, session.id),
            (SEQUENCE_HEADER, sequence),
            (TIMESTAMP_HEADER, timestamp),
            (CONTENT_HEADER, digest),
            (MAC_HEADER, call_mac(session.key, canonical)),
        ]

    def forget(self, session_id: str | None = None) -> None:
        """Drop the session (the gateway no longer knows it); the next call opens another."""
        if self._session is not None and (session_id is None or self._session.id == session_id):
            self._session = None

    async def _open(self) -> _Session:
        """One OpenSession at a time: calls that need a session meanwhile wait for the same one."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._handshake())
        opening = self._opening
        try:
            session = await asyncio.shield(opening)
        finally:
            if self._opening is opening and opening.done():
                self._opening = None
        return session

    async def _handshake(self) -> _Session:
        agreement = KeyAgreement()
        session_id = new_session_id()
        request = session_service_pb2.OpenSessionRequest(session_id=session_id, client_public_key=agreement.public_key)
        # The session header routes the handshake like the session's calls (load balancers hash it).
        metadata = [
            (SESSION_HEADER, session_id),
            *self._signer.headers(OPEN_SESSION_METHOD, request.SerializeToString()),
        ]
        try:
            response = await self._stub.OpenSession(request, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc_error(error) from None
        shared = agreement.shared_secret(response.server_public_key)
        key = derive_session_key(
            shared,
            session_id,
            self._signer.key_id,
            self._signer.audience,
            agreement.public_key,
            response.server_public_key,
        )
        session = _Session(session_id, key, response.expire_time.ToNanoseconds() / 1e9)
        self._session = session
        return session
