"""The otv-session-v1 scheme: one signed handshake, then an HMAC per call (docs/security.md).

Why: an Ed25519 signature per call and a nonce written to the shared store per call cost the
gateway more than the call itself. A session moves the asymmetric work to one handshake every few
minutes; each call is then authenticated by HMAC-SHA256 (a microsecond) under a key that only the
partner and the one gateway replica holding the session know, and replay is refused by a sequence
window in that replica's memory.

Handshake (SessionService.OpenSession, itself signed with otv-ed25519-v1, so only the holder of a
registered private key can open a session): the partner sends a session id it chose and a fresh
X25519 public key; the gateway answers with its own fresh X25519 public key. Both derive

    key = HKDF-SHA256(ikm  = X25519(own private, other's public),
                      salt = UTF-8 session id,
                      info = "otv-session-v1\\n<key id>\\n<audience>\\n<client public b64>\\n<server public b64>",
                      length = 32)

The key never travels, so a session is safe on a plaintext channel too; the partner's signature
binds its public key to its key id, and a party in the middle who swaps the gateway's public key
learns no key the gateway accepts.

Each call carries these metadata entries:

    x-otv-scheme          otv-session-v1
    x-otv-session         the session id
    x-otv-sequence        1, 2, 3, ... per session (decimal; at most 2^53 - 1)
    x-otv-timestamp       Unix time in whole seconds, decimal
    x-otv-content-sha256  SHA-256 of the exact serialized request message, lower-case hex
    x-otv-mac             HMAC-SHA256(key, canonical string), base64url without padding

The canonical string is these seven lines joined by "\\n" (no trailing newline), UTF-8:

    otv-session-v1
    <session id>
    <audience>
    <full method, e.g. /otv.v1.ReaderService/GetPractice>
    <timestamp>
    <sequence>
    <content sha256>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "MAC_HEADER",
    "MAX_SEQUENCE",
    "SEQUENCE_HEADER",
    "SESSION_HEADER",
    "SESSION_SCHEME",
    "KeyAgreement",
    "call_mac",
    "canonical_string",
    "derive_session_key",
    "is_valid_session_id",
    "new_session_id",
]

SESSION_SCHEME = "otv-session-v1"
SESSION_HEADER = "x-otv-session"
SEQUENCE_HEADER = "x-otv-sequence"
MAC_HEADER = "x-otv-mac"
# Sequence numbers stay exact in every language's numbers (JavaScript's included).
MAX_SEQUENCE = 2**53 - 1
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_session_id() -> str:
    """16 random bytes: a partner's session ids must not be guessable by other partners."""
    return _b64(secrets.token_bytes(16))


def is_valid_session_id(text: str) -> bool:
    return _SESSION_ID.fullmatch(text) is not None


class KeyAgreement:
    """One side's fresh X25519 key pair for one session; used once, then forgotten."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public_key = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def shared_secret(self, other_public_key: bytes) -> bytes:
        """X25519 with the other side's public key; ValueError for bytes that are not one."""
        if len(other_public_key) != 32:
            raise ValueError("an X25519 public key has 32 bytes")
        return self._private.exchange(X25519PublicKey.from_public_bytes(other_public_key))


def derive_session_key(
    shared_secret: bytes, session_id: str, key_id: str, audience: str, client_public: bytes, server_public: bytes
) -> bytes:
    info = "\n".join((SESSION_SCHEME, key_id, audience, _b64(client_public), _b64(server_public))).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=session_id.encode(), info=info).derive(shared_secret)


def canonical_string(
    session_id: str, audience: str, method: str, timestamp: str, sequence: str, content_sha256: str
) -> bytes:
    return "\n".join((SESSION_SCHEME, session_id, audience, method, timestamp, sequence, content_sha256)).encode()


def call_mac(key: bytes, canonical: bytes) -> str:
    return _b64(hmac.digest(key, canonical, hashlib.sha256))
