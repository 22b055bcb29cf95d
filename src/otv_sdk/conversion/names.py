"""Resource names and the other strings requests carry: names and lists of names, opaque tokens,
bounded text, page sizes.

`_name_or_empty` and `_id_or_none` live here because calendars, appointments and scenarios all
write and read optional references with them: on the wire an unset reference is the empty string.
"""

from __future__ import annotations

from collections.abc import Sequence

from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import MAX_TOKEN
from otv_sdk.resources import format_name, parse_child, parse_practice, parse_practice_child

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "bounded_text",
    "child_id_from_proto",
    "column_ids_from_proto",
    "consent_name",
    "consent_name_parts",
    "page_size_from_proto",
    "practice_from_parent",
    "token_from_proto",
]


def practice_from_parent(name: str, field: str = "parent") -> str:
    return parse_practice(name, field)


def column_ids_from_proto(
    names: Sequence[str], practice_id: str, field: str = "columns", limit: int | None = None
) -> tuple[str, ...]:
    """Column ids in the order given; `limit` caps how many a request may name."""
    if limit is not None and len(names) > limit:
        raise InvalidArgument.field(field, f"names more than {limit} columns")
    ids: dict[str, None] = {}  # ordered, and a duplicate is found in constant time
    for index, name in enumerate(names):
        column_id = parse_practice_child(name, f"{field}[{index}]", "columns", practice_id)
        if column_id in ids:
            raise InvalidArgument.field(f"{field}[{index}]", "names a column twice")
        ids[column_id] = None
    return tuple(ids)


def child_id_from_proto(name: str, field: str, collection: str) -> tuple[str, str]:
    """Parse a child resource name; return (practice_id, child_id)."""
    parsed = parse_child(name, field, collection)
    return parsed.practice_id, parsed.id


def consent_name_parts(name: str, field: str = "name") -> tuple[str, str]:
    """`practices/{p}/patients/{patient}/consent` -> (practice_id, patient_id)."""
    if not name.endswith("/consent"):
        raise InvalidArgument.field(field, "must look like 'practices/{practice}/patients/{patient}/consent'")
    return child_id_from_proto(name.removesuffix("/consent"), field, "patients")


def consent_name(practice_id: str, patient_id: str) -> str:
    return format_name(practice_id, "patients", patient_id) + "/consent"


MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def bounded_text(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument.field(field, f"is longer than {limit} characters")
    return value


def token_from_proto(value: str, field: str) -> str:
    """An opaque token the server issued (page token, cursor, etag): anything longer is not one."""
    if len(value) > MAX_TOKEN:
        raise InvalidArgument.field(field, f"is not a token this server issued (longer than {MAX_TOKEN} characters)")
    return value


def page_size_from_proto(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument.field(field, "must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _name_or_empty(practice_id: str, collection: str, child_id: str | None) -> str:
    return format_name(practice_id, collection, child_id) if child_id else ""


def _id_or_none(name: str, field: str, collection: str, practice_id: str) -> str | None:
    return parse_practice_child(name, field, collection, practice_id) if name else None
