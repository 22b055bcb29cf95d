"""Errors that domain code raises and the transport edge turns into gRPC statuses.

They carry a code from `ErrorCode` rather than a gRPC status so adapters and the engine stay free
of gRPC; `status.py` does the mapping, including the google.rpc.BadRequest field violations that
tell a partner exactly which field was wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Aborted",
    "DeadlineExceeded",
    "ErrorCode",
    "FailedPrecondition",
    "FieldViolation",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "OtvError",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]


class ErrorCode(enum.Enum):
    """Mirrors the canonical gRPC codes the contract uses."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One wrong field: a dotted path in the request (`window.end_time`) and why."""

    field: str
    description: str


class OtvError(Exception):
    """Base of every error with a defined status. Messages must never contain personal data."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = tuple(violations)


class InvalidArgument(OtvError):
    code = ErrorCode.INVALID_ARGUMENT

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """The common case: one field is wrong."""
        return cls(f"{field}: {description}", violations=[FieldViolation(field, description)])


class NotFound(OtvError):
    code = ErrorCode.NOT_FOUND

    @classmethod
    def field(cls, field: str, description: str) -> NotFound:
        return cls(f"{field}: {description}", violations=[FieldViolation(field, description)])


class FailedPrecondition(OtvError):
    code = ErrorCode.FAILED_PRECONDITION


class Aborted(OtvError):
    code = ErrorCode.ABORTED


class PermissionDenied(OtvError):
    code = ErrorCode.PERMISSION_DENIED


class Unauthenticated(OtvError):
    code = ErrorCode.UNAUTHENTICATED


class Unavailable(OtvError):
    code = ErrorCode.UNAVAILABLE


class Unimplemented(OtvError):
    code = ErrorCode.UNIMPLEMENTED


class DeadlineExceeded(OtvError):
    code = ErrorCode.DEADLINE_EXCEEDED


class InternalError(OtvError):
    """The server side broke (an adapter bug, a malformed response); never the caller's fault."""

    code = ErrorCode.INTERNAL
