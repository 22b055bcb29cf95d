"""An adapter's failure becomes a clear status and never takes the gateway down."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime

import fake_adapters
import pytest
from conftest import PRACTICE, gateway_config, reference_settings, signer, start_signed

from gateway.app import Gateway
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.errors import DeadlineExceeded, FailedPrecondition, InternalError, Unavailable
from otv_sdk.models import UTC, Interval

WINDOW = Interval(datetime(2027, 3, 22, tzinfo=UTC), datetime(2027, 3, 29, tzinfo=UTC))


async def _start(transport: str, factory: str) -> AsyncIterator[Gateway]:
    if transport == "in_process":
        practices = {PRACTICE: {"adapter": {"plugin": f"fake_adapters:{factory}", "settings": reference_settings()}}}
        gateway = await start_signed(gateway_config(practices))
        yield gateway
        await gateway.stop(0)
        return
    adapter = getattr(fake_adapters, factory)(PRACTICE, reference_settings())
    remote = await serve_adapters({PRACTICE: adapter})
    practices = {PRACTICE: {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}}}
    gateway = await start_signed(gateway_config(practices))
    yield gateway
    await gateway.stop(0)
    await remote.stop(0)


@pytest.fixture(params=["in_process", "remote"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_unexpected_exception_is_internal_without_personal_data(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async for gateway in _start(transport, "create_exploding"):
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            with pytest.raises(InternalError) as caught:
                await client.list_busy_times(PRACTICE, WINDOW)
            assert "error id" in caught.value.message
            assert fake_adapters.LEAKED_NAME not in caught.value.message
            # The gateway is still up and other calls of the same adapter still work.
            calendar = await client.list_calendars(PRACTICE)
            assert calendar.columns
    assert "RuntimeError" in caplog.text
    assert fake_adapters.LEAKED_NAME not in caplog.text


async def test_typed_adapter_errors_pass_through_unchanged(transport: str) -> None:
    async for gateway in _start(transport, "create_refusing"):
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            with pytest.raises(FailedPrecondition, match="online absences"):
                await client.list_absences(PRACTICE, WINDOW)


async def test_deadline_reaches_the_adapter_and_a_slow_one_is_cut_off(transport: str) -> None:
    fake_adapters.OBSERVED_REMAINING.clear()
    async for gateway in _start(transport, "create_slow"):
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            with pytest.raises(DeadlineExceeded):
                await client.list_busy_times(PRACTICE, WINDOW, timeout=0.5)
            # The gateway stays responsive after the abandoned call.
            assert (await client.list_calendars(PRACTICE, timeout=5)).columns
    (remaining,) = fake_adapters.OBSERVED_REMAINING
    assert remaining is not None
    assert 0 < remaining <= 0.51  # gRPC's propagated deadline may read a few microseconds above the client's


async def test_unreachable_remote_adapter_is_unavailable() -> None:
    # Bind and release a port so nothing listens there.
    remote = await serve_adapters({})
    port = remote.port
    await remote.stop(0)
    practices = {PRACTICE: {"adapter": {"remote": {"address": f"127.0.0.1:{port}"}}}}
    gateway = await start_signed(gateway_config(practices))
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            with pytest.raises(Unavailable, match="cannot be reached"):
                await client.list_calendars(PRACTICE, timeout=5)
    finally:
        await gateway.stop(0)


async def test_remote_that_does_not_serve_the_practice_is_a_gateway_fault() -> None:
    remote = await serve_adapters({"other": fake_adapters.create_refusing("other", reference_settings())})
    practices = {PRACTICE: {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}}}
    gateway = await start_signed(gateway_config(practices))
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            with pytest.raises(InternalError, match="does not serve the configured practice"):
                await client.list_calendars(PRACTICE, timeout=5)
    finally:
        await gateway.stop(0)
        await remote.stop(0)


async def test_remote_practice_id_can_differ_from_the_gateway_id() -> None:
    remote = await serve_adapters({"praxis-7": fake_adapters.create_refusing("praxis-7", reference_settings())})
    practices = {"nord": {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}", "practice": "praxis-7"}}}}
    gateway = await start_signed(gateway_config(practices))
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            busy = await client.list_busy_times("nord", WINDOW, ["berg"])
            assert busy[0].column_id == "berg"
            assert busy[0].intervals
    finally:
        await gateway.stop(0)
        await remote.stop(0)
