"""A partner written in Node.js from docs/security.md alone speaks otv-session-v1 to a real gateway.

Proof that the document is precise enough for another language (issue 22): examples/node-partner
opens a session (OpenSession signed with otv-ed25519-v1), derives the session key with Node's own
X25519 and HKDF, authenticates GetPractice and ListCalendars with the per-call HMAC, and checks
that a call sent again with the same metadata is refused. It uses @grpc/grpc-js from
examples/node-adapter's node_modules (CI's `npm ci`; installed here otherwise). Without Node.js
the module is skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    AUDIENCE,
    KEY_ID,
    PARTNER_ID,
    PRACTICE,
    PRIVATE_KEY,
    gateway_config,
    reference_settings,
    signer,
    start_signed,
)

from gateway.app import Gateway
from otv_sdk.client import PartnerClient
from otv_sdk.signing import save_key_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "examples" / "node-partner" / "session-client.js"
DEPENDENCIES = ROOT / "examples" / "node-adapter"
NODE = shutil.which("node")
NPM = shutil.which("npm")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run this test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    """Node.js with @grpc/grpc-js and @grpc/proto-loader in examples/node-adapter/node_modules."""
    if NODE is None:
        _unavailable("node is not installed, so the Node.js partner cannot run")
    assert NODE is not None
    if not (DEPENDENCIES / "node_modules" / "@grpc" / "grpc-js").is_dir():
        if NPM is None:
            _unavailable("npm is not installed, so the Node.js partner's dependencies cannot be installed")
        assert NPM is not None
        subprocess.run([NPM, "ci", "--prefix", str(DEPENDENCIES)], check=True, timeout=600, capture_output=True)
    return NODE


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    practices = {PRACTICE: {"adapter": {"plugin": "reference", "settings": reference_settings()}}}
    started = await start_signed(gateway_config(practices))
    yield started
    await started.stop(0)


async def run_partner(node: str, key_file: Path, target: str) -> tuple[int, dict[str, Any], str]:
    """Runs the Node client without blocking the event loop the gateway serves on."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT),
        str(key_file),
        target,
        PRACTICE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    lines = stdout.decode().strip().splitlines()
    assert len(lines) == 1, (stdout, stderr)
    assert process.returncode is not None
    return process.returncode, json.loads(lines[0]), stderr.decode()


async def test_node_partner_calls_through_a_session(node: str, gateway: Gateway, tmp_path: Path) -> None:
    key_file = tmp_path / "partner.key"
    save_key_file(key_file, PARTNER_ID, KEY_ID, PRIVATE_KEY, AUDIENCE)

    code, summary, stderr = await run_partner(node, key_file, gateway.address)

    assert code == 0, (summary, stderr)
    assert summary["ok"] is True
    assert summary["failures"] == []
    assert summary["open_session"]["status"] == "OK"
    assert summary["open_session"]["replay_window"] == 4096
    assert summary["get_practice"]["status"] == "OK"
    assert summary["get_practice"]["name"] == f"practices/{PRACTICE}"
    async with PartnerClient.connect(gateway.address, signer=signer()) as partner:
        calendar = await partner.list_calendars(PRACTICE)
        practice = await partner.get_practice(PRACTICE)
    assert summary["get_practice"]["time_zone"] == practice.time_zone
    seen = summary["list_calendars"]
    assert seen["status"] == "OK"
    assert seen["columns"] == len(calendar.columns) > 0
    assert seen["column_names"] == [f"practices/{PRACTICE}/columns/{c}" for c in calendar.column_ids()]
    assert seen["practitioners"] == len(calendar.practitioners)
    assert seen["rooms"] == len(calendar.rooms)
    assert seen["appointment_types"] == len(calendar.appointment_types)
    # The same call sent again, byte for byte: refused as a replay, not as an unknown session,
    # and the session stays usable for the next number.
    assert summary["replay"]["status"] == "UNAUTHENTICATED"
    assert summary["replay"]["reason"] != "otv.dev/SESSION_UNKNOWN"
    assert summary["after_replay"]["status"] == "OK"
    # A session this gateway never opened: the documented signal to open one.
    assert summary["unknown_session"] == {"status": "UNAUTHENTICATED", "reason": "otv.dev/SESSION_UNKNOWN"}


async def test_node_partner_with_another_audience_cannot_open_a_session(
    node: str, gateway: Gateway, tmp_path: Path
) -> None:
    key_file = tmp_path / "partner.key"
    save_key_file(key_file, PARTNER_ID, KEY_ID, PRIVATE_KEY, "not-" + AUDIENCE)

    code, summary, stderr = await run_partner(node, key_file, gateway.address)

    assert code == 1, (summary, stderr)
    assert summary["ok"] is False
    assert summary["open_session"]["status"] == "UNAUTHENTICATED"
    assert "get_practice" not in summary
