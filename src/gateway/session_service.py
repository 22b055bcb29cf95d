"""SessionService: opens otv-session-v1 sessions (docs/security.md, otv_sdk.session_scheme).

The call reaches this handler only signed with otv-ed25519-v1 by an active key (authentication.py
refuses a session-authenticated OpenSession), so a session always stands for one verified key.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from gateway.authentication import VERIFIED
from gateway.sessions import SessionBook, SessionsExhausted, SessionTaken
from otv.v1 import session_service_pb2, session_service_pb2_grpc
from otv_sdk.session_scheme import SESSION_HEADER, is_valid_session_id

__all__ = ["add_session_servicer"]


class _SessionServicer(session_service_pb2_grpc.SessionServiceServicer):
    def __init__(self, sessions: SessionBook | None) -> None:
        self._sessions = sessions

    async def OpenSession(
        self, request: session_service_pb2.OpenSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> session_service_pb2.OpenSessionResponse:
        verified = VERIFIED.get()
        if self._sessions is None or verified is None or not verified.key_id:  # tests' identify hook only
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "this gateway does not authenticate calls: no sessions"
            )
            raise AssertionError("abort raises")
        sessions = self._sessions
        routed = [v for k, v in context.invocation_metadata() or () if k == SESSION_HEADER]
        if routed and routed[0] != request.session_id:  # a load balancer would route it elsewhere
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{SESSION_HEADER}: must equal session_id")
        if not is_valid_session_id(request.session_id):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "session_id: must be 16 random bytes, base64url without padding"
            )
        try:
            opened = sessions.open(verified.partner_id, verified.key_id, request.session_id, request.client_public_key)
        except ValueError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "client_public_key: must be a fresh X25519 public key (32 bytes; not a low-order point)",
            )
        except SessionTaken:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "session_id: is in use; choose another at random")
        except SessionsExhausted:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "this partner holds as many open sessions as it may; reuse one, or wait until one expires",
            )
        expire = timestamp_pb2.Timestamp()
        expire.FromNanoseconds(int(opened.expire_s * 1e9))
        return session_service_pb2.OpenSessionResponse(
            session_id=opened.id,
            server_public_key=opened.server_public_key,
            expire_time=expire,
            replay_window=opened.replay_window,
        )


def add_session_servicer(server: grpc.aio.Server, sessions: SessionBook | None) -> str:
    """`sessions` is None only where calls are not signed (the tests' identify hook)."""
    session_service_pb2_grpc.add_SessionServiceServicer_to_server(_SessionServicer(sessions), server)
    return session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
