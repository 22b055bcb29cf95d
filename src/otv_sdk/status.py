"""gRPC status <-> `OtvError`, with the rich error model.

Field violations travel as google.rpc.BadRequest in the `grpc-status-details-bin` trailer, so a
partner in any language can see which field was wrong; the Python client turns them back into
the same `OtvError` subclasses adapters raise.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from otv_sdk.errors import (
    Aborted,
    DeadlineExceeded,
    ErrorCode,
    FailedPrecondition,
    FieldViolation,
    InternalError,
    InvalidArgument,
    NotFound,
    OtvError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = ["error_from_rpc_error", "error_to_status"]

_ERROR_TYPES: dict[grpc.StatusCode, type[OtvError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def _grpc_code(code: ErrorCode) -> grpc.StatusCode:
    return grpc.StatusCode[code.value]


def error_to_status(error: OtvError) -> grpc.Status:
    code = _grpc_code(error.code)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if error.violations:
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)


def error_from_rpc_error(error: grpc.aio.AioRpcError) -> OtvError:
    """Rebuild the typed error from a failed call, keeping field violations."""
    code = error.code()
    message = error.details() or code.name
    violations: list[FieldViolation] = []
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is not None:
        for any_detail in status.details:
            if any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                any_detail.Unpack(bad_request)
                violations.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    error_type = _ERROR_TYPES.get(code, InternalError)
    return error_type(message, violations=violations)
