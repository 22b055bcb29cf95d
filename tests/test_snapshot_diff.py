"""Snapshot diffs against a plain multiset difference (property test), backfill, moves."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from otv_sdk.snapshot_diff import diff_column, diff_snapshots
from otv_sdk.timeline import EMPTY, IntervalArray, from_datetime

BASE = 1_800_000_000  # 2027
# The domain's instants lie within 1900-2200; the diff must be right for every one of them.
EARLIEST = from_datetime(datetime(1900, 1, 1, tzinfo=UTC))
LATEST = from_datetime(datetime(2200, 1, 1, tzinfo=UTC))
# Where 32-bit arithmetic breaks: the int32 edges (1901-12-13, 2038-01-19), the uint32 one (2106).
EDGES = [-(2**31) - 1, -(2**31), -1, 0, 2**31 - 1, 2**31, 2**32 - 1, 2**32, EARLIEST, LATEST - 1]
instants = st.one_of(st.integers(EARLIEST, LATEST - 1), st.sampled_from(EDGES))
lengths = st.one_of(st.integers(1, 3600), st.integers(1, LATEST - EARLIEST), st.sampled_from([2**31, 2**32, 2**32 + 1]))


@st.composite
def snapshot_pairs(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Two snapshots drawn from a few shared starts and lengths, so they share intervals, hold
    duplicates, and hold intervals with equal starts but different ends (ties the sort must break)."""
    starts = draw(st.lists(instants, min_size=1, max_size=6))
    spans = draw(st.lists(lengths, min_size=1, max_size=4))
    interval = st.tuples(st.sampled_from(starts), st.sampled_from(spans)).map(
        lambda p: (p[0], min(p[0] + p[1], LATEST))
    )
    return draw(st.lists(interval, max_size=40)), draw(st.lists(interval, max_size=40))


@settings(max_examples=500, deadline=None)
@given(snapshot_pairs(), st.booleans())
def test_diff_equals_the_plain_multiset_difference(
    pair: tuple[list[tuple[int, int]], list[tuple[int, int]]], presorted: bool
) -> None:
    before, after = pair
    if presorted:  # the gateway hands it sorted snapshots; the diff must not depend on it
        before, after = sorted(before), sorted(after)
    added, removed = diff_column(IntervalArray.of(before), IntervalArray.of(after))
    assert Counter(added.pairs()) == Counter(after) - Counter(before)
    assert Counter(removed.pairs()) == Counter(before) - Counter(after)
    assert added.pairs() == sorted(added.pairs())
    assert removed.pairs() == sorted(removed.pairs())


def test_intervals_after_2038_and_before_1901_keep_their_dates() -> None:
    """The regression: starts past 2^31 s came back 136 years early (2040 as 1903)."""
    late = (from_datetime(datetime(2040, 3, 1, 9, tzinfo=UTC)), from_datetime(datetime(2040, 3, 1, 10, tzinfo=UTC)))
    early = (from_datetime(datetime(1900, 3, 1, 9, tzinfo=UTC)), from_datetime(datetime(1900, 3, 1, 10, tzinfo=UTC)))
    (change,) = diff_snapshots({"a": IntervalArray.of([early])}, {"a": IntervalArray.of([late])})
    assert [(i.start, i.end) for i in change.added] == [tuple(datetime.fromtimestamp(s, UTC) for s in late)]
    assert [(i.start, i.end) for i in change.removed] == [tuple(datetime.fromtimestamp(s, UTC) for s in early)]


def test_a_move_is_a_removal_and_an_addition_and_duplicates_count() -> None:
    slot, moved = (BASE, BASE + 1200), (BASE + 3600, BASE + 4800)
    (change,) = diff_snapshots({"a": IntervalArray.of([slot, slot])}, {"a": IntervalArray.of([slot, moved])})
    assert [(int(i.start.timestamp()), int(i.end.timestamp())) for i in change.removed] == [slot]
    assert [(int(i.start.timestamp()), int(i.end.timestamp())) for i in change.added] == [moved]


def test_first_upload_backfills_and_missing_columns_are_not_changes() -> None:
    busy = IntervalArray.of([(BASE, BASE + 600)])
    (backfill,) = diff_snapshots({}, {"new": busy})
    assert len(backfill.added) == 1
    assert not backfill.removed
    assert diff_snapshots({"old": busy}, {}) == []
    assert diff_snapshots({"same": busy}, {"same": busy}) == []
    assert diff_column(EMPTY, EMPTY)[0].pairs() == []
