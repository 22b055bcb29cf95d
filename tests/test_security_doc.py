"""docs/security.md's worked signing example and key file description match the implementation."""

from __future__ import annotations

import json
import re
from pathlib import Path

from nacl.signing import SigningKey

from otv.v1 import reader_service_pb2
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
