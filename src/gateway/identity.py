"""Who is calling: the partner whose signature the authentication interceptor verified.

The partner id is the technical user adapters act for, so the PVS can record who did what.
"""

from __future__ import annotations

from typing import Any

import grpc

from gateway.authentication import VERIFIED
from otv_sdk.errors import Unauthenticated
from otv_sdk.ports import CallContext
from otv_sdk.servicers import deadline_of

__all__ = ["signed_identity"]


def signed_identity(context: grpc.aio.ServicerContext[Any, Any], request_id: str | None) -> CallContext:
    verified = VERIFIED.get()
    if verified is None:  # only reachable if the interceptor was not installed
        raise Unauthenticated("the call was not verified")
    return CallContext(partner_id=verified.partner_id, deadline=deadline_of(context), request_id=request_id)
