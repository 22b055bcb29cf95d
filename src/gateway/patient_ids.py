"""Partner-scoped patient identifiers.

A partner never sees the PVS's patient id. It sees `scope(partner, pvs_id)`: the PVS id encrypted
deterministically (AES-SIV) under a key derived for that partner (HKDF from the gateway's
secret). So the identifier is stable across calls, reveals nothing, and is meaningless under any
other partner's key: presented by another partner it simply does not decrypt, which the gateway
answers exactly like an unknown patient. Page tokens that carry PVS ids are scoped the same way.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["PatientIdScope"]

_PATIENT = b"patient"
_PAGE = b"page"


class PatientIdScope:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the gateway secret must be at least 32 bytes")
        self._secret = secret

    @lru_cache(maxsize=1024)  # noqa: B019 - one scope per gateway; bounded
    def _cipher(self, partner_id: str) -> AESSIV:
        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"otv/v1 patient ids|" + partner_id.encode())
        return AESSIV(key.derive(self._secret))

    def _seal(self, partner_id: str, value: str, purpose: bytes) -> str:
        sealed = self._cipher(partner_id).encrypt(value.encode(), [purpose])
        return base64.b32encode(sealed).decode().rstrip("=").lower()

    def _open(self, partner_id: str, token: str, purpose: bytes) -> str | None:
        try:
            raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
            return self._cipher(partner_id).decrypt(raw, [purpose]).decode()
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None

    def to_partner(self, partner_id: str, pvs_id: str) -> str:
        return self._seal(partner_id, pvs_id, _PATIENT)

    def from_partner(self, partner_id: str, scoped_id: str) -> str | None:
        """The PVS id, or None if this partner was never given that identifier."""
        return self._open(partner_id, scoped_id, _PATIENT)

    def page_token_to_partner(self, partner_id: str, token: str) -> str:
        return self._seal(partner_id, token, _PAGE) if token else ""

    def page_token_from_partner(self, partner_id: str, token: str) -> str | None:
        return self._open(partner_id, token, _PAGE) if token else ""
