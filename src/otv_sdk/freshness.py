"""How old the data of a read is, when it is not read live from the PVS.

A practice that uploads snapshots, or whose connector is offline, is answered from the last known
state. Partners must be able to tell: the ports report the age of what they served with
`report_data_age`, and the servicers send the oldest age of a call as the response metadata
`x-otv-data-age-seconds` (whole seconds). A live answer carries no such entry.
"""

from __future__ import annotations

import contextvars

__all__ = ["DATA_AGE_METADATA_KEY", "DataAge", "collect_data_age", "report_data_age"]

DATA_AGE_METADATA_KEY = "x-otv-data-age-seconds"


class DataAge:
    """The oldest age reported during one call (mutable, so reports from child tasks count too)."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: float | None = None

    def add(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if self.seconds is None or seconds > self.seconds:
            self.seconds = seconds


_CURRENT: contextvars.ContextVar[DataAge | None] = contextvars.ContextVar("otv_data_age", default=None)


def report_data_age(seconds: float) -> None:
    """Say that what this call is being answered with is `seconds` old."""
    current = _CURRENT.get()
    if current is not None:
        current.add(seconds)


def collect_data_age() -> _Collecting:
    """`with collect_data_age() as age:` collects the ages reported while the block runs."""
    return _Collecting()


class _Collecting:
    """Every call of every servicer enters one: a plain object, not a generator-based context manager."""

    __slots__ = ("_age", "_token")

    def __enter__(self) -> DataAge:
        self._age = DataAge()
        self._token = _CURRENT.set(self._age)
        return self._age

    def __exit__(self, *exc_info: object) -> None:
        _CURRENT.reset(self._token)
