"""The first ten minutes: README.md followed literally on a fresh clone, and the CLI's edges a
newcomer meets first (a missing key file, help texts, withdrawing a grant)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

from otv_cli.main import _parser

ROOT = Path(__file__).resolve().parent.parent
OTV = [sys.executable, "-m", "otv_cli.main"]


async def _run(*args: str, timeout: float = 60, cwd: Path | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# --- the client's key file ------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["missing", "directory", "not json", "no private key"])
async def test_client_without_a_usable_key_file_exits_2_and_calls_nothing(tmp_path: Path, problem: str) -> None:
    connections = 0

    def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    key = tmp_path / "partner.key"
    expected = {
        "missing": "does not exist",
        "directory": "cannot read key file",
        "not json": "is not an otv key file",
        "no private key": "is not an otv key file",
    }[problem]
    if problem == "directory":
        key.mkdir()
    elif problem == "not json":
        key.write_text("-----BEGIN PRIVATE KEY-----\n")
    elif problem == "no private key":
        key.write_text('{"partner": "alpha", "key_id": "alpha-1", "audience": "otv"}\n')
    try:
        code, out, err = await _run(
            *OTV, "client", "calendars", "--target", f"127.0.0.1:{port}", "--key", str(key), timeout=60
        )
    finally:
        server.close()
        await server.wait_closed()
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("otv: "), err
    assert expected in err
    assert str(key) in err
    assert "no call was made" in err
    assert "Traceback" not in err
    assert connections == 0


def test_every_client_option_has_help_text() -> None:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    client = commands.choices["client"]
    actions = next(a for a in client._actions if isinstance(a, argparse._SubParsersAction))
    assert {"calendars", "busy", "slots", "patient", "hold", "confirm", "appointments", "cancel"} <= set(
        actions.choices
    )
    for name, sub in actions.choices.items():
        options = [a for a in sub._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        assert any("--target" in a.option_strings for a in options), name
        for option in options:
            assert option.help, f"otv client {name} {option.option_strings[0]} has no help text"


async def test_partner_revoke_grant_withdraws_it(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nstate_store = "sqlite:///state.sqlite"\n'
        '[practices.demo.adapter]\nplugin = "reference"\n[practices.nord.adapter]\nplugin = "reference"\n'
    )
    code, _, err = await _run(*OTV, "partner", "add", "--config", str(config), "--id", "alpha",
                              "--grant", "demo:reader", "--grant", "nord")  # fmt: skip
    assert code == 0, err
    code, out, err = await _run(*OTV, "partner", "revoke-grant", "--config", str(config), "--id", "alpha",
                                "--practice", "demo")  # fmt: skip
    assert code == 0, err
    assert "grant of alpha for demo withdrawn" in out
    code, out, _ = await _run(*OTV, "partner", "list", "--config", str(config))
    assert "grant alpha -> demo" not in out
    assert "grant alpha -> nord: *" in out


# --- README.md on a fresh clone -------------------------------------------------------------------


def _sh_blocks(readme: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"```sh\n(.*?)```", readme, re.S)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _command(line: str) -> list[str]:
    return shlex.split(line, comments=True)


@pytest.mark.slow
async def test_readme_on_a_fresh_clone(tmp_path: Path) -> None:
    """Clone the repository, start it with the README's run command on other ports, and walk the
    README's client commands against it with --target: what a newcomer types, as subprocesses.

    The existing virtual environment stands in for `make install` (the clone's `.venv` links to
    it, make is told it is up to date, and PYTHONPATH puts the clone's own sources first)."""
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "otv").exists() or shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git, make and the tests running in the project's virtual environment")
    clone = tmp_path / "otv"
    code, out, err = await _run("git", "clone", "--quiet", str(ROOT), str(clone), timeout=120)
    assert code == 0, out + err
    (clone / ".venv").symlink_to(venv, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(clone / "src")}

    readme = (clone / "README.md").read_text(encoding="utf-8")
    blocks = _sh_blocks(readme)
    run_lines = [line for block in blocks for line in block if line.startswith("make run LISTEN=")]
    assert run_lines, "README.md shows no `make run LISTEN=...`"
    listen, http_listen = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    run = []
    for word in _command(run_lines[0]):
        name, _, _value = word.partition("=")
        run.append({"LISTEN": f"LISTEN={listen}", "HTTP_LISTEN": f"HTTP_LISTEN={http_listen}"}.get(name, word))
    assert any(word.startswith("HTTP_LISTEN=") for word in run)
    run[1:1] = ["-o", ".venv/.installed-stamp"]  # make: the venv is installed

    gateway = await asyncio.create_subprocess_exec(
        *run, cwd=clone, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert gateway.stdout is not None
        printed = ""
        while f"listening on {listen}" not in printed:
            line = (await asyncio.wait_for(gateway.stdout.readline(), 90)).decode()
            assert line, printed
            printed += line
        assert f"otv gateway listening on {listen} (practices: demo)" in printed
        assert (clone / "var" / "demo-partner.key").exists()

        values: dict[str, str] = {}
        client_lines = [
            (block, i) for block in blocks for i, line in enumerate(block) if line.startswith(".venv/bin/otv client ")
        ]
        assert len(client_lines) >= 9, "README.md lost its client commands"
        for block, index in client_lines:
            line = block[index]
            words = [_substitute(word, values) for word in _command(line)]
            code, out, err = await _run(*words, "--target", listen, cwd=clone, timeout=60)
            assert code == 0, f"{line}\n{out}{err}"
            _check(words[2], words, out, values)
            comment = block[index + 1] if index + 1 < len(block) and block[index + 1].startswith("# ") else ""
            word = comment[2:].split(" ", 1)[0]
            if word.isalpha():  # "# patient ...": the first output line starts the same way
                assert out.startswith(f"{word} "), f"{line}: {out!r} does not look like {comment!r}"
        assert {"PATIENT", "COLUMN", "START", "HOLD", "APPOINTMENT", "ETAG", "CANCELLED"} <= set(values)

        gateway.send_signal(signal.SIGTERM)  # make forwards nothing; stop the whole group below
    finally:
        if gateway.returncode is None:
            os.killpg(gateway.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(gateway.wait(), 30)
            except TimeoutError:
                os.killpg(gateway.pid, signal.SIGKILL)
                await gateway.wait()


def _substitute(word: str, values: dict[str, str]) -> str:
    if word.startswith("$"):
        assert word[1:] in values, f"README.md uses {word} before a command printed it"
        return values[word[1:]]
    return word


def _check(action: str, words: list[str], out: str, values: dict[str, str]) -> None:
    lines = out.splitlines()
    assert lines, f"otv client {action} printed nothing"
    if action == "calendars":
        assert any(line.startswith("column berg: ") for line in lines), out
        assert any(line.startswith("type kontrolle: ") for line in lines), out
    elif action == "busy":
        assert lines[0].startswith("column "), out
    elif action == "slots":
        slots = [re.fullmatch(r"([a-z0-9-]+): (\S+) - (\S+)", line) for line in lines]
        assert slots, out
        assert all(slots), out
        if "--start-in-days" in words:
            first = slots[0]
            assert first is not None
            values["COLUMN"], values["START"] = first.group(1), first.group(2)
    elif action == "patient":
        match = re.fullmatch(r"patient (\S+): (created|matched)", lines[0])
        assert match, out
        values["PATIENT"] = match.group(1)
    elif action == "hold":
        match = re.match(r"hold (\S+): kontrolle in (\S+) (\S+) - ", lines[0])
        assert match, out
        assert (match.group(2), match.group(3)) == (values["COLUMN"], values["START"])
        values["HOLD"] = match.group(1)
    elif action == "confirm":
        match = re.fullmatch(r"appointment (\S+): booked, .* patient (\S+), etag (\S+)", lines[0])
        assert match, out
        assert match.group(2) == values["PATIENT"]
        values["APPOINTMENT"], values["ETAG"] = match.group(1), match.group(3)
    elif action == "appointments":
        assert any(line.startswith(f"appointment {values['APPOINTMENT']}: booked") for line in lines), out
    elif action == "cancel":
        assert lines[0].startswith(f"appointment {values['APPOINTMENT']}: cancelled"), out
        values["CANCELLED"] = values["APPOINTMENT"]
    else:
        raise AssertionError(f"README.md shows `otv client {action}`, which this test does not know")
