"""The authentication headers of one call, checked for form, time and body hash before any key is used.

Both schemes (otv_sdk.signing: otv-ed25519-v1; otv_sdk.session_scheme: otv-session-v1) carry a
timestamp and the SHA-256 of the exact request bytes. What fails here needs no key and no store,
so unsigned garbage is refused before the body is parsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from gateway.refusals import unauthenticated
from otv_sdk.session_scheme import (
    MAC_HEADER,
    MAX_SEQUENCE,
    SEQUENCE_HEADER,
    SESSION_HEADER,
    SESSION_SCHEME,
)
from otv_sdk.signing import (
    CONTENT_HEADER,
    KEY_ID_HEADER,
    NONCE_HEADER,
    SCHEME,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    content_hash,
)

__all__ = ["SessionHeaders", "SignedHeaders", "read_headers", "refused_key_id"]

_MAX_TIMESTAMP_DIGITS = 12
_SIGNED = (KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, CONTENT_HEADER, SIGNATURE_HEADER)
_SESSION = (SESSION_HEADER, SEQUENCE_HEADER, TIMESTAMP_HEADER, CONTENT_HEADER, MAC_HEADER)


class SignedHeaders(NamedTuple):
    """otv-ed25519-v1: not yet verified. (Tuples: made on every call, and cheaper than a frozen dataclass.)"""

    key_id: str
    timestamp: int
    nonce: str
    signature: str
    digest: str


class SessionHeaders(NamedTuple):
    """otv-session-v1: not yet verified."""

    session_id: str
    sequence: int
    timestamp: int
    mac: str
    digest: str


def _values(metadata: Iterable[Any]) -> dict[str, str]:
    """The x-otv-* entries (the first of each name); bytes values (binary headers) are not ours."""
    values: dict[str, str] = {}
    for name, value in metadata:
        if name.startswith("x-otv-") and name not in values and isinstance(value, str):
            values[name] = value
    return values


def _missing(values: dict[str, str], names: Sequence[str]) -> None:
    missing = [name for name in names if not values.get(name)]
    if missing:
        missing.sort()
        raise unauthenticated(f"the call is not signed: missing {', '.join(missing)} (see docs/security.md)")


def _timestamp(text: str, now: float, skew: int) -> int:
    # ASCII digits of a plausible Unix time: other scripts' digits and huge numbers are not one.
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_TIMESTAMP_DIGITS):
        raise unauthenticated(f"{TIMESTAMP_HEADER} is not a Unix time in whole seconds (ASCII digits)")
    if abs(int(text) - int(now)) > skew:
        raise unauthenticated(
            f"{TIMESTAMP_HEADER} is not within {skew} seconds of the gateway's clock; check your clock"
        )
    return int(text)


def _digest(values: dict[str, str], raw: bytes) -> str:
    digest = content_hash(raw)
    if values[CONTENT_HEADER] != digest:
        raise unauthenticated(f"{CONTENT_HEADER} does not match the request; hash the exact bytes you send")
    return digest


def read_headers(raw: bytes, metadata: Iterable[Any], now: float, skew: int) -> SignedHeaders | SessionHeaders:
    """The call's headers of either scheme, or Refused (UNAUTHENTICATED)."""
    values = _values(metadata)
    scheme = values.get(SCHEME_HEADER)
    if scheme == SESSION_SCHEME:
        _missing(values, _SESSION)
        timestamp = _timestamp(values[TIMESTAMP_HEADER], now, skew)
        session_id, sequence, mac = values[SESSION_HEADER], values[SEQUENCE_HEADER], values[MAC_HEADER]
        if len(session_id) != 22:  # any other malformed id is simply not a session of this replica
            raise unauthenticated(f"{SESSION_HEADER} is not a session id (22 base64url characters)")
        # The MAC covers the number as written: one number has one spelling (no sign, no leading zeros).
        canonical = sequence.isascii() and sequence.isdigit() and len(sequence) <= 16 and sequence[0] != "0"
        if not canonical or int(sequence) > MAX_SEQUENCE:
            raise unauthenticated(
                f"{SEQUENCE_HEADER} is not a whole number from 1 to {MAX_SEQUENCE} in decimal without leading zeros"
            )
        if len(mac) > 64:
            raise unauthenticated(f"{MAC_HEADER} is too long")
        return SessionHeaders(session_id, int(sequence), timestamp, mac, _digest(values, raw))
    _missing(values, (SCHEME_HEADER, *_SIGNED))
    if scheme != SCHEME:
        raise unauthenticated(f"unsupported {SCHEME_HEADER}; this gateway accepts {SESSION_SCHEME} and {SCHEME}")
    timestamp = _timestamp(values[TIMESTAMP_HEADER], now, skew)
    key_id, nonce, signature = values[KEY_ID_HEADER], values[NONCE_HEADER], values[SIGNATURE_HEADER]
    if len(nonce) > 64 or len(key_id) > 128 or len(signature) > 128:
        raise unauthenticated("x-otv-nonce, x-otv-key-id or x-otv-signature is too long")
    return SignedHeaders(key_id, timestamp, nonce, signature, _digest(values, raw))


def refused_key_id(metadata: Iterable[Any]) -> str:
    """The key id a refused call named, for the audit (bounded; a session call names none)."""
    values = _values(metadata)
    return values.get(KEY_ID_HEADER, "")[:128]
