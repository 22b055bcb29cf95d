"""Calls that may not proceed, and the gRPC status each gets.

Kept apart from the interceptor so the HTTP endpoint, the header checks and the session checks
raise the same refusals and the same status reaches every transport.
"""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = ["ERROR_DOMAIN", "RateLimited", "Refused", "refusal_status", "unauthenticated"]

# google.rpc.ErrorInfo.domain of the reasons a client acts on (SESSION_UNKNOWN: open a new session).
ERROR_DOMAIN = "otv.dev"


class Refused(Exception):
    """A call that may not proceed, with the status it gets (HTTP maps the code to its own).

    `reason` labels otv_refused_calls_total (metrics.py); `error_reason`, when set, travels as a
    google.rpc.ErrorInfo so that a client can act on it without parsing the message."""

    def __init__(
        self, code: grpc.StatusCode, message: str, reason: str = "unsigned", error_reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.error_reason = error_reason


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


def unauthenticated(message: str, reason: str = "unsigned", error_reason: str | None = None) -> Refused:
    return Refused(grpc.StatusCode.UNAUTHENTICATED, message, reason, error_reason)


def refusal_status(refused: Refused) -> grpc.Status:
    """The status with its details: RetryInfo (when the next call is admitted) or ErrorInfo."""
    status = status_pb2.Status(code=refused.code.value[0], message=refused.message)
    if isinstance(refused, RateLimited):
        whole = int(refused.retry_after)
        delay = duration_pb2.Duration(seconds=whole, nanos=int((refused.retry_after - whole) * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    elif refused.error_reason is not None:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=refused.error_reason, domain=ERROR_DOMAIN))
    return rpc_status.to_status(status)
