"""Contact values (Verbindungen) in a comparable form: phone numbers as E.164, e-mail folded.

Phone numbers go through the `phonenumbers` library with Germany as the default region. A number
written without "+" or "00" and without the national trunk "0" ("4915112345678", "15112345678")
is ambiguous: read as a German national number it would silently become a different, possibly
valid, number. Such input is refused, not guessed.

`phonenumbers` fetches each metadata pattern through `re.compile` on every parse, from the `re`
module's cache (small, shared with the whole process, and recompiling whatever dropped out). Its
documented pattern cache (`phonenumbers.enable_pattern_cache`) keeps them compiled: a number costs
about a tenth fewer instructions (callgrind), and find-or-create reads one per booking contact and
per candidate contact.
"""

from __future__ import annotations

import re

import phonenumbers

__all__ = ["ContactValueError", "normalize_email", "normalize_phone"]

DEFAULT_REGION = "DE"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_VISUAL = re.compile(r"[\s()./-]")
phonenumbers.enable_pattern_cache()  # the patterns come from fixed metadata: a bounded set


class ContactValueError(ValueError):
    """The value cannot be used as this kind of contact; the message says why (no echo of it)."""


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """E.164 form, e.g. "+4915112345678"."""
    compact = _VISUAL.sub("", value.strip())
    if not compact:
        raise ContactValueError("is empty")
    if not (compact.startswith(("+", "00")) or compact.startswith("0")):
        raise ContactValueError(
            "is ambiguous: write it with the country code (+49 ...) or with the leading 0 of a national number"
        )
    try:
        number = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException:
        raise ContactValueError("is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ContactValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(value: str) -> str:
    """Trimmed and case-folded; addresses differing only in case are the same mailbox in practice."""
    text = value.strip()
    if not _EMAIL.match(text):
        raise ContactValueError("is not an e-mail address")
    return text.casefold()
