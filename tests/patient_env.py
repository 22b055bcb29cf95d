"""A reference practice behind a real gateway, reachable as several partners (for patient tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import fake_adapters
import grpc
from conftest import PRACTICE, SECRET, gateway_config, reference_settings

from gateway.app import Gateway
from gateway.patient_ids import PatientIdScope
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.ports import CallContext
from otv_sdk.reference import create_adapter
from otv_sdk.reference.patients import ReferencePatients, ReferencePractice
from otv_sdk.servicers import deadline_of

PARTNER_HEADER = "x-test-partner"


def header_identity(context: grpc.aio.ServicerContext[Any, Any], request_id: str | None) -> CallContext:
    """Test-only: the partner named in a header. Real gateways authenticate partners."""
    partner = dict(context.invocation_metadata() or ()).get(PARTNER_HEADER, "alpha")
    return CallContext(partner_id=str(partner), deadline=deadline_of(context), request_id=request_id)


def as_partner(partner: str) -> list[tuple[str, str]]:
    return [(PARTNER_HEADER, partner)]


@dataclass
class PatientEnv:
    client: PartnerClient
    practice: ReferencePractice
    scope: PatientIdScope
    address: str

    def pvs_id(self, partner: str, scoped_id: str) -> str | None:
        return self.scope.from_partner(partner, scoped_id)


@asynccontextmanager
async def patient_env(transport: str) -> AsyncIterator[PatientEnv]:
    adapter = create_adapter(PRACTICE, reference_settings())
    practice = cast(ReferencePatients, adapter.patients).practice
    remote: AdapterServer | None = None
    if transport == "in_process":
        fake_adapters.SHARED[PRACTICE] = adapter
        config = gateway_config({PRACTICE: {"adapter": {"plugin": "fake_adapters:shared"}}})
    else:
        remote = await serve_adapters({PRACTICE: adapter})
        config = gateway_config({PRACTICE: {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}}})
    gateway = await Gateway.start(config, identify=header_identity)
    try:
        async with PartnerClient.connect(gateway.address) as client:
            yield PatientEnv(client, practice, PatientIdScope(bytes.fromhex(SECRET)), gateway.address)
    finally:
        await gateway.stop(0)
        if remote is not None:
            await remote.stop(0)
        fake_adapters.SHARED.pop(PRACTICE, None)
