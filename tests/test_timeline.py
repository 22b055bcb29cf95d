"""Interval set operations agree with plain sets of seconds."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from otv_sdk.timeline import IntervalArray, complement, intersect, normalize, subtract, union

raw = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)).map(lambda t: (t[0], t[0] + t[1])), max_size=12)


def points(items: IntervalArray) -> set[int]:
    return {p for s, e in items.pairs() for p in range(s, e)}


def is_normalised(items: IntervalArray) -> bool:
    pairs = items.pairs()
    return all(s < e for s, e in pairs) and all(e < s2 for (_, e), (s2, _) in itertools.pairwise(pairs))


@given(raw)
def test_normalize_keeps_points_and_is_normalised(pairs: list[tuple[int, int]]) -> None:
    items = IntervalArray.of(pairs)
    result = normalize(items)
    assert points(result) == points(items)
    assert is_normalised(result)


@given(raw, raw)
def test_set_operations_match_sets(a_pairs: list[tuple[int, int]], b_pairs: list[tuple[int, int]]) -> None:
    a, b = normalize(IntervalArray.of(a_pairs)), normalize(IntervalArray.of(b_pairs))
    for result, expected in (
        (intersect(a, b), points(a) & points(b)),
        (subtract(a, b), points(a) - points(b)),
        (union(a, b), points(a) | points(b)),
    ):
        assert points(result) == expected
        assert is_normalised(result)


@given(raw, st.integers(0, 250), st.integers(0, 250))
def test_window_and_clipped(pairs: list[tuple[int, int]], lo: int, hi: int) -> None:
    items = normalize(IntervalArray.of(pairs))
    inside = set(range(lo, hi))
    assert points(items.window(lo, hi)) == points(items) & inside
    assert points(items.clipped(lo, hi)) == points(items) & inside


def test_complement_of_nothing_is_everything() -> None:
    everything = complement(IntervalArray.of())
    assert len(everything) == 1
    assert int(everything.starts[0]) < -(10**15) < 10**15 < int(everything.ends[0])
