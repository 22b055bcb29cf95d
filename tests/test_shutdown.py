"""Graceful shutdown: health turns NOT_SERVING, calls in flight finish, new calls are refused."""

from __future__ import annotations

import asyncio
from datetime import datetime

import fake_adapters
import grpc
import pytest
from conftest import PRACTICE, gateway_config, reference_settings, signer, start_signed
from grpc_health.v1 import health_pb2, health_pb2_grpc

from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.errors import Unavailable
from otv_sdk.models import UTC, Interval

WINDOW = Interval(datetime(2027, 3, 22, tzinfo=UTC), datetime(2027, 3, 29, tzinfo=UTC))


async def test_stop_drains_calls_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_adapters, "SLOW_SECONDS", 0.5)
    entered = asyncio.Event()
    monkeypatch.setattr(fake_adapters, "ENTERED", entered)
    practices = {PRACTICE: {"adapter": {"plugin": "fake_adapters:create_slow", "settings": reference_settings()}}}
    gateway = await start_signed(gateway_config(practices))
    async with (
        PartnerClient.connect(gateway.address, signer=signer()) as client,
        grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(signer())) as raw,
    ):
        watch = health_pb2_grpc.HealthStub(raw).Watch(health_pb2.HealthCheckRequest(), timeout=10)
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.create_task(client.list_busy_times(PRACTICE, WINDOW, timeout=10))
        await asyncio.wait_for(entered.wait(), 5)  # the call is inside the adapter
        stopping = asyncio.create_task(gateway.stop(grace=5))
        update = await asyncio.wait_for(watch.read(), 2)
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        busy = await in_flight
        assert [c.column_id for c in busy] == ["berg", "weber", "prophylaxe"]
        await stopping
        with pytest.raises(Unavailable):
            await client.list_calendars(PRACTICE, timeout=2)
