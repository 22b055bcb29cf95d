"""The slot search one column at a time (`AvailabilityEngine.slot_steps`), as the gateway runs it in
slices: the same answer as `slots`, and the answer of one state of the engine when a change comes in
between two steps."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

import numpy as np
from test_availability import MONDAY, at, day_window, engine, kind

from otv_rules.availability import AvailabilityEngine, SlotArray
from otv_sdk.timeline import IntervalArray

T = TypeVar("T")
COLUMNS = ("a", "b", "c", "d")


def practice() -> AvailabilityEngine:
    return engine(
        hours=((1, "08:00", "12:00"), (2, "08:00", "16:00")),
        columns=COLUMNS,
        types=(kind(minutes=20, columns=COLUMNS),),
        blocked={"b": [(at(MONDAY, "09:00"), at(MONDAY, "10:00"))]},
        grid=10,
    )


def drive(steps: Generator[None, None, T]) -> tuple[T, int]:
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, pauses
        pauses += 1


def same(x: SlotArray, y: SlotArray) -> bool:
    return bool(
        x.column_ids == y.column_ids
        and np.array_equal(x.columns, y.columns)
        and np.array_equal(x.starts, y.starts)
        and x.duration == y.duration
    )


def test_steps_give_what_slots_gives_pausing_once_per_column() -> None:
    e = practice()
    lo, _ = day_window()
    hi = lo + 3 * 86400
    taken = {"c": IntervalArray.of([(at(MONDAY, "08:00"), at(MONDAY, "11:00"))])}
    for kwargs in (
        {},
        {"limit": 5},
        {"limit": 7, "after": (at(MONDAY, "08:30"), 1)},
        {"taken": taken},
        {"limit": 30, "taken": taken},
    ):
        whole = e.slots("t", lo, hi, **kwargs)  # type: ignore[arg-type]
        stepped, pauses = drive(e.slot_steps("t", lo, hi, **kwargs))  # type: ignore[arg-type]
        assert len(whole) > 0, kwargs
        assert same(whole, stepped), kwargs
        assert 1 <= pauses <= len(COLUMNS)
    _, pauses = drive(e.slot_steps("t", lo, hi))
    assert pauses == len(COLUMNS)


def test_a_change_between_steps_starts_the_search_over() -> None:
    e = practice()
    lo, _ = day_window()
    hi = lo + 3 * 86400
    before = e.slots("t", lo, hi)
    steps = e.slot_steps("t", lo, hi)
    next(steps)
    next(steps)  # columns a and b are done
    e.add_busy("a", at(MONDAY, "08:00"), at(MONDAY, "12:00"))
    after, _ = drive(steps)
    assert same(after, e.slots("t", lo, hi))
    assert not same(after, before)  # the change is in the answer: column a lost its Monday


def test_a_search_changed_under_it_every_time_still_ends_with_one_states_answer() -> None:
    e = practice()
    lo, _ = day_window()
    hi = lo + 3 * 86400
    steps = e.slot_steps("t", lo, hi)
    holds = 0
    try:
        while True:
            next(steps)
            e.add_hold(f"h{holds}", "d", at(MONDAY, "08:00") + 600 * holds, at(MONDAY, "08:10") + 600 * holds, hi)
            holds += 1
    except StopIteration as done:
        result = done.value
    assert holds < 4 * len(COLUMNS)  # a few passes, then one without pausing
    assert same(result, e.slots("t", lo, hi))
