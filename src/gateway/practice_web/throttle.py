"""Login throttling, per account and per client address.

After `limit` failed logins within `window` seconds, further attempts for that account (or from
that address) are refused without checking the password until the oldest failure leaves the window.
The address limit is higher, since a practice's staff often share one address. Counts live in the
gateway process (a replica restart forgets them; each replica limits on its own).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]


class LoginThrottle:
    def __init__(
        self,
        *,
        account_limit: int = 5,
        address_limit: int = 20,
        window: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._limits = {"account": account_limit, "address": address_limit}
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _keys(self, account: str, address: str) -> list[tuple[str, str]]:
        return [("account", account), ("address", address)]

    def retry_after(self, account: str, address: str) -> int:
        """Seconds until a login may be tried again; 0 when it may be tried now."""
        now, wait = self._clock(), 0.0
        for key in self._keys(account, address):
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self._limits[key[0]]:
                wait = max(wait, failures[0] + self._window - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        if len(self._failures) >= self._max_keys:  # bounded memory under a flood of addresses
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > now - self._window}
        for key in self._keys(account, address):
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, account: str) -> None:
        self._failures.pop(("account", account), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures
