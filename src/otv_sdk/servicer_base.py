"""What every servicer of the contract shares: who calls (`Identify`), which adapter serves the
practice (`AdapterResolver`), the caller's deadline, request ids, and one way to turn any failure
into a clear status.

The gateway and a vendor's remote adapter server both expose the same contract; they differ only
in how a call is attributed to a partner and how a practice id becomes an `Adapter`. An adapter
that raises something unexpected produces INTERNAL with an error id, and its message is not logged
(it may hold personal data).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeAlias, TypeVar

import grpc

from otv_sdk.errors import InvalidArgument, OtvError, Unimplemented
from otv_sdk.freshness import DATA_AGE_METADATA_KEY, collect_data_age
from otv_sdk.limits import MAX_REQUEST_ID
from otv_sdk.ports import (
    Adapter,
    CallContext,
)
from otv_sdk.status import error_to_status

__all__ = [
    "AdapterResolver",
    "Identify",
    "ServicerBase",
    "abort_for",
    "deadline_of",
    "need_port",
    "validate_request_id",
]

log = logging.getLogger("otv.servicers")

T = TypeVar("T")
_ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AdapterResolver(Protocol):
    """Finds the adapter for a practice; raises NotFound (or PermissionDenied) naming `field`."""

    async def resolve(self, practice_id: str, ctx: CallContext, field: str) -> Adapter: ...


class Identify(Protocol):
    """Attributes a call to a partner; raises Unauthenticated if it cannot."""

    def __call__(self, context: _ServicerContext, request_id: str | None) -> CallContext: ...


def deadline_of(context: _ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def validate_request_id(value: str) -> str:
    """The idempotency key of a mutating request, or INVALID_ARGUMENT naming `request_id`."""
    if not value:
        raise InvalidArgument.field("request_id", "is required on every mutating request")
    if len(value) > MAX_REQUEST_ID or not value.isascii() or not value.isprintable():
        raise InvalidArgument.field("request_id", f"must be 1-{MAX_REQUEST_ID} printable ASCII characters")
    return value


async def abort_for(context: _ServicerContext, method: str, error: Exception) -> NoReturn:
    """End the call with the status `error` stands for; never with the exception's own text.

    Typed errors keep their code and message; a timeout is DEADLINE_EXCEEDED; anything else is a
    bug on the server's side (INTERNAL with an error id), logged without its message, which may
    hold personal data."""
    if isinstance(error, OtvError):
        await context.abort_with_status(error_to_status(error))
    if isinstance(error, TimeoutError):
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the practice system did not answer in time")
    error_id = secrets.token_hex(6)
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("unexpected %s in %s (error id %s)\n%s", type(error).__name__, method, error_id, frames)
    await context.abort(grpc.StatusCode.INTERNAL, f"the practice system failed to answer (error id {error_id})")
    raise AssertionError("abort always raises")  # pragma: no cover


class ServicerBase:
    """Runs one call: who is calling, its deadline, and errors turned into rich statuses. The
    gateway's own services (snapshot uploads, connectors) are built on it too."""

    def __init__(self, resolver: AdapterResolver, identify: Identify) -> None:
        self._resolver = resolver
        self._identify = identify

    async def _run(
        self,
        context: _ServicerContext,
        method: str,
        handler: Callable[[CallContext], Awaitable[T]],
        request_id: str | None = None,
    ) -> T:
        """Run handler with the caller's context; request_id is given (maybe empty) for mutations."""
        try:
            ctx = self._identify(context, None if request_id is None else validate_request_id(request_id))
            with collect_data_age() as age:
                async with asyncio.timeout(ctx.time_remaining()):
                    result = await handler(ctx)
            if age.seconds is not None:  # answered from a last known state, not live (freshness.py)
                context.set_trailing_metadata(((DATA_AGE_METADATA_KEY, str(int(age.seconds))),))
            return result
        except Exception as error:
            await abort_for(context, method, error)
        raise AssertionError("abort always raises")  # pragma: no cover

    async def _adapter(self, practice_id: str, ctx: CallContext, field: str) -> Adapter:
        return await self._resolver.resolve(practice_id, ctx, field)


def need_port(port: T | None, what: str) -> T:
    if port is None:
        raise Unimplemented(f"this practice's PVS adapter does not support {what}")
    return port
