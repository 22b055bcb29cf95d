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
import functools
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import DecodeError

from gateway.admissions import Admissions, allows
from gateway.call_headers import SessionHeaders, SignedHeaders, read_headers, refused_key_id
from gateway.rate_limits import CpuMeter, Overloaded, PartnerRateLimits, Rate, TokenBucket, _Turn, metered
from gateway.refusals import RateLimited, Refused, refusal_status, unauthenticated
from gateway.sessions import SessionBook
from gateway.state_store import StateStore
from otv_sdk.call_metadata import call_metadata, remember
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import MAX_PARTNER_REQUEST_BYTES, MAX_REQUEST_BYTES
from otv_sdk.resources import is_valid_practice_id
from otv_sdk.session_scheme import SESSION_HEADER
from otv_sdk.session_scheme import canonical_string as session_canonical
from otv_sdk.signing import KEY_ID_HEADER, canonical_string

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
    "otv.v1.SessionService": "session",
}
# Services whose calls read or change personal data, and so are audited.
_AUDITED = frozenset({"writer", "patient_lookup", "consent", "session"})
# The PVS's services carry calendars; a partner's requests are small (limits.py).
_REQUEST_BYTES = {"snapshot": MAX_REQUEST_BYTES, "connector": MAX_REQUEST_BYTES}
# Refused calls recorded in the audit: enough to see an attack, not enough to fill the store.
_REFUSALS_AUDITED = Rate(per_second=5, burst=50)
# What a client reads in google.rpc.ErrorInfo to open a new session and send the call again.
SESSION_UNKNOWN = "SESSION_UNKNOWN"


class Verified(NamedTuple):
    """Who a call was verified to come from (a tuple: made on every call)."""

    partner_id: str
    method: str
    key_id: str = ""  # the signing key of an otv-ed25519-v1 call (a session is opened for it)


# Set for the duration of a verified call; read by the gateway's Identify.
VERIFIED: contextvars.ContextVar[Verified | None] = contextvars.ContextVar("otv_verified", default=None)


def _practice_of(request: Any) -> str | None:
    """The practice a request addresses, if its name or parent is well formed (else the handler says so)."""
    hello = getattr(request, "hello", None)  # a connector's first message
    name = getattr(request, "parent", "") or getattr(request, "name", "") or getattr(hello, "parent", "")
    return _practice_of_name(name) if isinstance(name, str) else None


@functools.lru_cache(maxsize=4096)  # the same few names come again and again; callers choose them: bounded
def _practice_of_name(name: str) -> str | None:
    parts = name.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "practices" and is_valid_practice_id(parts[1]) else None


@dataclass(slots=True)
class _TurnHeld:
    """The partner's turn a call took, if it took one (rate_limits.PartnerRateLimits.turn)."""

    turn: _Turn | None = None


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
        self.sessions = SessionBook(audience, clock)
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
        remember(handler_call_details.invocation_metadata)  # decoded once for every interceptor (call_metadata.py)
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
            # One meter for admitting and serving the call: both are what it costs its partner. The
            # partner is charged once the meter stopped, so the call's last step counts too.
            meter, turn = CpuMeter(), _TurnHeld()
            try:
                return await metered(self._serve(handler, raw, method, service, context, meter, turn), meter)
            finally:
                if turn.turn is not None:
                    turn.turn.end()

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=handler.response_serializer
        )

    async def _serve(
        self,
        handler: Any,
        raw: bytes,
        method: str,
        service: str,
        context: grpc.aio.ServicerContext[Any, Any],
        meter: CpuMeter,
        held: _TurnHeld,
    ) -> Any:
        request, verified = await self._admit(handler, raw, method, service, context)
        VERIFIED.set(verified)
        outcome = "OK"
        try:
            if self._rate_limits is not None:
                held.turn = self._rate_limits.turn(verified.partner_id, context.time_remaining(), meter)
                try:
                    await held.turn.begin()
                except BaseException:
                    held.turn = None
                    raise
            return await handler.unary_unary(request, context)
        except Overloaded as overloaded:
            outcome = grpc.StatusCode.RESOURCE_EXHAUSTED.name
            self.on_refused("overloaded")
            await context.abort_with_status(refusal_status(RateLimited(overloaded.retry_after, queue=True)))
        except BaseException:
            code = context.code()
            outcome = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
            raise
        finally:
            if service in _AUDITED:
                await self._audit(verified.partner_id, _practice_of(request) or "", method, "", outcome)

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
        metadata = call_metadata(context)
        request: Any = None
        try:
            try:
                headers = read_headers(raw, metadata, self._clock(), self._skew)
            except Refused as refused:  # form, time and body hash: before the body is parsed
                await self._refused(refused_key_id(metadata), method, None, refused)
                raise
            if isinstance(headers, SignedHeaders):  # a MAC costs less than this check: sessions skip it
                self._not_over_rate(headers)
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
        except Refused as refused:
            self.on_refused(refused.reason)
            await context.abort_with_status(refusal_status(refused))
        return request, Verified(partner, method, headers.key_id if isinstance(headers, SignedHeaders) else "")

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

    def _not_over_rate(self, headers: SignedHeaders | SessionHeaders) -> None:
        """Refuse at once, before the signature is verified, a call whose partner has no token left:
        a partner that ignores RetryInfo then costs the gateway next to nothing. Nothing is taken
        here, so a stranger naming someone's key id or session cannot use up their budget."""
        if self._rate_limits is None:
            return
        if isinstance(headers, SessionHeaders):
            session = self.sessions.get(headers.session_id)
            partner = None if session is None else session.partner
        else:
            partner = self._admissions.partner_of(headers.key_id)
        if partner is not None:
            wait = self._rate_limits.wait(partner)
            if wait > 0:
                raise RateLimited(wait)

    def _within_rate(self, partner: str) -> None:
        """Checked after the signature, so a stranger cannot use up a partner's budget."""
        if self._rate_limits is not None:
            wait = self._rate_limits.take(partner)
            if wait > 0:
                raise RateLimited(wait)

    async def _checked_headers(
        self, raw: bytes, method: str, metadata: tuple[Any, ...]
    ) -> SignedHeaders | SessionHeaders:
        """Form, time and body hash, which need no key: what fails here is refused before the body is parsed."""
        try:
            return read_headers(raw, metadata, self._clock(), self._skew)
        except Refused as refused:
            await self._refused(refused_key_id(metadata), method, None, refused)
            raise

    async def _admitted(
        self, headers: SignedHeaders | SessionHeaders, method: str, service: str, practice: str | None
    ) -> str:
        if isinstance(headers, SessionHeaders):
            return await self._session_admitted(headers, method, service, practice)
        return await self._signed_admitted(headers, method, service, practice)

    async def _session_admitted(self, headers: SessionHeaders, method: str, service: str, practice: str | None) -> str:
        """An otv-session-v1 call: the session is this replica's, the MAC verifies, the sequence number
        is new, the session's key is still active and the partner holds the grant; all in memory."""
        refused: Refused | None = None
        session = self.sessions.get(headers.session_id)
        partner = "" if session is None else session.partner
        key_id = "" if session is None else session.key_id
        if service == "session":
            refused = unauthenticated("open a session with a call signed by otv-ed25519-v1, not with a session", "key")
        elif session is None:
            refused = unauthenticated(
                f"{SESSION_HEADER} names no open session of this gateway (expired, or opened elsewhere): open one",
                "session",
                SESSION_UNKNOWN,
            )
        else:
            canonical = session_canonical(
                headers.session_id,
                self._audience,
                method,
                str(headers.timestamp),
                str(headers.sequence),
                headers.digest,
            )
            if not hmac.compare_digest(session.mac(canonical), headers.mac):
                refused = unauthenticated(
                    "the MAC does not verify: check the session key, the audience, the method and the canonical string",
                    "signature",
                )
            else:
                registry = self._admissions.fresh() or await self._admissions.current()
                key = registry.keys.get(session.key_id)
                if key is None or key.revoked or key.partner != session.partner:
                    self.sessions.close(session.id)
                    refused = unauthenticated(
                        "the key this session was opened with is no longer active", "key", SESSION_UNKNOWN
                    )
                elif not session.window.accept(headers.sequence):
                    refused = unauthenticated(
                        "this sequence number was used already or is too old: give every call, retries too, a new one",
                        "replay",
                    )
                elif not allows(registry, session.partner, practice, service):
                    refused = Refused(
                        grpc.StatusCode.PERMISSION_DENIED,
                        "this partner may not use that service of that practice",
                        "denied",
                    )
        if refused is not None:
            await self._refused(f"session:{key_id}" if key_id else "", method, practice, refused, partner)
            raise refused
        return partner

    async def _signed_admitted(self, headers: SignedHeaders, method: str, service: str, practice: str | None) -> str:
        """An otv-ed25519-v1 call: key, signature, nonce and grant, decided with every call waiting at
        the moment (admissions.py)."""
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
            refused = unauthenticated(f"{KEY_ID_HEADER} is not an active key of a registered partner")
        elif decision.outcome == "signature":
            refused = unauthenticated(
                "the signature does not verify: check the key, the audience, the method and the canonical string"
            )
        elif decision.outcome == "replay":
            refused = unauthenticated("this nonce was already used: sign every call, retries included, afresh")
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
        subject = key_id if key_id.startswith("session:") else f"key:{key_id}" if key_id else ""
        await self._audit(partner or "", practice or "", method, subject, outcome)
