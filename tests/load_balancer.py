"""Several gateway processes on one PostgreSQL database behind nginx as a gRPC load balancer.

nginx comes from the machine's packages (Debian's `nginx`; `.ci/run` installs it): open-source
nginx checks upstreams only passively, so membership is decided by calls: a replica that refuses a
connection or times out (`grpc_next_upstream error timeout http_502 http_503`) is skipped for
`fail_timeout` after `max_fails` failures, and the call that met it is retried on the next replica
when nothing of it reached the failed one. A stream already running on a replica that dies ends
with an error; the client reconnects through nginx with its cursor and lands on a live replica.

Each replica is `gateway_process.py` (the test-only header identity, so one test acts as several
partners) with the reference PVS plugin on one shared SQLite file, as two replicas of a practice
with an in-process adapter would share its PVS.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SECRET
from store_backends import require_postgres, store_for

from otv_sdk.reference import create_adapter

__all__ = [
    "PRACTICE",
    "Cluster",
    "Replica",
    "cluster",
    "nginx",
    "nginx_binary",
    "require_nginx",
    "start_replica",
    "write_config",
]

LAUNCHER = Path(__file__).parent / "gateway_process.py"
PRACTICE = "demo"
_NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in _NGINX_PATHS if os.access(path, os.X_OK)), None)


def require_nginx() -> str:
    """The nginx binary; skips when there is none outside CI (CI must have it: see .ci/run)."""
    binary = nginx_binary()
    if binary is None:
        reason = "nginx is not installed (apt-get install nginx); the load-balancer tests need it"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI installs it in .ci/run)")
        pytest.skip(reason)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_config(directory: Path, port: int, upstreams: Sequence[str], *, fail_timeout: int = 10) -> str:
    """A gRPC proxy on `port` over `upstreams`; temp paths inside `directory`, so it runs as any
    user without touching the system's nginx.

    Calls of one otv-session-v1 session go to one replica (the one that opened it holds its key):
    nginx hashes the `x-otv-session` header; calls without one are spread by their request id."""
    servers = "\n".join(f"    server {address} max_fails=1 fail_timeout={fail_timeout}s;" for address in upstreams)
    temp = "\n".join(
        f"  {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
error_log {directory / "error.log"} warn;
pid {directory / "nginx.pid"};
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}
  map $http_x_otv_session $otv_affinity {{
    ""      $request_id;
    default $http_x_otv_session;
  }}
  upstream gateways {{
    hash $otv_affinity consistent;
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port} http2;
    location / {{
      grpc_pass grpc://gateways;
      grpc_next_upstream error timeout http_502 http_503;
      grpc_next_upstream_tries 3;
      grpc_connect_timeout 2s;
      grpc_read_timeout 1h;
      grpc_send_timeout 1h;
    }}
  }}
}}
"""


async def _wait_for_port(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    for _ in range(200):
        if process.returncode is not None:
            raise AssertionError(f"nginx exited; see {log}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nginx did not listen on {port}")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _open_log(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


@asynccontextmanager
async def nginx(directory: Path, upstreams: Sequence[str]) -> AsyncIterator[str]:
    """nginx in the foreground in front of `upstreams`; yields its address."""
    binary = require_nginx()
    port = free_port()
    config = directory / "nginx.conf"
    _write(config, nginx_config(directory, port, upstreams))
    log = _open_log(directory / "stderr.log")
    process = await asyncio.create_subprocess_exec(
        binary,
        "-p",
        str(directory),
        "-c",
        str(config),
        "-g",
        "daemon off;",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    os.close(log)  # nginx has its own copy
    try:
        await _wait_for_port(port, process, directory / "stderr.log")
        yield f"127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGQUIT)  # graceful: lets open streams end
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@dataclass
class Replica:
    """One gateway process; `address` is where it listens itself (not through nginx)."""

    config: Path
    address: str
    process: asyncio.subprocess.Process

    def kill(self) -> None:
        """As a crash: no draining, streams on it break."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)


def write_config(path: Path, state_store: str, pvs: Path, port: int, anchor: str) -> Path:
    path.write_text(
        f"""[gateway]
listen = "127.0.0.1:{port}"
shutdown_grace_seconds = 1
secret_key = "{SECRET}"
state_store = "{state_store}"

[practices.{PRACTICE}.adapter]
plugin = "reference"
settings = {{ database = "{pvs}", demo = true, demo_anchor = "{anchor}" }}
"""
    )
    return path


async def start_replica(config: Path) -> Replica:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LAUNCHER),
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 90)).decode()
    match = re.search(r"listening on (\S+) ", line)
    if match is None:
        process.kill()
        await process.wait()
        raise AssertionError(f"gateway did not start: {line!r}")
    return Replica(config, match.group(1), process)


@dataclass
class Cluster:
    replicas: list[Replica]
    balancer: str  # nginx's address: what partners dial
    pvs: Path


@asynccontextmanager
async def cluster(directory: Path, anchor: str, *, replicas: int = 3) -> AsyncIterator[Cluster]:
    """`replicas` gateways on one fresh PostgreSQL schema and one PVS, behind nginx."""
    require_postgres()
    require_nginx()
    pvs = directory / "pvs.sqlite"
    seeded = create_adapter(PRACTICE, {"database": str(pvs), "demo": True, "demo_anchor": anchor})
    await seeded.aclose()  # the practice exists before the replicas open it
    with store_for("postgres", directory) as (store, url):
        store.close()
        started: list[Replica] = []
        try:
            for index in range(replicas):  # one after the other: they race on nothing at start-up then
                config = write_config(directory / f"replica-{index}.toml", url, pvs, free_port(), anchor)
                started.append(await start_replica(config))
            async with nginx(directory / "nginx", [r.address for r in started]) as balancer:
                yield Cluster(started, balancer, pvs)
        finally:
            for replica in started:
                replica.kill()
            await asyncio.gather(*(r.process.wait() for r in started))
