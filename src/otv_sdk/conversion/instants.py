"""Instants, dates, windows and weekly spans: the time values the other conversions are built from.

A Timestamp outside the calendar range of limits.py is refused before any datetime arithmetic.
A birth date is compared with today in UTC+14, the first zone to begin a day, so no practice's
time zone makes a newborn's birth date lie in the future. `_set_timestamp` lives here with the
other Timestamp code; packed intervals and slots fill their messages' times in place with it,
which costs half as much as building a Timestamp and copying it in.
"""

from __future__ import annotations

import calendar as _calendar
from datetime import date, datetime, time, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from otv.v1 import time_pb2
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import EARLIEST_INSTANT, EARLIEST_SECONDS, LATEST_INSTANT, LATEST_SECONDS
from otv_sdk.models import UTC, Interval, WeeklySpan
from otv_sdk.timewindow import MAX_WINDOW_MONTHS, window_too_long

__all__ = [
    "birth_date_from_proto",
    "date_from_proto",
    "date_to_proto",
    "datetime_to_timestamp",
    "interval_from_proto",
    "interval_to_proto",
    "optional_date",
    "optional_timestamp",
    "required_timestamp",
    "timestamp_to_datetime",
    "weekly_span_from_proto",
    "weekly_span_to_proto",
    "window_from_proto",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_to_datetime(ts: Timestamp, field: str) -> datetime:
    # Outside the calendar range (limits.py) a timestamp is refused before any arithmetic.
    if not EARLIEST_SECONDS <= ts.seconds <= LATEST_SECONDS:
        raise InvalidArgument.field(
            field, f"must lie between {EARLIEST_INSTANT:%Y-%m-%d} and {LATEST_INSTANT:%Y-%m-%d} (UTC)"
        )
    if not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument.field(field, "nanos must be 0 to 999999999")
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def datetime_to_timestamp(value: datetime) -> Timestamp:
    delta = value - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def _set_timestamp(target: Timestamp, value: datetime) -> None:
    delta = value - _EPOCH
    target.seconds = delta.days * 86400 + delta.seconds
    if delta.microseconds:
        target.nanos = delta.microseconds * 1000
    elif not target.seconds:
        target.SetInParent()  # the epoch itself: present, as a Timestamp passed in would be


def required_timestamp(message: object, name: str, field: str) -> datetime:
    if not message.HasField(name):  # type: ignore[attr-defined]
        raise InvalidArgument.field(field, "is required")
    return timestamp_to_datetime(getattr(message, name), field)


def optional_timestamp(message: object, name: str, field: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return timestamp_to_datetime(getattr(message, name), field)


def window_from_proto(
    parent: object, name: str = "window", field: str | None = None, *, months: int = MAX_WINDOW_MONTHS
) -> Interval:
    """Parse a required TimeInterval field as a request window of at most `months` (24 for partners)."""
    field = field or name
    if not parent.HasField(name):  # type: ignore[attr-defined]
        raise InvalidArgument.field(field, "is required")
    msg: time_pb2.TimeInterval = getattr(parent, name)
    start = required_timestamp(msg, "start_time", f"{field}.start_time")
    end = required_timestamp(msg, "end_time", f"{field}.end_time")
    if end <= start:
        raise InvalidArgument.field(f"{field}.end_time", "must be after start_time")
    if window_too_long(start, end, months):
        raise InvalidArgument.field(f"{field}.end_time", f"window is longer than {months} months")
    return Interval(start, end)


def interval_to_proto(interval: Interval) -> time_pb2.TimeInterval:
    return time_pb2.TimeInterval(
        start_time=datetime_to_timestamp(interval.start), end_time=datetime_to_timestamp(interval.end)
    )


def interval_from_proto(msg: time_pb2.TimeInterval, field: str) -> Interval:
    start = required_timestamp(msg, "start_time", f"{field}.start_time")
    end = required_timestamp(msg, "end_time", f"{field}.end_time")
    if end <= start:
        raise InvalidArgument.field(f"{field}.end_time", "must be after start_time")
    return Interval(start, end)


def date_from_proto(msg: time_pb2.Date, field: str) -> date:
    """A real calendar date; 2026-02-30 or month 13 is INVALID_ARGUMENT naming the part."""
    if not 1 <= msg.year <= 9999:
        raise InvalidArgument.field(f"{field}.year", "must be 1 to 9999")
    if not 1 <= msg.month <= 12:
        raise InvalidArgument.field(f"{field}.month", "must be 1 to 12")
    last = _calendar.monthrange(msg.year, msg.month)[1]
    if not 1 <= msg.day <= last:
        raise InvalidArgument.field(f"{field}.day", f"must be 1 to {last} for {msg.year:04d}-{msg.month:02d}")
    return date(msg.year, msg.month, msg.day)


# The calendar day that has begun somewhere on Earth (UTC+14): a birth date after it is in the future
# for every practice, so no time zone makes a newborn's birth date invalid.
_EARLIEST_ZONE = timezone(timedelta(hours=14))


def birth_date_from_proto(parent: object, name: str, field: str) -> date:
    if not parent.HasField(name):  # type: ignore[attr-defined]
        raise InvalidArgument.field(field, "is required")
    value = date_from_proto(getattr(parent, name), field)
    if value > datetime.now(_EARLIEST_ZONE).date():
        raise InvalidArgument.field(field, "lies in the future")
    return value


def date_to_proto(value: date) -> time_pb2.Date:
    return time_pb2.Date(year=value.year, month=value.month, day=value.day)


def optional_date(parent: object, name: str, field: str) -> date | None:
    if not parent.HasField(name):  # type: ignore[attr-defined]
        return None
    return date_from_proto(getattr(parent, name), field)


def _time_of_day(msg: time_pb2.TimeOfDay, field: str) -> time:
    if not 0 <= msg.hours <= 23:
        raise InvalidArgument.field(f"{field}.hours", "must be 0 to 23")
    if not 0 <= msg.minutes <= 59:
        raise InvalidArgument.field(f"{field}.minutes", "must be 0 to 59")
    return time(msg.hours, msg.minutes)


def weekly_span_to_proto(span: WeeklySpan) -> time_pb2.WeeklySpan:
    return time_pb2.WeeklySpan(
        weekday=span.weekday,  # type: ignore[arg-type]  # ISO numbering equals the enum's numbers
        start_time=time_pb2.TimeOfDay(hours=span.start.hour, minutes=span.start.minute),
        end_time=time_pb2.TimeOfDay(hours=span.end.hour, minutes=span.end.minute),
    )


def weekly_span_from_proto(msg: time_pb2.WeeklySpan, field: str) -> WeeklySpan:
    if not 1 <= msg.weekday <= 7:
        raise InvalidArgument.field(f"{field}.weekday", "is required")
    start = _time_of_day(msg.start_time, f"{field}.start_time")
    end = _time_of_day(msg.end_time, f"{field}.end_time")
    if end <= start:
        raise InvalidArgument.field(f"{field}.end_time", "must be after start_time")
    return WeeklySpan(msg.weekday, start, end)
