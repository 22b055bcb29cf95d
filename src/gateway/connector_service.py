"""ConnectorService over gRPC: accepts a practice's outbound connector (see connectors.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gateway.connectors import ConnectorHub, serve_link
from otv.v1 import connector_service_pb2, connector_service_pb2_grpc
from otv_sdk import conversion as cv
from otv_sdk.errors import OtvError
from otv_sdk.servicers import Identify, abort_for
from otv_sdk.status import error_to_status

__all__ = ["add_connector_servicer"]

log = logging.getLogger("otv.gateway.connectors")


class _ConnectorServicer(connector_service_pb2_grpc.ConnectorServiceServicer):
    def __init__(self, hub: ConnectorHub, identify: Identify) -> None:
        self._hub = hub
        self._identify = identify

    async def Connect(
        self,
        request_iterator: AsyncIterator[connector_service_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[connector_service_pb2.ConnectResponse]:
        try:
            self._identify(context, None)  # who connects was verified with the hello (authentication.py)
            first = await anext(aiter(request_iterator), None)
            if first is None or not first.HasField("hello"):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello: send the hello first")
                return
            practice_id = cv.practice_from_parent(first.hello.parent, "hello.parent")
        except OtvError as error:
            await context.abort_with_status(error_to_status(error))
            return
        if not self._hub.serves(practice_id):
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "this practice is not configured for an outbound connector"
            )
            return
        try:
            link = await self._hub.attach(practice_id)  # with replicas: claimed in the state store
        except Exception as error:  # the store's own errors: the connector retries with back-off
            log.warning("could not register the connector of %s: %s", practice_id, type(error).__name__)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the gateway cannot take the connection now; retry")
            return
        try:
            async for response in serve_link(self._hub, link, request_iterator):
                yield response
        except Exception as error:
            await abort_for(context, "Connect", error)


def add_connector_servicer(server: grpc.aio.Server, hub: ConnectorHub, identify: Identify) -> str:
    connector_service_pb2_grpc.add_ConnectorServiceServicer_to_server(_ConnectorServicer(hub, identify), server)
    return connector_service_pb2.DESCRIPTOR.services_by_name["ConnectorService"].full_name
