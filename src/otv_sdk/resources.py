"""Resource names (AIP-122): parsing and formatting `practices/{practice}/...`.

Every name a partner sends passes through `parse`, which names the request field in its error so
a malformed name is an INVALID_ARGUMENT the partner can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otv_sdk.errors import InvalidArgument

__all__ = [
    "ResourceName",
    "format_name",
    "parse_child",
    "parse_practice",
    "parse_practice_child",
]

# Practice ids are chosen by operators: DNS-label style, as AIP-122 recommends.
_PRACTICE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Child ids come from the PVS, whose key formats vary; allow URL-unreserved characters.
_CHILD_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")

# Collection segment of each child resource, as it appears in names.
COLLECTIONS = frozenset(
    {
        "columns",
        "practitioners",
        "rooms",
        "appointmentTypes",
        "appointmentTypeGroups",
        "bookingAreas",
        "appointments",
        "holds",
        "patients",
    }
)


@dataclass(frozen=True, slots=True)
class ResourceName:
    practice_id: str
    collection: str
    id: str

    def __str__(self) -> str:
        return format_name(self.practice_id, self.collection, self.id)


def format_name(practice_id: str, collection: str | None = None, child_id: str | None = None) -> str:
    if collection is None or child_id is None:
        return f"practices/{practice_id}"
    return f"practices/{practice_id}/{collection}/{child_id}"


def is_valid_practice_id(practice_id: str) -> bool:
    return bool(_PRACTICE_ID.match(practice_id))


def parse_practice(name: str, field: str) -> str:
    """Parse `practices/{practice}` and return the practice id."""
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "practices":
        raise InvalidArgument.field(field, f"must look like 'practices/{{practice}}', got {_shown(name)}")
    if not _PRACTICE_ID.match(parts[1]):
        raise InvalidArgument.field(
            field,
            "practice id must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'",
        )
    return parts[1]


def parse_child(name: str, field: str, collection: str) -> ResourceName:
    """Parse `practices/{practice}/{collection}/{id}`."""
    parts = name.split("/")
    expected = f"practices/{{practice}}/{collection}/{{id}}"
    if len(parts) != 4 or parts[0] != "practices" or parts[2] != collection:
        raise InvalidArgument.field(field, f"must look like '{expected}', got {_shown(name)}")
    if not _PRACTICE_ID.match(parts[1]):
        raise InvalidArgument.field(field, "practice id segment is malformed")
    if not _CHILD_ID.match(parts[3]):
        raise InvalidArgument.field(field, f"{collection} id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -")
    return ResourceName(parts[1], collection, parts[3])


def parse_practice_child(name: str, field: str, collection: str, practice_id: str) -> str:
    """Parse a child name that must belong to practice_id; return the child id."""
    parsed = parse_child(name, field, collection)
    if parsed.practice_id != practice_id:
        raise InvalidArgument.field(field, f"belongs to another practice than the request's 'practices/{practice_id}'")
    return parsed.id


def _shown(name: str) -> str:
    # Names are not personal data, but cap what is echoed so a huge input does not bloat errors.
    return repr(name if len(name) <= 80 else name[:77] + "...")
