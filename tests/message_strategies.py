"""Hypothesis strategies for any protobuf message, built from its descriptor.

The fuzz test generates requests for every RPC the gateway serves without knowing them: each field
gets values of its type, biased towards what breaks servers (the edges of int64 and Timestamp,
huge and non-ASCII strings, resource names that almost fit), and towards names that reach deep
into the gateway (a real practice, column or appointment type), so a request gets past parsing
often enough to exercise what lies behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

__all__ = ["messages"]

_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
# Timestamp's documented range, and just past it.
_TS_MIN, _TS_MAX = -62135596800, 253402300799
_NOW = 1_800_000_000  # 2027-01-15


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [v for v in (lo, hi, 0, 1, -1, 2**31, 2**32, 10**9, 10**12) if lo <= v <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi), st.integers(max(lo, -1000), min(hi, 1000)))


def _seconds() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(_NOW - 86400 * 30, _NOW + 86400 * 800),  # near now: reaches the calendar
        st.sampled_from([_TS_MIN, _TS_MAX, _TS_MIN - 1, _TS_MAX + 1, 0, -1, 2**31, 2**32, 4102444800]),
        st.integers(_TS_MIN - 10**6, _TS_MAX + 10**6),
        st.integers(*_INT64),
    )


def _texts(pool: Sequence[str], hinted: Sequence[str]) -> st.SearchStrategy[str]:
    anything = st.one_of(
        st.sampled_from(pool),
        st.sampled_from(pool).map(lambda name: name + "/x"),
        st.text(max_size=40),
        st.text(alphabet="0123456789", min_size=1, max_size=30),
        st.sampled_from(["", " ", "\x00", "٣٤٥", "c1-١٢", "c1-" + "9" * 5000, "ä" * 300, "a" * 70_000]),
    )
    if not hinted:
        return anything
    # Mostly the hinted values, so requests get past their names and into the gateway.
    return st.integers(0, 9).flatmap(lambda roll: st.sampled_from(hinted) if roll < 8 else anything)


Hints = Mapping[str, Sequence[str]]


def _scalar(field: FieldDescriptor, pool: Sequence[str], hints: Hints) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _texts(pool, hints.get(field.name, ()))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 100))
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _ints(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _ints(0, 2**32 - 1)
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return _ints(*_INT32)
    return _ints(*_INT64)


def _field_value(field: FieldDescriptor, pool: Sequence[str], hints: Hints, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message_dict(field.message_type, pool, hints, depth + 1)
    return _scalar(field, pool, hints)


@st.composite
def _message_dict(
    draw: st.DrawFn, descriptor: Descriptor, pool: Sequence[str], hints: Hints, depth: int
) -> dict[str, Any]:
    """A message as a dict of field values (set onto a real message by `_build`)."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return {"seconds": draw(_seconds()), "nanos": draw(st.one_of(st.just(0), _ints(*_INT32)))}
    values: dict[str, Any] = {}
    oneofs_done: set[str] = set()
    for field in descriptor.fields:
        if depth > 3 and field.type == FieldDescriptor.TYPE_MESSAGE:
            continue
        oneof = field.containing_oneof
        if oneof is not None and oneof.name in oneofs_done:
            continue
        keep = 19 if field.name in hints else 3  # most fields set: requests get past "is required"
        if draw(st.integers(0, keep)) == 0:
            continue
        if oneof is not None:
            oneofs_done.add(oneof.name)
        if field.is_repeated:  # type: ignore[attr-defined]
            size = draw(st.one_of(st.integers(0, 4), st.sampled_from([0, 1, 50])))
            values[field.name] = [draw(_field_value(field, pool, hints, depth)) for _ in range(size)]
        else:
            values[field.name] = draw(_field_value(field, pool, hints, depth))
    return values


def _build(message: Message, values: dict[str, Any]) -> None:
    descriptor = message.DESCRIPTOR
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue  # the contract has no maps; skip rather than guess
            if field.is_repeated:  # type: ignore[attr-defined]
                target = getattr(message, name)
                for item in value:
                    _build(target.add(), item)
            else:
                child = getattr(message, name)
                child.SetInParent()
                _build(child, value)
        elif field.is_repeated:  # type: ignore[attr-defined]
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)


def messages(descriptor: Descriptor, pool: Sequence[str], hints: Hints | None = None) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type; `pool` holds names worth trying in string fields, `hints`
    the values most worth trying in the string fields of one name (`parent`, `columns`)."""

    def build(values: dict[str, Any]) -> Message:
        message = GetMessageClass(descriptor)()
        _build(message, values)
        return message

    return _message_dict(descriptor, pool, hints or {}, 0).map(build)
