"""What one partner may ask of a gateway replica: calls per second, and calls served at once.

A token bucket holds up to `burst` tokens and refills at `per_second`; a call takes one token or
is refused with the time until one is back, which the caller returns as RetryInfo. The same
bucket limits how many refusals get audited.

Calls per second alone do not keep one partner from slowing the others: a few calls that each ask
for 24 months of a whole practice keep a replica busy however rarely they come, and calls that
wait for the CPU pile up. So each partner also has a number of calls served at once; more wait
their turn, in order, and beyond a queue of that partner's own they are refused. Other partners'
calls never wait in that queue.

Limits are per gateway process: behind a load balancer with N replicas a partner gets up to N
times the rate (docs/security.md: the limits protect each replica, they are not a global quota).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import types
from collections.abc import Awaitable, Callable, Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

__all__ = [
    "CURRENT_METER",
    "CpuMeter",
    "MeteredExecutor",
    "Overloaded",
    "PartnerRateLimits",
    "Rate",
    "TokenBucket",
    "WorkBudget",
    "metered",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int
    concurrent: int = 8  # calls served at once
    queued: int = 256  # calls waiting for their turn; beyond that, refused
    share: float = 0.05  # of the replica's time a partner's calls may take, on average
    share_burst: float = 1.0  # seconds of it a partner may use at once after a quiet spell


class Overloaded(Exception):
    """The partner has as many calls waiting as it may, or has used its share for a while: refuse
    this one; `retry_after` seconds until it would be served."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class CpuMeter:
    """CPU seconds one call cost the replica: its steps on the event loop's thread (`metered`) and
    the jobs it handed to worker threads (`MeteredExecutor`).

    The time a call waits (for a remote PVS, the store, its turn) is not its cost: charging wall
    time would hold a partner of a slow PVS to a fraction of what the replica can do for it."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


# The meter of the call running in this task, for the worker threads it hands jobs to.
CURRENT_METER: contextvars.ContextVar[CpuMeter | None] = contextvars.ContextVar("otv_cpu_meter", default=None)


class MeteredExecutor(ThreadPoolExecutor):
    """The loop's default executor (`asyncio.to_thread`): a job's thread CPU goes to the meter of
    the call that submitted it. Submitting happens on the loop, in the call's own task, so the
    meter is the one in the task's context at that moment."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        meter = CURRENT_METER.get()
        if meter is None:
            return super().submit(fn, *args, **kwargs)

        def job() -> T:
            began = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                meter.seconds += time.thread_time() - began

        return super().submit(job)


@types.coroutine
def metered(awaitable: Awaitable[T], meter: CpuMeter) -> Generator[Any, Any, T]:
    """Await `awaitable`, adding the thread CPU time of each of its steps to `meter`."""
    steps = awaitable.__await__()
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        began = time.thread_time()
        try:
            yielded = steps.send(sent) if thrown is None else steps.throw(thrown)
        except StopIteration as finished:
            meter.seconds += time.thread_time() - began
            return cast(T, finished.value)
        finally:
            thrown = None
        meter.seconds += time.thread_time() - began
        try:
            sent = yield yielded
        except BaseException as error:  # cancellation and the like go into the call, as await would
            sent, thrown = None, error


class WorkBudget:
    """CPU seconds of the replica a partner may still use: refills at `share` per second up to
    `burst`, and every call is charged the CPU it took. Time, not calls, because one call asking
    for 24 months of a whole practice costs as much as a thousand light ones."""

    def __init__(self, share: float, burst: float, clock: Callable[[], float]) -> None:
        self._share = share
        self._burst = burst
        self._clock = clock
        self._seconds = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._seconds = min(self._burst, self._seconds + (now - self._at) * self._share)
        self._at = now

    def debt_seconds(self) -> float:
        """How long until the budget is no longer overdrawn (0 if it is not)."""
        self._refill()
        return 0.0 if self._seconds >= 0 else -self._seconds / self._share

    def charge(self, seconds: float) -> None:
        self._refill()
        self._seconds -= seconds


class TokenBucket:
    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._at = clock()

    def take(self) -> float:
        """0 if a token was taken, else the seconds until one is back (nothing taken)."""
        wait = self.wait()
        if wait == 0:
            self._tokens -= 1
        return wait

    def wait(self) -> float:
        """0 if a token is there now, else the seconds until one is back; takes nothing."""
        now = self._clock()
        self._tokens = min(float(self._rate.burst), self._tokens + (now - self._at) * self._rate.per_second)
        self._at = now
        if self._tokens >= 1:
            return 0.0
        return (1 - self._tokens) / self._rate.per_second


@dataclass(slots=True)
class _Partner:
    bucket: TokenBucket
    budget: WorkBudget
    turns: asyncio.Semaphore
    queued: int
    waiting: int = field(default=0)


class PartnerRateLimits:
    """Each partner's bucket and turns, at the partner's configured rate or the default."""

    def __init__(
        self, default: Rate, per_partner: Mapping[str, Rate] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._default = default
        self._per_partner = dict(per_partner or {})
        self._clock = clock
        self._partners: dict[str, _Partner] = {}

    def _of(self, partner_id: str) -> _Partner:
        state = self._partners.get(partner_id)
        if state is None:  # partners are registered, so this dictionary stays small
            rate = self._per_partner.get(partner_id, self._default)
            state = _Partner(
                TokenBucket(rate, self._clock),
                WorkBudget(rate.share, rate.share_burst, self._clock),
                asyncio.Semaphore(rate.concurrent),
                rate.queued,
            )
            self._partners[partner_id] = state
        return state

    def take(self, partner_id: str) -> float:
        """0 if the partner may call now (a token is taken), else the seconds to wait."""
        return self._of(partner_id).bucket.take()

    def wait(self, partner_id: str) -> float:
        """What `take` would say, without taking: to refuse a call cheaply before verifying it."""
        return self._of(partner_id).bucket.wait()

    def turn(self, partner_id: str, patience: float | None = None, meter: CpuMeter | None = None) -> _Turn:
        """Serve the call once it is the partner's turn: in arrival order, and once the partner's
        share of the replica's time is no longer overdrawn. Overloaded if too many calls wait, or
        if the share would be back only after `patience` seconds (the call's remaining deadline).
        The call is charged what the meter it gets counts (run it with `metered`), which may already
        hold what admitting the call cost. (An object, not a generator: it runs on every call.)"""
        return _Turn(self._of(partner_id), patience, meter or CpuMeter())


# A call does not wait longer than this for its partner's share; it is refused with RetryInfo.
_MAX_WAIT = 5.0


class _Turn:
    """One call's turn (PartnerRateLimits.turn): `async with` it around serving the call."""

    __slots__ = ("_meter", "_patience", "_state", "_token")

    def __init__(self, state: _Partner, patience: float | None, meter: CpuMeter) -> None:
        self._state = state
        self._patience = patience
        self._meter = meter
        self._token: contextvars.Token[CpuMeter | None] | None = None

    async def begin(self) -> CpuMeter:
        """Wait for the turn (or Overloaded); from here the meter counts for the partner."""
        state = self._state
        if state.waiting >= state.queued and state.turns.locked():  # the cheap test first
            raise Overloaded(_MAX_WAIT)
        state.waiting += 1
        try:
            await state.turns.acquire()
        finally:
            state.waiting -= 1
        try:
            debt = state.budget.debt_seconds()
            if debt > 0:
                # Wait for the share, while the partner's other calls wait behind this one. A call that
                # would wait too long is refused only after waiting what it could: refusing at once
                # would let a partner that ignores RetryInfo make the refusals themselves the load.
                patience = self._patience
                wait = min(debt, _MAX_WAIT, max(0.0, patience - 0.05) if patience is not None else debt)
                await asyncio.sleep(wait)
                if debt > wait:
                    raise Overloaded(debt - wait)
        except BaseException:
            state.turns.release()
            raise
        self._token = CURRENT_METER.set(self._meter)
        return self._meter

    def end(self) -> None:
        """Charge the partner what the meter counted and give the turn back (once, after begin)."""
        if self._token is None:
            return
        CURRENT_METER.reset(self._token)
        self._token = None
        self._state.budget.charge(self._meter.seconds)
        self._state.turns.release()

    async def __aenter__(self) -> CpuMeter:
        return await self.begin()

    async def __aexit__(self, *exc_info: object) -> None:
        self.end()
