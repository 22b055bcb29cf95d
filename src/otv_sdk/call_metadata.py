"""A call's invocation metadata, decoded once and shared by every interceptor and its handler.

`context.invocation_metadata()` builds the metadata anew at every use (a tuple of every key and
value, decoded): some 40,000 instructions a call. grpc.aio hands it to each interceptor already
decoded, and interceptors and handler run in the call's own task, so the first interceptor to see
it keeps it in a context variable for the rest (the gateway's authentication, tracing, metrics).
One variable for all of them, so a call never carries two copies that could disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, cast

import grpc

__all__ = ["Metadata", "call_metadata", "remember"]

Metadata = Sequence[tuple[str, str | bytes]]

_METADATA: ContextVar[Metadata | None] = ContextVar("otv_call_metadata", default=None)


def remember(metadata: Metadata | None) -> None:
    """Keep the metadata an interceptor was handed for the call this task serves."""
    _METADATA.set(metadata)


def call_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> Metadata:
    """The call's invocation metadata: what an interceptor kept, else decoded from `context`."""
    metadata = _METADATA.get()
    if metadata is None:
        return cast(Metadata, context.invocation_metadata() or ())
    return metadata
