"""Signed calls and grants, checked for every call before anything else runs.

A gRPC server interceptor sees only the method and metadata, not the request bytes the signature
covers; so it wraps each handler: the new handler receives the raw bytes, verifies them, then
deserialises and runs the real one. Verification order, each failure UNAUTHENTICATED:

1. the x-otv-* headers are present and the scheme is otv-ed25519-v1;
2. the timestamp is within the allowed clock skew (default 5 minutes);
3. x-otv-content-sha256 is the SHA-256 of the exact request bytes;
4. the key id is an active key of a registered partner;
5. the Ed25519 signature over the canonical string verifies;
6. the nonce was not seen in the window (recorded in the shared store only after step 5, so nobody
   can burn a partner's nonces).
Then the grant: the partner may use this service of this practice, else PERMISSION_DENIED, the
same for practices that do not exist. The nonce, the key's validity and the grant are decided in
one store transaction shared by all calls waiting at that moment (admissions.py), which re-reads
keys and grants whenever any replica changed them: a revocation counts from the next batch on.

Health checking and reflection stay open: load balancers and tools do not sign.

Every call to a service that reads or changes personal data (patient lookup, consent, writer) is
recorded in the audit table: partner, time, practice, method and outcome, never a personal value.
"""

from __future__ import annotations

import contextvars
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway.admissions import Admissions
from gateway.state_store import StateStore
from otv_sdk.resources import is_valid_practice_id
from otv_sdk.signing import (
    CONTENT_HEADER,
    KEY_ID_HEADER,
    NONCE_HEADER,
    SCHEME,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    canonical_string,
    content_hash,
    metadata_value,
)

__all__ = ["SERVICE_GRANTS", "VERIFIED", "Refused", "SignatureAuthenticator", "Verified"]

_OPEN = ("/grpc.health.", "/grpc.reflection.")
# The grant (partners.py) each service needs.
SERVICE_GRANTS = {
    "otv.v1.ReaderService": "reader",
    "otv.v1.WriterService": "writer",
    "otv.v1.PatientLookupService": "patient_lookup",
    "otv.v1.ConsentService": "consent",
    "otv.v1.SnapshotService": "snapshot",
    "otv.v1.ConnectorService": "connector",
}
# Services whose calls read or change personal data, and so are audited.
_AUDITED = frozenset({"writer", "patient_lookup", "consent"})


@dataclass(frozen=True, slots=True)
class Verified:
    partner_id: str
    method: str


# Set for the duration of a verified call; read by the gateway's Identify.
VERIFIED: contextvars.ContextVar[Verified | None] = contextvars.ContextVar("otv_verified", default=None)


class Refused(Exception):
    """A call that may not proceed, with the status it gets (HTTP maps the code to its own)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _unauthenticated(message: str) -> Refused:
    return Refused(grpc.StatusCode.UNAUTHENTICATED, message)


def _practice_of(request: Any) -> str | None:
    """The practice a request addresses, if its name or parent is well formed (else the handler says so)."""
    hello = getattr(request, "hello", None)  # a connector's first message
    name = getattr(request, "parent", "") or getattr(request, "name", "") or getattr(hello, "parent", "")
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) >= 2 and parts[0] == "practices" and is_valid_practice_id(parts[1]):
        return parts[1]
    return None


class SignatureAuthenticator(grpc.aio.ServerInterceptor):
    def __init__(
        self, store: StateStore, audience: str, max_skew_seconds: int = 300, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._admissions = Admissions(store)
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._audience = audience
        self._skew = max_skew_seconds
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(_OPEN):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:  # built once per method: the call's metadata comes from its context
            service = SERVICE_GRANTS.get(method.split("/")[1] if method.count("/") >= 2 else "", "")
            if handler.unary_unary is not None:
                wrapped = self._unary(handler, method, service)
            elif handler.unary_stream is not None:
                wrapped = self._stream(handler, method, service)
            elif handler.stream_stream is not None:
                wrapped = self._bidirectional(handler, method, service)
            else:
                return handler  # the contract has no client-streaming methods
            self._wrapped[method] = wrapped
        return wrapped

    def _unary(self, handler: Any, method: str, service: str) -> grpc.RpcMethodHandler[Any, Any]:
        async def behavior(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request, verified = await self._admit(handler, raw, method, service, context)
            token = VERIFIED.set(verified)
            outcome = "OK"
            try:
                return await handler.unary_unary(request, context)
            except BaseException:
                code = context.code()
                outcome = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
                raise
            finally:
                VERIFIED.reset(token)
                if service in _AUDITED:
                    await self._audit(verified, _practice_of(request) or "", outcome)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=handler.response_serializer
        )

    def _stream(self, handler: Any, method: str, service: str) -> grpc.RpcMethodHandler[Any, Any]:
        async def behavior(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            request, verified = await self._admit(handler, raw, method, service, context)
            token = VERIFIED.set(verified)
            try:
                async for item in handler.unary_stream(request, context):
                    yield item
            finally:
                VERIFIED.reset(token)

        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=handler.response_serializer
        )

    def _bidirectional(self, handler: Any, method: str, service: str) -> grpc.RpcMethodHandler[Any, Any]:
        """The signature covers the first message (the connector's hello), which must come first."""

        async def behavior(raw_messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            first = await anext(aiter(raw_messages), None)
            if first is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send the first message, which is signed")
            request, verified = await self._admit(handler, first, method, service, context)

            async def messages() -> AsyncIterator[Any]:
                yield request
                async for raw in raw_messages:
                    yield handler.request_deserializer(raw) if handler.request_deserializer else raw

            token = VERIFIED.set(verified)
            try:
                async for item in handler.stream_stream(messages(), context):
                    yield item
            finally:
                VERIFIED.reset(token)

        return grpc.stream_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=handler.response_serializer
        )

    async def _audit(self, verified: Verified, practice: str, outcome: str) -> None:
        entry = (secrets.token_hex(8), int(self._clock()), verified.partner_id, practice, verified.method, outcome)
        await self._store.run(
            lambda tx: tx.execute(
                "INSERT INTO audit (id, at_s, partner, practice, action, subject, outcome)"
                " VALUES (?, ?, ?, ?, ?, '', ?)",
                entry,
            )
        )

    async def _admit(
        self, handler: Any, raw: bytes, method: str, service: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Any, Verified]:
        metadata = tuple(context.invocation_metadata() or ())
        try:
            request = handler.request_deserializer(raw) if handler.request_deserializer else raw
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message for this method")
        try:
            partner = await self.verify(raw, method, service, metadata, _practice_of(request))
        except Refused as refused:
            await context.abort(refused.code, refused.message)
        return request, Verified(partner, method)

    async def verify(
        self, raw: bytes, method: str, service: str, metadata: tuple[Any, ...], practice: str | None
    ) -> str:
        """The partner who signed the call, or Refused. The HTTP endpoint passes its headers as metadata."""
        values = {
            name: metadata_value(metadata, name)
            for name in (SCHEME_HEADER, KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, CONTENT_HEADER, SIGNATURE_HEADER)
        }
        missing = sorted(name for name, value in values.items() if not value)
        if missing:
            raise _unauthenticated(f"the call is not signed: missing {', '.join(missing)} (see docs/security.md)")
        if values[SCHEME_HEADER] != SCHEME:
            raise _unauthenticated(f"unsupported {SCHEME_HEADER}; this gateway accepts {SCHEME}")
        timestamp = values[TIMESTAMP_HEADER] or ""
        now = int(self._clock())
        if not timestamp.isdigit() or abs(int(timestamp) - now) > self._skew:
            raise _unauthenticated(
                f"{TIMESTAMP_HEADER} is not within {self._skew} seconds of the gateway's clock; check your clock"
            )
        digest = content_hash(raw)
        if values[CONTENT_HEADER] != digest:
            raise _unauthenticated(f"{CONTENT_HEADER} does not match the request; hash the exact bytes you send")
        key_id, nonce, signature = (
            values[KEY_ID_HEADER] or "",
            values[NONCE_HEADER] or "",
            values[SIGNATURE_HEADER] or "",
        )
        if len(nonce) > 64 or len(key_id) > 128:
            raise _unauthenticated("x-otv-nonce or x-otv-key-id is too long")
        message = canonical_string(key_id, self._audience, method, timestamp, nonce, digest)
        # Signature, key, nonce and grant are decided together for all waiting calls (admissions.py).
        decision = await self._admissions.admit(
            key_id, message, signature, nonce, int(timestamp) + self._skew, practice, service
        )
        if decision.outcome == "key":
            raise _unauthenticated(f"{KEY_ID_HEADER} is not an active key of a registered partner")
        if decision.outcome == "signature":
            raise _unauthenticated(
                "the signature does not verify: check the key, the audience, the method and the canonical string"
            )
        if decision.outcome == "replay":
            raise _unauthenticated("this nonce was already used: sign every call, retries included, afresh")
        if decision.outcome == "denied":
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, "this partner may not use that service of that practice")
        return decision.partner
