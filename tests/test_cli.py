"""The `otv` command as a newcomer runs it: start the demo, call it, stop it with SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.app import Gateway
from gateway.config import load_config
from otv_sdk.client import PartnerClient
from otv_sdk.errors import PermissionDenied
from otv_sdk.signing import load_key_file

OTV = [sys.executable, "-m", "otv_cli.main"]


async def _run(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *OTV, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_demo_serves_health_and_calls_then_stops_on_sigterm(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *OTV, "demo", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--state-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        printed = ""
        match = None
        while match is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, printed
            printed += line
            match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        assert "demo partner key" in printed
        address = match.group(1)
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        key = tmp_path / "demo-partner.key"
        assert key.exists()
        async with PartnerClient.connect(address, signer=load_key_file(key)) as client:
            assert len((await client.list_calendars("demo", timeout=5)).columns) == 3
        code, out, err = await _run("client", "busy", "--target", address, "--days", "3", "--key", str(key))
        assert code == 0, err
        assert "column berg:" in out
        code, out, err = await _run(
            "client", "slots", "--target", address, "--type", "kontrolle", "--limit", "3", "--key", str(key)
        )
        assert code == 0, err
        assert len([line for line in out.splitlines() if line.startswith(("berg: ", "weber: "))]) == 3
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
        assert "stopped" in rest.decode()
        assert (tmp_path / "demo-practice.sqlite").exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[practices.demo.adapter]\nplugin = "refrence"\n')
    code, _out, err = await _run("gateway", "serve", "--config", str(config))
    assert code == 2
    assert "practices.demo.adapter.plugin" in err
    assert "refrence" in err


async def test_client_reports_a_failed_call(tmp_path: Path) -> None:
    # Nothing listens on port 9 (discard) of loopback here; the call fails cleanly.
    key = tmp_path / "alpha.key"
    assert (await _run("keys", "generate", "--partner", "alpha", "--out", str(key)))[0] == 0
    code, _out, err = await _run("client", "calendars", "--target", "127.0.0.1:9", "--key", str(key), timeout=60)
    assert code == 1
    assert "UNAVAILABLE" in err
    assert "is the gateway running at 127.0.0.1:9? --target" in err


async def test_keys_and_partner_commands(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nstate_store = "sqlite:///state.sqlite"\n[practices.demo.adapter]\nplugin = "reference"\n'
    )
    key = tmp_path / "alpha.key"
    code, out, err = await _run("keys", "generate", "--partner", "alpha", "--out", str(key))
    assert code == 0, err
    assert key.stat().st_mode & 0o777 == 0o600
    key_id = load_key_file(key).key_id
    assert key_id in out
    code, _, err = await _run("keys", "generate", "--partner", "alpha", "--out", str(key))
    assert code == 2
    assert "refusing to overwrite" in err
    assert load_key_file(key).key_id == key_id
    code, _, err = await _run("partner", "add", "--config", str(config), "--id", "alpha", "--key-file", str(key),
                              "--grant", "demo:reader,writer")  # fmt: skip
    assert code == 0, err
    code, out, _ = await _run("partner", "list", "--config", str(config))
    assert f"key {key_id} of alpha\n" in out
    assert "grant alpha -> demo: reader,writer" in out
    code, _, err = await _run("partner", "revoke-key", "--config", str(config), "--key-id", key_id)
    assert code == 0, err
    code, out, _ = await _run("partner", "list", "--config", str(config))
    assert f"key {key_id} of alpha (revoked)" in out
    code, _, err = await _run("partner", "revoke-key", "--config", str(config), "--key-id", key_id)
    assert code == 2
    assert "no active key" in err


async def test_a_revoked_grant_refuses_the_partners_next_calls_and_counts_them(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nlisten = "127.0.0.1:0"\nshutdown_grace_seconds = 0\nstate_store = "sqlite:///state.sqlite"\n'
        '[practices.demo.adapter]\nplugin = "reference"\n'
        '[practices.demo.adapter.settings]\ndemo = true\ndatabase = ":memory:"\n'
    )
    key = tmp_path / "alpha.key"
    assert (await _run("keys", "generate", "--partner", "alpha", "--out", str(key)))[0] == 0
    code, _, err = await _run("partner", "add", "--config", str(config), "--id", "alpha", "--key-file", str(key),
                              "--grant", "demo")  # fmt: skip
    assert code == 0, err
    gateway = await Gateway.start(load_config(config))

    def denied() -> float:
        return gateway.metrics.registry.get_sample_value("otv_refused_calls_total", {"reason": "denied"}) or 0.0

    try:
        async with PartnerClient.connect(gateway.address, signer=load_key_file(key)) as client:
            assert (await client.list_calendars("demo")).columns  # granted: served, over a session
            before = denied()
            code, out, err = await _run("partner", "revoke-grant", "--config", str(config), "--id", "alpha",
                                        "--practice", "demo")  # fmt: skip
            assert code == 0, err
            assert "withdrawn" in out
            # Another process changed the registry: the gateway sees it within 5 s (its registry's age).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 7
            while True:
                try:
                    await client.list_calendars("demo")
                except PermissionDenied:
                    break
                assert loop.time() < deadline, "calls still served 7 s after the grant was withdrawn"
                await asyncio.sleep(0.1)
            assert denied() == before + 1
            with pytest.raises(PermissionDenied):  # and it stays withdrawn
                await client.get_practice("demo")
            assert denied() == before + 2
    finally:
        await gateway.stop(0)
