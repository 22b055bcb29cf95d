"""Snapshot diffs against a plain multiset difference (property test), backfill, moves."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from otv_sdk.snapshot_diff import diff_column, diff_snapshots
from otv_sdk.timeline import EMPTY, IntervalArray

BASE = 1_800_000_000  # 2027
intervals = st.lists(
    st.tuples(st.integers(0, 500), st.integers(1, 50)).map(
        lambda p: (BASE + p[0] * 300, BASE + p[0] * 300 + p[1] * 60)
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(intervals, intervals)
def test_diff_equals_the_plain_multiset_difference(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> None:
    added, removed = diff_column(IntervalArray.of(sorted(before)), IntervalArray.of(sorted(after)))
    assert Counter(added.pairs()) == Counter(after) - Counter(before)
    assert Counter(removed.pairs()) == Counter(before) - Counter(after)
    assert added.pairs() == sorted(added.pairs())


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
