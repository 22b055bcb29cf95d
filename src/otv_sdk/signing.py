"""Signed calls: the otv-ed25519-v1 scheme, for partners (signing) and the gateway (verifying).

Every call carries these metadata entries (docs/security.md has the same, for other languages):

    x-otv-scheme          otv-ed25519-v1
    x-otv-key-id          the partner's key id, as registered at the gateway
    x-otv-timestamp       Unix time in whole seconds, decimal
    x-otv-nonce           16 random bytes, base64url without padding (22 characters)
    x-otv-content-sha256  SHA-256 of the exact serialized request message, lower-case hex
    x-otv-signature       Ed25519 signature of the canonical string, base64url without padding

The canonical string is these seven lines joined by "\\n" (no trailing newline), UTF-8:

    otv-ed25519-v1
    <key id>
    <audience: the gateway's configured name>
    <full method, e.g. /otv.v1.ReaderService/GetPractice>
    <timestamp>
    <nonce>
    <content sha256>

The verifier uses Ed25519 only, whatever a request says, and takes the key only from its own
registry by key id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Sequence

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

__all__ = [
    "HEADERS",
    "SCHEME",
    "Signer",
    "canonical_string",
    "generate_key_pair",
    "load_key_file",
    "public_key_of",
    "save_key_file",
    "verify_signature",
]

SCHEME = "otv-ed25519-v1"
SCHEME_HEADER = "x-otv-scheme"
KEY_ID_HEADER = "x-otv-key-id"
TIMESTAMP_HEADER = "x-otv-timestamp"
NONCE_HEADER = "x-otv-nonce"
CONTENT_HEADER = "x-otv-content-sha256"
SIGNATURE_HEADER = "x-otv-signature"
HEADERS = (SCHEME_HEADER, KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, CONTENT_HEADER, SIGNATURE_HEADER)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_string(key_id: str, audience: str, method: str, timestamp: str, nonce: str, content_sha256: str) -> bytes:
    return "\n".join((SCHEME, key_id, audience, method, timestamp, nonce, content_sha256)).encode()


def content_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Signer:
    """Signs calls with one of a partner's keys."""

    def __init__(self, key_id: str, private_key: bytes | str, audience: str) -> None:
        raw = _unb64(private_key) if isinstance(private_key, str) else private_key
        self.key_id = key_id
        self.audience = audience
        self._key = SigningKey(raw)

    @property
    def public_key(self) -> str:
        return _b64(bytes(self._key.verify_key))

    def sign(self, message: bytes) -> str:
        """A detached Ed25519 signature, base64url: for documents such as conformance reports."""
        return _b64(self._key.sign(message).signature)

    def headers(self, method: str, body: bytes, now: float | None = None) -> tuple[tuple[str, str], ...]:
        """Fresh metadata for one call: every call (and every retry) gets a new nonce and signature."""
        timestamp = str(int(time.time() if now is None else now))
        nonce = _b64(secrets.token_bytes(16))
        digest = content_hash(body)
        signature = self._key.sign(canonical_string(self.key_id, self.audience, method, timestamp, nonce, digest))
        return (
            (SCHEME_HEADER, SCHEME),
            (KEY_ID_HEADER, self.key_id),
            (TIMESTAMP_HEADER, timestamp),
            (NONCE_HEADER, nonce),
            (CONTENT_HEADER, digest),
            (SIGNATURE_HEADER, _b64(signature.signature)),
        )


def generate_key_pair() -> tuple[str, str]:
    """(private key, public key), each 32 bytes as base64url without padding."""
    key = SigningKey.generate()
    return _b64(bytes(key)), _b64(bytes(key.verify_key))


def public_key_bytes(public_key: str) -> bytes:
    raw = _unb64(public_key)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return raw


def verify_signature(public_key: bytes, message: bytes, signature: str) -> bool:
    try:
        raw = _unb64(signature)
        if len(raw) != 64:
            return False
        VerifyKey(public_key).verify(message, raw)
        return True
    except (BadSignatureError, ValueError):
        return False


def metadata_value(metadata: Sequence[tuple[str, str | bytes]] | None, name: str) -> str | None:
    for key, value in metadata or ():
        if key == name:
            return value.decode() if isinstance(value, bytes) else value
    return None


def save_key_file(path: str | os.PathLike[str], partner: str, key_id: str, private_key: str, audience: str) -> None:
    """A partner's key file (JSON, mode 0600): everything a client needs to sign.

    Never overwrites: an existing file may hold the only copy of a private key (FileExistsError).
    """
    data = json.dumps({"partner": partner, "key_id": key_id, "private_key": private_key, "audience": audience})
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
        handle.write(data + "\n")


def load_key_file(path: str | os.PathLike[str]) -> Signer:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return Signer(data["key_id"], data["private_key"], data["audience"])


def public_key_of(private_key: str) -> str:
    return _b64(bytes(SigningKey(_unb64(private_key)).verify_key))
