"""Token buckets: how many calls a partner may make per second, and how many refusals get audited.

A bucket holds up to `burst` tokens and refills at `per_second`; a call takes one token or is
refused with the time until one is back, which the caller returns as RetryInfo. Buckets are per
gateway process: behind a load balancer with N replicas a partner gets up to N times the rate,
which docs/security.md says (the limit protects each replica, not a global quota).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["PartnerRateLimits", "Rate", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int


class TokenBucket:
    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._at = clock()

    def take(self) -> float:
        """0 if a token was taken, else the seconds until one is back (nothing taken)."""
        now = self._clock()
        self._tokens = min(float(self._rate.burst), self._tokens + (now - self._at) * self._rate.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate.per_second


class PartnerRateLimits:
    """One bucket per partner, at the partner's configured rate or the default."""

    def __init__(
        self, default: Rate, per_partner: Mapping[str, Rate] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._default = default
        self._per_partner = dict(per_partner or {})
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, partner_id: str) -> float:
        """0 if the partner may call now, else the seconds to wait."""
        bucket = self._buckets.get(partner_id)
        if bucket is None:  # partners are registered, so this dictionary stays small
            rate = self._per_partner.get(partner_id, self._default)
            bucket = self._buckets[partner_id] = TokenBucket(rate, self._clock)
        return bucket.take()
