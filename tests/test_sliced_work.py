"""The lane that runs heavy computations in slices: one slice per turn of the loop, results and
errors as if run in one piece, the caller's partner charged, cancelled callers dropped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator

import pytest

from gateway.rate_limits import CURRENT_METER, CpuMeter
from gateway.sliced_work import run_sliced

STEP_SECONDS = 0.0004
SLICE = 0.001


def busy(seconds: float) -> None:
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends:
        pass


def heavy(name: str, steps: int, log: list[str]) -> Generator[None, None, str]:
    for _ in range(steps):
        busy(STEP_SECONDS)
        log.append(name)
        yield
    return f"{name} done"


async def test_returns_the_value_after_every_step() -> None:
    log: list[str] = []
    assert await run_sliced(heavy("a", 7, log), SLICE) == "a done"
    assert log == ["a"] * 7


async def test_an_error_reaches_the_caller() -> None:
    def failing() -> Generator[None, None, int]:
        yield
        raise ValueError("bad window")

    with pytest.raises(ValueError, match="bad window"):
        await run_sliced(failing(), SLICE)


async def test_one_slice_per_turn_with_light_work_in_between() -> None:
    log: list[str] = []
    stop = asyncio.Event()

    async def light() -> None:
        while not stop.is_set():
            log.append("light")
            await asyncio.sleep(0)

    ticker = asyncio.create_task(light())
    await asyncio.sleep(0)
    results = await asyncio.gather(run_sliced(heavy("a", 20, log), SLICE), run_sliced(heavy("b", 20, log), SLICE))
    stop.set()
    await ticker
    assert results == ["a done", "b done"]
    runs: list[list[str]] = []
    for entry in log:
        if entry == "light":
            runs.append([])
        elif runs:
            runs[-1].append(entry)
    slices = [run for run in runs if run]
    # Between two light turns at most one slice: steps of one computation, no more than fit a slice.
    most = int(SLICE / STEP_SECONDS) + 1
    assert all(len(set(run)) == 1 and len(run) <= most for run in slices), slices
    # Both computations advanced in turns rather than one after the other.
    owners = [run[0] for run in slices]
    assert owners.index("b") < len(owners) - owners[::-1].index("a") - 1


async def test_the_callers_meter_is_charged_the_slices_cpu_time() -> None:
    meter = CpuMeter()
    token = CURRENT_METER.set(meter)
    try:
        await run_sliced(heavy("a", 25, []), SLICE)
    finally:
        CURRENT_METER.reset(token)
    assert meter.seconds >= 25 * STEP_SECONDS * 0.9


async def test_a_cancelled_caller_leaves_the_line_and_its_steps_stop() -> None:
    log: list[str] = []
    closed: list[bool] = []

    def endless() -> Generator[None, None, None]:
        try:
            while True:
                busy(STEP_SECONDS)
                log.append("x")
                yield
        finally:
            closed.append(True)

    task = asyncio.create_task(run_sliced(endless(), SLICE))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.01)  # the lane's next turn drops it
    steps = len(log)
    await asyncio.sleep(0.01)
    assert steps > 0
    assert len(log) == steps
    assert closed == [True]
