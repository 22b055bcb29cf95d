"""How large a request may be: the limits every server of the contract enforces, in one place.

A limit exists so that no single request can make the server do unbounded work, and so that a
value the contract can carry but the domain cannot use (year 9999, a thousand columns) is refused
with INVALID_ARGUMENT naming the field before any arithmetic runs on it. docs/security.md lists
them for partners; the gateway and adapter servers check the same numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "EARLIEST_INSTANT",
    "EARLIEST_SECONDS",
    "LATEST_INSTANT",
    "LATEST_SECONDS",
    "MAX_COLUMNS",
    "MAX_CONTACTS",
    "MAX_CONTACT_VALUE",
    "MAX_LOCALITY",
    "MAX_NAME_PART",
    "MAX_PARTNER_REQUEST_BYTES",
    "MAX_PATIENT_NOTE",
    "MAX_POSTAL_CODE",
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_ID",
    "MAX_STREET",
    "MAX_TOKEN",
]

# Calendar instants (windows, slot starts, appointment times, evidence times) lie in this range.
# Wide enough for any booking and any history a practice keeps; narrow enough that month, time-zone
# and packing arithmetic never overflows (Python dates end in year 9999, packed offsets at 2^32 s).
EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
EARLIEST_SECONDS = int(EARLIEST_INSTANT.timestamp())  # the same, as Unix time
LATEST_SECONDS = int(LATEST_INSTANT.timestamp())

# Bytes of one request message. Partner requests are small (the largest, FindOrCreatePatient with
# every contact, is under 4 KiB); snapshot uploads and connector replies carry calendars.
MAX_PARTNER_REQUEST_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024

# Entries of repeated fields. A practice has at most a few dozen calendar columns (the seed PVSs
# offer up to four); a patient gives a handful of phone numbers and addresses.
MAX_COLUMNS = 64
MAX_CONTACTS = 10

# Characters of strings.
MAX_REQUEST_ID = 128  # an idempotency key: a UUID or similar
MAX_NAME_PART = 200  # a given or family name
MAX_CONTACT_VALUE = 254  # the longest e-mail address SMTP allows
MAX_TOKEN = 512  # page tokens, change cursors, etags, consent text versions: opaque, short
MAX_STREET = 200  # street and house number of a postal address
MAX_POSTAL_CODE = 10  # the longest postcodes in use have 10 characters
MAX_LOCALITY = 100  # a town's name
MAX_PATIENT_NOTE = 1000  # what the patient wrote for the practice with a booking
