"""Shared fixtures: a reference practice, and a real gateway on loopback in front of it.

`gateway_target` is parametrised over the two transports of the adapter port, so every test that
uses it runs once with the reference adapter in-process and once behind a remote adapter server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import grpc
import pytest

from gateway.app import Gateway
from gateway.config import GatewayConfig, parse_config
from gateway.partners import PartnerRegistry
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer, generate_key_pair

# A Monday one week before the spring daylight-saving switch (Sunday 2027-03-28), so the demo
# data spans it. Fixed, so every run sees the same calendar.
ANCHOR = date(2027, 3, 22)
PRACTICE = "demo"


def reference_settings(**overrides: Any) -> dict[str, Any]:
    return {"database": ":memory:", "demo": True, "demo_anchor": ANCHOR.isoformat(), **overrides}


# A fixed test secret, so partner-scoped ids are stable within and across test gateways.
SECRET = "5e" * 48
# The partner the shared fixtures call as, with a key made once per test run.
PARTNER_ID = "test-partner"
KEY_ID = "test-partner-1"
PRIVATE_KEY, PUBLIC_KEY = generate_key_pair()
AUDIENCE = "otv"


def signer() -> Signer:
    return Signer(KEY_ID, PRIVATE_KEY, AUDIENCE)


def register_test_partner(gateway: Gateway) -> None:
    """Register the test partner's key and grant it every service of every practice."""
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner(PARTNER_ID)
    if KEY_ID not in {k.key_id for k in registry.list_keys()}:
        registry.add_key(PARTNER_ID, KEY_ID, PUBLIC_KEY)
    for practice_id in gateway.router.practice_ids:
        registry.grant(PARTNER_ID, practice_id)


def register_other_partner(gateway: Gateway, partner_id: str = "other-partner") -> Signer:
    """A second partner with its own key, granted every partner service of every practice."""
    private, public = generate_key_pair()
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner(partner_id)
    registry.add_key(partner_id, f"{partner_id}-1", public)
    for practice_id in gateway.router.practice_ids:
        registry.grant(partner_id, practice_id)
    return Signer(f"{partner_id}-1", private, AUDIENCE)


async def start_signed(config: GatewayConfig) -> Gateway:
    gateway = await Gateway.start(config)
    register_test_partner(gateway)
    return gateway


def gateway_config(practices: dict[str, Any]) -> GatewayConfig:
    return parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "shutdown_grace_seconds": 0,
                "secret_key": SECRET,
                "state_store": "sqlite://:memory:",
            },
            "practices": practices,
        }
    )


@pytest.fixture
async def adapter_server() -> AsyncIterator[AdapterServer]:
    server = await serve_adapters({PRACTICE: create_adapter(PRACTICE, reference_settings())})
    yield server
    await server.stop(0)


@pytest.fixture(params=["in_process", "remote"])
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    """A gateway serving practice 'demo' through the reference adapter, in either transport."""
    if request.param == "in_process":
        practices = {PRACTICE: {"adapter": {"plugin": "reference", "settings": reference_settings()}}}
        started = await start_signed(gateway_config(practices))
        yield started
        await started.stop(0)
        return
    remote = await serve_adapters({PRACTICE: create_adapter(PRACTICE, reference_settings())})
    practices = {PRACTICE: {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}}}
    started = await start_signed(gateway_config(practices))
    yield started
    await started.stop(0)
    await remote.stop(0)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[PartnerClient]:
    async with PartnerClient.connect(gateway.address, signer=signer()) as partner:
        yield partner


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    """A raw channel, for requests the typed client would never build."""
    async with grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(signer())) as raw:
        yield raw
