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

The request body is parsed only after the headers check out (1-3), so unsigned garbage is
UNAUTHENTICATED, never INVALID_ARGUMENT; a signed body that does not parse is INVALID_ARGUMENT once
the signature verified. Bodies larger than the service takes (limits.py) are RESOURCE_EXHAUSTED
before they are hashed. Then each partner's rate limit (rate_limits.py): RESOURCE_EXHAUSTED with
RetryInfo.

Health checking and reflection stay open: load balancers and tools do not sign.

Every call to a service that reads or changes personal data (patient lookup, consent, writer) is
recorded in the audit table: partner, time, practice, method and outcome, never a personal value.
Every refused call (UNAUTHENTICATED, PERMISSION_DENIED) to any service is recorded too, with the
key id it named; a flood of refusals is recorded up to a rate, with the count of those left out.
"""

from __future__ import annotations

import contextvars
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.admissions import Admissions
from gateway.rate_limits import CpuMeter, Overloaded, PartnerRateLimits, Rate, TokenBucket, metered
from gateway.state_store import StateStore
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import MAX_PARTNER_REQUEST_BYTES, MAX_REQUEST_BYTES
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

__all__ = ["SERVICE_GRANTS", "VERIFIED", "RateLimited", "Refused", "SignatureAuthenticator", "Verified"]

_OPEN = ("/grpc.health.", "/grpc.reflection.")
# The grant (partners.py) each service needs.
SERVICE_GRANTS = {
    "otv.v1.ReaderService": "reader",
    "otv.v1.WriterService": "writer",
    "otv.v1.PatientLookupService": "patient_lookup",
    "otv.v1.ConsentService": "consent",
    "otv.v1.SnapshotService": "snapshot",
    "otv.v1.ConnectorService": "connector",
    "otv.v1.PracticeService": "practice",
}
# Services whose calls read or change personal data, and so are audited.
_AUDITED = frozenset({"writer", "patient_lookup", "consent"})
# The PVS's services carry calendars; a partner's requests are small (limits.py).
_REQUEST_BYTES = {"snapshot": MAX_REQUEST_BYTES, "connector": MAX_REQUEST_BYTES}
# Refused calls recorded in the audit: enough to see an attack, not enough to fill the store.
_REFUSALS_AUDITED = Rate(per_second=5, burst=50)
_MAX_TIMESTAMP_DIGITS = 12


@dataclass(frozen=True, slots=True)
class Verified:
    partner_id: str
    method: str


# Set for the duration of a verified call; read by the gateway's Identify.
VERIFIED: contextvars.ContextVar[Verified | None] = contextvars.ContextVar("otv_verified", default=None)


class Refused(Exception):
    """A call that may not proceed, with the status it gets (HTTP maps the code to its own)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "unsigned") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason  # the label of otv_refused_calls_total (metrics.py)


class RateLimited(Refused):
    """The partner's calls per second (or its queue of waiting calls) are used up; `retry_after`
    seconds until the next is admitted."""

    def __init__(self, retry_after: float, *, queue: bool = False) -> None:
        what = "used its share of this gateway for now" if queue else "its rate limit reached"
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"this partner has {what}; retry in {retry_after:.3f} s",
            "overloaded" if queue else "rate_limited",
        )
        self.retry_after = retry_after


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


@dataclass(frozen=True, slots=True)
class _Headers:
    """The signature headers of one call, checked for form, time and body hash; not yet verified."""

    key_id: str
    timestamp: int
    nonce: str
    signature: str
    digest: str


class SignatureAuthenticator(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        store: StateStore,
        audience: str,
        max_skew_seconds: int = 300,
        clock: Callable[[], float] = time.time,
        rate_limits: PartnerRateLimits | None = None,
    ) -> None:
        self._store = store
        self._admissions = Admissions(store)
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._audience = audience
        self._skew = max_skew_seconds
        self._clock = clock
        self._rate_limits = rate_limits
        self._refusals = TokenBucket(_REFUSALS_AUDITED)
        self._refusals_left_out = 0
        self.on_refused: Callable[[str], None] = lambda reason: None  # the gateway counts refusals

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

    # Each call runs in a task of its own, with its own copy of the context: VERIFIED is set for
    # the call and never reset, since a stream may be closed from another context than its own.

    def _unary(self, handler: Any, method: str, service: str) -> grpc.RpcMethodHandler[Any, Any]:
        async def behavior(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            admission = CpuMeter()  # parsing and admitting a call is part of what it costs its partner
            request, verified = await metered(self._admit(handler, raw, method, service, context), admission)
            VERIFIED.set(verified)
            outcome = "OK"
            try:
                if self._rate_limits is None:
                    return await handler.unary_unary(request, context)
                patience = context.time_remaining()
                async with self._rate_limits.turn(verified.partner_id, patience, admission) as meter:
                    return await metered(handler.unary_unary(request, context), meter)
            except Overloaded as overloaded:
                outcome = grpc.StatusCode.RESOURCE_EXHAUSTED.name
                self.on_refused("overloaded")
                await context.abort_with_status(_rate_limited(RateLimited(overloaded.retry_after, queue=True)))
            except BaseException:
                code = context.code()
                outcome = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
                raise
            finally:
                if service in _AUDITED:
                    await self._audit(verified.partner_id, _practice_of(request) or "", method, "", outcome)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=handler.response_serializer
        )

    def _stream(self, handler: Any, method: str, service: str) -> grpc.RpcMethodHandler[Any, Any]:
        async def behavior(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            request, verified = await self._admit(handler, raw, method, service, context)
            VERIFIED.set(verified)
            async for item in handler.unary_stream(request, context):
                yield item

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
                    try:
                        yield handler.request_deserializer(raw) if handler.request_deserializer else raw
                    except DecodeError:  # read by the handler's own tasks: it ends the stream with this
                        raise InvalidArgument("a message is not a valid message for this method") from None

            VERIFIED.set(verified)
            async for item in handler.stream_stream(messages(), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=handler.response_serializer
        )

    async def _audit(self, partner: str, practice: str, method: str, subject: str, outcome: str) -> None:
        entry = (secrets.token_hex(8), int(self._clock()), partner, practice, method, subject, outcome)
        await self._store.run(
            lambda tx: tx.execute(
                "INSERT INTO audit (id, at_s, partner, practice, action, subject, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                entry,
            )
        )

    async def _admit(
        self, handler: Any, raw: bytes, method: str, service: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Any, Verified]:
        """Headers, then the body, then the admission, then the partner's rate; or the call ends."""
        limit = _REQUEST_BYTES.get(service, MAX_PARTNER_REQUEST_BYTES)
        if len(raw) > limit:
            self.on_refused("too_large")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"the request is larger than the {limit} bytes this method takes"
            )
        metadata = tuple(context.invocation_metadata() or ())
        request: Any = None
        try:
            headers = await self._checked_headers(raw, method, metadata)
            self._not_over_rate(headers.key_id)
            try:
                request = handler.request_deserializer(raw) if handler.request_deserializer else raw
            except DecodeError:
                request = None  # said only to a caller whose signature verifies
            partner = await self._admitted(headers, method, service, _practice_of(request) if request else None)
            if request is None:
                self.on_refused("invalid_message")
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message for this method"
                )
            self._within_rate(partner)
        except RateLimited as limited:
            self.on_refused(limited.reason)
            await context.abort_with_status(_rate_limited(limited))
        except Refused as refused:
            self.on_refused(refused.reason)
            await context.abort(refused.code, refused.message)
        return request, Verified(partner, method)

    async def verify(
        self, raw: bytes, method: str, service: str, metadata: tuple[Any, ...], practice: str | None
    ) -> str:
        """The partner who signed the call, or Refused. The HTTP endpoint passes its headers as metadata."""
        try:
            headers = await self._checked_headers(raw, method, metadata)
            partner = await self._admitted(headers, method, service, practice)
            self._within_rate(partner)
        except Refused as refused:
            self.on_refused(refused.reason)
            raise
        return partner

    def _not_over_rate(self, key_id: str) -> None:
        """Refuse at once, before the signature is verified, a call whose partner has no token left:
        a partner that ignores RetryInfo then costs the gateway next to nothing. Nothing is taken
        here, so a stranger naming someone's key id cannot use up their budget."""
        partner = self._admissions.partner_of(key_id)
        if self._rate_limits is not None and partner is not None:
            wait = self._rate_limits.wait(partner)
            if wait > 0:
                raise RateLimited(wait)

    def _within_rate(self, partner: str) -> None:
        """Checked after the signature, so a stranger cannot use up a partner's budget."""
        if self._rate_limits is not None:
            wait = self._rate_limits.take(partner)
            if wait > 0:
                raise RateLimited(wait)

    async def _checked_headers(self, raw: bytes, method: str, metadata: tuple[Any, ...]) -> _Headers:
        """Steps 1-3, which need no key: what fails here is refused before the body is parsed."""
        try:
            return self._headers(raw, metadata)
        except Refused as refused:
            key_id = metadata_value(metadata, KEY_ID_HEADER) or ""
            await self._refused(key_id[:128], method, None, refused)
            raise

    def _headers(self, raw: bytes, metadata: tuple[Any, ...]) -> _Headers:
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
        # ASCII digits of a plausible Unix time: other scripts' digits and huge numbers are not one.
        plausible = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
        if not plausible or abs(int(timestamp) - int(self._clock())) > self._skew:
            raise _unauthenticated(
                f"{TIMESTAMP_HEADER} is not within {self._skew} seconds of the gateway's clock; check your clock"
            )
        key_id, nonce, signature = (
            values[KEY_ID_HEADER] or "",
            values[NONCE_HEADER] or "",
            values[SIGNATURE_HEADER] or "",
        )
        if len(nonce) > 64 or len(key_id) > 128 or len(signature) > 128:
            raise _unauthenticated("x-otv-nonce, x-otv-key-id or x-otv-signature is too long")
        digest = content_hash(raw)
        if values[CONTENT_HEADER] != digest:
            raise _unauthenticated(f"{CONTENT_HEADER} does not match the request; hash the exact bytes you send")
        return _Headers(key_id, int(timestamp), nonce, signature, digest)

    async def _admitted(self, headers: _Headers, method: str, service: str, practice: str | None) -> str:
        """Steps 4-6 and the grant, decided with every call waiting at the moment (admissions.py)."""
        message = canonical_string(
            headers.key_id, self._audience, method, str(headers.timestamp), headers.nonce, headers.digest
        )
        decision = await self._admissions.admit(
            headers.key_id,
            message,
            headers.signature,
            headers.nonce,
            headers.timestamp + self._skew,
            practice,
            service,
        )
        refused: Refused | None = None
        if decision.outcome == "key":
            refused = _unauthenticated(f"{KEY_ID_HEADER} is not an active key of a registered partner")
        elif decision.outcome == "signature":
            refused = _unauthenticated(
                "the signature does not verify: check the key, the audience, the method and the canonical string"
            )
        elif decision.outcome == "replay":
            refused = _unauthenticated("this nonce was already used: sign every call, retries included, afresh")
        elif decision.outcome == "denied":
            refused = Refused(
                grpc.StatusCode.PERMISSION_DENIED, "this partner may not use that service of that practice"
            )
        if refused is not None:
            refused.reason = decision.outcome  # key, signature, replay or denied
            await self._refused(headers.key_id, method, practice, refused, decision.partner)
            raise refused
        return decision.partner

    async def _refused(
        self, key_id: str, method: str, practice: str | None, refused: Refused, partner: str | None = None
    ) -> None:
        """Audit a refusal, up to a rate; the next entry written says how many were left out."""
        if self._refusals.take() > 0:
            self._refusals_left_out += 1
            return
        outcome = refused.code.name
        if self._refusals_left_out:
            outcome += f" (+{self._refusals_left_out} refusals not recorded)"
            self._refusals_left_out = 0
        await self._audit(partner or "", practice or "", method, f"key:{key_id}" if key_id else "", outcome)


def _rate_limited(limited: RateLimited) -> grpc.Status:
    """RESOURCE_EXHAUSTED with google.rpc.RetryInfo: when the partner's next call will be admitted."""
    whole = int(limited.retry_after)
    delay = duration_pb2.Duration(seconds=whole, nanos=int((limited.retry_after - whole) * 1e9))
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=limited.message)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(status)
