"""Long conversions on the event loop, paused every half millisecond so other calls get a turn.

Every call a server answers shares one event loop. Converting a large answer (24 months of a
practice's busy time, a page of 1000 slots) takes several milliseconds of Python and cannot move
to a thread (it holds the GIL all the same), so in one piece it delays every other call by as much:
one partner sending such requests raised the other partners' p99 latency by that
(benchmarks/bench_flood.py). Pausing after a fixed number of items does not bound the pause's
distance: an item's cost varies with the data. Pausing on the clock does.

The gateway's own heavy computations (the slot search) go through `gateway/sliced_work.py`, which
takes turns across calls and charges each slice to the partner's CPU share; it uses the same half
millisecond. This is the SDK's side, for conversions in servicers any adapter server runs too,
where there are no partner shares to charge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["SHARE_SECONDS", "LoopShare"]

# Long enough that pausing costs little (a turn of the loop takes tens of microseconds), short
# enough that a light call waiting behind the work hardly notices.
SHARE_SECONDS = 0.0005


class LoopShare:
    """Call `pause_if_due` between items of one piece of work."""

    __slots__ = ("_clock", "_seconds", "_until")

    def __init__(self, seconds: float = SHARE_SECONDS, clock: Callable[[], float] = time.perf_counter) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until = clock() + seconds

    async def pause_if_due(self) -> None:
        """Let the loop run what is ready if the work has held it for its share since the last pause."""
        if self._clock() >= self._until:
            await asyncio.sleep(0)
            self._until = self._clock() + self._seconds
