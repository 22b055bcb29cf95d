"""LoopShare: long conversions let other calls in on the clock, not after a count of items."""

from __future__ import annotations

import asyncio

from otv_sdk.loop_share import LoopShare


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _work(share: LoopShare, clock: _Clock, costs: list[float], log: list[str]) -> None:
    for index, cost in enumerate(costs):
        await share.pause_if_due()
        clock.now += cost  # the item's work
        log.append(f"item {index}")


async def _other(log: list[str]) -> None:
    while True:
        log.append("other")
        await asyncio.sleep(0)


async def test_pauses_once_its_share_is_used_whatever_the_items_cost() -> None:
    clock = _Clock()
    share = LoopShare(0.001, clock)
    log: list[str] = []
    other = asyncio.create_task(_other(log))
    await asyncio.sleep(0)  # the other task is waiting for its next turn
    log.clear()
    # Cheap items, then one dear one, then cheap ones: the pause follows the time, not the count.
    await _work(share, clock, [0.0004, 0.0004, 0.0004, 0.002, 0.0001, 0.0001], log)
    other.cancel()
    assert log == ["item 0", "item 1", "item 2", "other", "item 3", "other", "item 4", "item 5"]


async def test_work_within_its_share_runs_in_one_piece() -> None:
    clock = _Clock()
    share = LoopShare(0.001, clock)
    log: list[str] = []
    other = asyncio.create_task(_other(log))
    await asyncio.sleep(0)
    log.clear()
    await _work(share, clock, [0.0002] * 4, log)
    other.cancel()
    assert log == ["item 0", "item 1", "item 2", "item 3"]
