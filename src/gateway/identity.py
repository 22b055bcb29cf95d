"""Who is calling: attributes each call to a partner for the adapters' technical user.

Until partner authentication lands (signed calls, issue #6) every call is attributed to the
partner `anonymous`; the gateway therefore listens on loopback by default.
"""

from __future__ import annotations

from typing import Any

import grpc

from otv_sdk.ports import CallContext
from otv_sdk.servicers import deadline_of

__all__ = ["ANONYMOUS_PARTNER", "anonymous_identity"]

ANONYMOUS_PARTNER = "anonymous"


def anonymous_identity(context: grpc.aio.ServicerContext[Any, Any], request_id: str | None) -> CallContext:
    return CallContext(partner_id=ANONYMOUS_PARTNER, deadline=deadline_of(context), request_id=request_id)
