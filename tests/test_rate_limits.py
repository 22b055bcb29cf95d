"""What one partner may ask of a replica: calls per second, calls at once, and a share of its time.

The rules are checked on `PartnerRateLimits` directly (a fake clock where time matters), and once
through the real gRPC stack: a partner over its share is slowed, then refused with RetryInfo,
while another partner is served at once.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from conftest import (
    AUDIENCE,
    KEY_ID,
    PARTNER_ID,
    PRIVATE_KEY,
    gateway_config,
    reference_settings,
    register_other_partner,
    start_signed,
)
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.config import RateLimitConfig
from gateway.rate_limits import CpuMeter, Overloaded, PartnerRateLimits, Rate, TokenBucket, WorkBudget, metered
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc
from otv_sdk.client import signing_interceptors
from otv_sdk.signing import Signer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_says_when_the_next_token_is_back() -> None:
    clock = Clock()
    bucket = TokenBucket(Rate(per_second=4, burst=3), clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.wait() == pytest.approx(0.25)
    assert bucket.take() == pytest.approx(0.25)  # nothing taken by a refusal
    clock.now += 0.25
    assert bucket.take() == 0
    assert bucket.wait() == pytest.approx(0.25)


def test_a_work_budget_is_charged_time_and_refills_at_the_share() -> None:
    clock = Clock()
    budget = WorkBudget(share=0.25, burst=1.0, clock=clock)
    budget.charge(1.5)  # a call that took 1.5 s of CPU: 0.5 s overdrawn
    assert budget.debt_seconds() == pytest.approx(2.0)  # 0.5 s at 0.25 s per second
    clock.now += 1.0
    assert budget.debt_seconds() == pytest.approx(1.0)
    clock.now += 100
    assert budget.debt_seconds() == 0
    budget.charge(1.0)  # refilled only up to the burst: exactly used up, not overdrawn
    assert budget.debt_seconds() == 0


async def test_calls_beyond_the_concurrency_wait_their_turn_in_order() -> None:
    limits = PartnerRateLimits(Rate(per_second=100, burst=100, concurrent=2, queued=10))
    order: list[int] = []
    release = asyncio.Event()

    async def call(number: int) -> None:
        async with limits.turn("alpha"):
            order.append(number)
            await release.wait()

    tasks = [asyncio.create_task(call(n)) for n in range(5)]
    await asyncio.sleep(0.05)
    assert order == [0, 1]  # two at once; the others wait
    async with limits.turn("beta"):  # another partner is not in alpha's queue
        order.append(99)
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 99, 2, 3, 4]


async def test_a_full_queue_refuses_at_once() -> None:
    limits = PartnerRateLimits(Rate(per_second=100, burst=100, concurrent=1, queued=1))
    release = asyncio.Event()

    async def call() -> None:
        async with limits.turn("alpha"):
            await release.wait()

    running, waiting = asyncio.create_task(call()), asyncio.create_task(call())
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded):
        async with limits.turn("alpha"):
            pass
    release.set()
    await asyncio.gather(running, waiting)


async def busy(seconds: float) -> None:
    """CPU work on the loop's thread, in two steps."""
    for _ in range(2):
        began = time.thread_time()
        while time.thread_time() - began < seconds / 2:
            pass
        await asyncio.sleep(0)


async def test_a_call_is_charged_its_cpu_not_the_time_it_waits() -> None:
    meter = CpuMeter()
    await metered(asyncio.sleep(0.2), meter)
    assert meter.seconds < 0.05  # waiting (for a remote PVS, say) costs the replica nothing
    await metered(busy(0.1), meter)
    assert 0.09 < meter.seconds < 0.2


async def test_a_partner_over_its_share_waits_for_it_then_is_refused_once_patience_runs_out() -> None:
    limits = PartnerRateLimits(Rate(per_second=100, burst=100, share=1.0, share_burst=0.01))
    async with limits.turn("alpha") as meter:
        await metered(busy(0.2), meter)  # charged about 0.2 s: about 0.19 s overdrawn at 1 s per second
    began = time.monotonic()
    async with limits.turn("alpha"):
        waited = time.monotonic() - began
    assert waited >= 0.15
    async with limits.turn("alpha") as meter:
        await metered(busy(0.5), meter)
    began = time.monotonic()
    with pytest.raises(Overloaded) as refused:
        async with limits.turn("alpha", patience=0.2):
            pass
    assert time.monotonic() - began >= 0.14  # it waited what it could before being refused
    assert 0.2 < refused.value.retry_after < 0.5
    began = time.monotonic()
    async with limits.turn("beta"):
        assert time.monotonic() - began < 0.1  # another partner's share is its own


async def test_through_grpc_a_partner_over_its_share_gets_retry_info_and_others_are_served() -> None:
    practices = {"demo": {"adapter": {"plugin": "reference", "settings": reference_settings()}}}
    config = gateway_config(practices)
    greedy = RateLimitConfig(per_second=1000, burst=1000, share=0.001, share_burst=0.0001)
    config = config.model_copy(
        update={"gateway": config.gateway.model_copy(update={"partner_rate_limits": {PARTNER_ID: greedy}})}
    )
    gateway = await start_signed(config)
    try:
        theirs = register_other_partner(gateway)
        request = reader_service_pb2.ListCalendarsRequest(parent="practices/demo")
        mine = Signer(KEY_ID, PRIVATE_KEY, AUDIENCE)
        async with (
            grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(mine)) as greedy_channel,
            grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(theirs)) as other_channel,
        ):
            stub = reader_service_pb2_grpc.ReaderServiceStub(greedy_channel)
            await stub.ListCalendars(request, timeout=5)  # uses up the tiny share for a while
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListCalendars(request, timeout=0.5)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            status = rpc_status.from_call(refused.value)
            assert status is not None
            retry = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(retry)
            assert retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9 > 0
            other = reader_service_pb2_grpc.ReaderServiceStub(other_channel)
            began = time.monotonic()
            await other.ListCalendars(request, timeout=5)
            assert time.monotonic() - began < 1.0  # not behind the greedy partner
    finally:
        await gateway.stop(0)
