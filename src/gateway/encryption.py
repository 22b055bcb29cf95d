"""Encryption at rest for the personal values the gateway stores (AES-GCM).

Each sealed value is `v1.<key id>.<base64url(nonce + ciphertext + tag)>`, with the column it
belongs to as associated data, so a value copied into another column does not open. Keys:
`gateway.encryption_keys` (key id -> 32 bytes hex) with `gateway.encryption_key` naming the one
that seals, or the environment variable OTV_ENCRYPTION_KEYS ("id:hex,id:hex", the first seals).
Without either, a key is derived from the gateway's secret.

Rotation: add a new key and make it the sealing one; values sealed with older keys still open as
long as those keys stay configured; re-seal and then drop an old key (docs/security.md).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ENVIRONMENT_VARIABLE", "FieldCipher", "keys_from"]

ENVIRONMENT_VARIABLE = "OTV_ENCRYPTION_KEYS"
_PREFIX = "v1"


class FieldCipher:
    def __init__(self, keys: Mapping[str, bytes], sealing_key: str) -> None:
        if sealing_key not in keys:
            raise ValueError(f"the sealing key {sealing_key!r} is not among the keys")
        for key_id, key in keys.items():
            if len(key) != 32 or "." in key_id:
                raise ValueError(f"key {key_id!r} must be 32 bytes and its id must not contain '.'")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._sealing = sealing_key

    def seal(self, value: str, column: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._ciphers[self._sealing].encrypt(nonce, value.encode(), column.encode())
        return f"{_PREFIX}.{self._sealing}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, token: str, column: str) -> str:
        prefix, key_id, payload = token.split(".", 2)
        cipher = self._ciphers.get(key_id)
        if prefix != _PREFIX or cipher is None:
            raise ValueError(f"cannot open a value sealed with key {key_id!r}: is that key still configured?")
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        try:
            return cipher.decrypt(raw[:12], raw[12:], column.encode()).decode()
        except InvalidTag:
            raise ValueError("a sealed value does not open: wrong key or tampered data") from None


def keys_from(configured: Mapping[str, str], sealing: str | None, secret: bytes) -> tuple[dict[str, bytes], str]:
    """Keys from configuration, else the environment, else one derived from the gateway secret."""
    if configured:
        keys = {k: bytes.fromhex(v) for k, v in configured.items()}
        return keys, sealing or next(iter(keys))
    environment = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if environment:
        pairs = [item.split(":", 1) for item in environment.split(",") if item.strip()]
        keys = {key_id.strip(): bytes.fromhex(value.strip()) for key_id, value in pairs}
        return keys, pairs[0][0].strip()
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"otv/v1 at rest").derive(secret)
    return {"s1": derived}, "s1"
