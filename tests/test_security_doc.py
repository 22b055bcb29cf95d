"""docs/security.md's worked examples (otv-ed25519-v1, otv-session-v1) and key file match the implementation."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.signing import SigningKey

from otv.v1 import reader_service_pb2
from otv_sdk import session_scheme
from otv_sdk.signing import _b64, _unb64, canonical_string, content_hash, public_key_of, save_key_file

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def _example() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("**Worked example**") :]
    rows = re.findall(r"^\| ([^|]+?) \| (.+?) \|$", section, re.M)
    values: dict[str, str] = {}
    for name, value in rows:
        values[name] = value
    return values


def test_worked_example_signs_as_documented() -> None:
    example = _example()
    code = re.compile(r"`([^`]+)`")
    seed = code.findall(example["private key (seed)"])[0]
    assert _unb64(seed) == bytes(range(32))
    assert code.findall(example["public key"])[0] == public_key_of(seed)
    key_id, audience = code.findall(example["key id, audience"])
    method = code.findall(example["method"])[0]
    request = reader_service_pb2.GetPracticeRequest(name="practices/demo")
    body = request.SerializeToString()
    assert code.findall(example["request"])[1] == body.hex()
    timestamp, nonce = code.findall(example["timestamp, nonce"])
    assert _unb64(nonce) == bytes(16)
    digest = code.findall(example["content hash"])[0]
    assert digest == content_hash(body)
    message = canonical_string(key_id, audience, method, timestamp, nonce, digest)
    signature = _b64(SigningKey(_unb64(seed)).sign(message).signature)
    assert code.findall(example["signature"])[0] == signature


def _session_example() -> tuple[dict[str, str], list[str]]:
    """The otv-session-v1 worked example: its table, and its code blocks (HKDF info, canonical string)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("**Worked example (otv-session-v1)**")
    section = text[start : text.index("## For other languages", start)]
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+?) \|$", section, re.M))
    blocks = re.findall(r"^```\n(.*?)\n```$", section, re.M | re.S)
    return rows, blocks


def test_session_worked_example_derives_and_macs_as_documented() -> None:
    example, (info_block, canonical_block) = _session_example()
    code = re.compile(r"`([^`]+)`")

    def one(row: str) -> str:
        (value,) = code.findall(example[row])
        return value

    client_private = _unb64(one("client X25519 private key"))
    server_private = _unb64(one("server X25519 private key"))
    assert client_private == bytes(range(32))
    assert server_private == bytes(range(32, 64))
    client = X25519PrivateKey.from_private_bytes(client_private)
    server = X25519PrivateKey.from_private_bytes(server_private)
    client_public = client.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    server_public = server.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert one("client public key") == _b64(client_public)
    assert one("server public key") == _b64(server_public)
    session_id = one("session id")
    assert _unb64(session_id) == bytes(16)
    assert session_scheme.is_valid_session_id(session_id)
    key_id, audience = code.findall(example["key id, audience"])

    # Both sides agree on the secret and so on the key.
    shared = client.exchange(server.public_key())
    assert server.exchange(client.public_key()) == shared
    assert one("shared secret (X25519)") == _b64(shared)
    key = session_scheme.derive_session_key(shared, session_id, key_id, audience, client_public, server_public)
    assert one("session key (HKDF)") == _b64(key)
    # The info block is exactly what the key is derived over (HKDF-SHA256, salt the session id).
    assert info_block.splitlines() == ["otv-session-v1", key_id, audience, _b64(client_public), _b64(server_public)]
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=session_id.encode(), info=info_block.encode())
    assert hkdf.derive(shared) == key

    method = one("method")
    body = reader_service_pb2.GetPracticeRequest(name="practices/demo").SerializeToString()
    assert code.findall(example["request"])[1] == body.hex()
    timestamp, sequence = code.findall(example["timestamp, sequence"])
    digest = one("content hash")
    assert digest == content_hash(body)
    canonical = session_scheme.canonical_string(session_id, audience, method, timestamp, sequence, digest)
    assert canonical_block.encode() == canonical
    assert one("MAC") == session_scheme.call_mac(key, canonical)


def test_key_file_fields_are_the_documented_ones(tmp_path: Path) -> None:
    path = tmp_path / "alpha.key"
    save_key_file(path, "alpha", "alpha-1", _b64(bytes(range(32))), "otv")
    stored = json.loads(path.read_text(encoding="utf-8"))
    text = DOC.read_text(encoding="utf-8")
    for field in stored:
        assert f"| `{field}` |" in text, field
    assert len(stored["private_key"]) == 43
    assert path.stat().st_mode & 0o777 == 0o600
    assert content_hash(b"") in text
