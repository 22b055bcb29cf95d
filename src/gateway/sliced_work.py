"""A call's heavy computation, run on the event loop in slices of half a millisecond, one per turn.

Every partner call is served by one event loop. A computation that holds it for 10 ms (a page of
1,000 slots over every column of a practice) holds up every other partner's call for those 10 ms,
however little they ask: one partner sending such requests as fast as its limits allow raised the
other partners' p99 latency by that much (benchmarks/bench_flood.py). Moving the work to a thread
does not help, because it is Python holding the GIL.

So the computation is written as steps (a generator that pauses between them) and handed to the
loop's lane, which runs one slice per turn of the loop: steps of the computation first in line
until the slice's time is used, then it goes to the back of the line. Everything else that is ready
(new calls the loop has picked up, other calls' light steps) runs between two slices, so a light
call arriving during a flood of heavy ones waits about one slice, not one piece of work per heavy
call in progress. With nothing else to do the loop turns at once, so a heavy call alone finishes
in barely more time than in one piece.

The slices run outside the call's task but in a copy of its context, and their CPU time goes to
the meter of the call's turn (`CURRENT_METER`, rate_limits.py): the partner is charged as if the
call had done the work itself. A call that is cancelled (its deadline passed) leaves the line.

There is one lane per event loop (tests run many loops).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.rate_limits import CURRENT_METER, CpuMeter
from otv_sdk.loop_share import SHARE_SECONDS

__all__ = ["SLICE_SECONDS", "run_sliced"]

T = TypeVar("T")

# The same share of the loop as the servicers' conversions take between pauses (loop_share.py):
# long enough that the turns cost little, short enough that a light call hardly notices.
SLICE_SECONDS = SHARE_SECONDS


@dataclass(slots=True, eq=False)
class _Job(Generic[T]):
    steps: Generator[None, None, T]
    done: asyncio.Future[T]
    context: contextvars.Context
    meter: CpuMeter | None
    slice_seconds: float


class _Lane:
    """Computations waiting for their next slice, first in line first."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._line: deque[_Job[Any]] = deque()
        self._turn_scheduled = False

    def submit(self, job: _Job[Any]) -> None:
        self._line.append(job)
        self._schedule()

    def _schedule(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self._loop.call_soon(self._turn)  # the next turn of the loop, after what is ready now

    def _turn(self) -> None:
        self._turn_scheduled = False
        while self._line and self._line[0].done.done():  # its caller gave up (cancelled)
            self._line.popleft().steps.close()
        if not self._line:
            return
        job = self._line.popleft()
        if job.context.run(_run_slice, job):
            self._line.append(job)
        if self._line:
            self._schedule()


def _run_slice(job: _Job[Any]) -> bool:
    """Steps until the slice is used (True: more to do) or the computation ends (False)."""
    began = time.thread_time()
    ends = time.perf_counter() + job.slice_seconds
    try:
        while True:
            next(job.steps)
            if time.perf_counter() >= ends:
                return True
    except StopIteration as finished:
        job.done.set_result(finished.value)
    except Exception as error:  # the caller raises it, as if it had run the steps itself
        job.done.set_exception(error)
    finally:
        if job.meter is not None:
            job.meter.seconds += time.thread_time() - began
    return False


_lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane] = weakref.WeakKeyDictionary()


async def run_sliced(steps: Generator[None, None, T], slice_seconds: float = SLICE_SECONDS) -> T:
    """Run `steps` to their end in the loop's lane and return their value."""
    loop = asyncio.get_running_loop()
    lane = _lanes.get(loop)
    if lane is None:
        lane = _lanes[loop] = _Lane(loop)
    done: asyncio.Future[T] = loop.create_future()
    lane.submit(_Job(steps, done, contextvars.copy_context(), CURRENT_METER.get(), slice_seconds))
    return await done
