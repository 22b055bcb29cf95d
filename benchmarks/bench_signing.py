"""What authenticated calls cost: the gateway with each scheme against a bare grpcio server.

    python benchmarks/bench_signing.py [--seconds 4] [--rounds 5] [--concurrency 128] [--json PATH]

All answer ReaderService.GetPractice from a constant (an echo-like cheap method): the bare server
with a plain servicer and no checks; the gateway through its whole stack (authentication
interceptor, routing, privacy and booking wrappers) in front of an adapter that answers from
memory, with calls authenticated by otv-session-v1 (one signed handshake, then an HMAC per call),
by otv-ed25519-v1 (a signature and a stored nonce per call), and not at all (the test-only
`identify` hook), which tells the gateway's own cost from the cost of authentication. Each server
runs in its own process; this process drives the same load at each (requests authenticated the way
the partner client does it: a SessionSigner per channel, or a fresh signature per call) and counts
completed calls. It also times one Ed25519 signature and verification and one HMAC on this machine.

Throughput on a shared machine drifts by a factor of two within minutes, so the servers take turns:
every round measures each once, in an order that alternates between rounds, and the ratio is taken
within a round. Besides calls per second, the CPU time each server process and this load process
spent per call is reported: on a small machine the load generator competes for the same cores.
Target: the gateway with otv-session-v1 reaches at least 70% of the bare server's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from signed_partner import NO_PARTNER_LIMITS

from otv.v1 import practice_pb2, reader_service_pb2, reader_service_pb2_grpc
from otv_sdk.models import AdapterInfo, PracticeProfile
from otv_sdk.ports import Adapter, CallContext
from otv_sdk.reference import create_adapter
from otv_sdk.session_scheme import call_mac
from otv_sdk.session_scheme import canonical_string as session_canonical_string
from otv_sdk.session_signer import SessionSigner
from otv_sdk.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Signer,
    canonical_string,
    content_hash,
    generate_key_pair,
    public_key_bytes,
    verify_signature,
)

INFO = AdapterInfo("otv", "echo", "1")
METHOD = "/otv.v1.ReaderService/GetPractice"


def echo_adapter(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    """The reference adapter, but its calendar data port answers GetPractice's profile from memory.

    The gateway computes ReaderService from the data ports (`adapter.calendar`), so that is the
    port patched: every GetPractice the gateway serves reads the profile from here (or from the
    gateway's own configuration cache in front of it), never from SQLite."""
    adapter = create_adapter(practice_id, {"database": ":memory:", "demo": True})
    assert adapter.calendar is not None
    profile = PracticeProfile("Echo", "Europe/Berlin")

    async def get_practice(ctx: CallContext) -> PracticeProfile:
        return profile

    adapter.calendar.get_practice = get_practice  # type: ignore[method-assign]
    return adapter


class _Bare(reader_service_pb2_grpc.ReaderServiceServicer):
    async def GetPractice(self, request: Any, context: Any) -> Any:
        return reader_service_pb2.GetPracticeResponse(
            practice=practice_pb2.Practice(name=request.name, display_name="Echo", time_zone="Europe/Berlin")
        )


async def _serve_bare(port_file: Path) -> None:
    server = grpc.aio.server()
    # The generated base answers UNIMPLEMENTED for every other method; its stub calls them abstract.
    reader_service_pb2_grpc.add_ReaderServiceServicer_to_server(_Bare(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await asyncio.to_thread(port_file.write_text, str(port))
    await server.wait_for_termination()


async def _serve_gateway(port_file: Path, folder: Path, *, signed: bool) -> None:
    from gateway.app import Gateway
    from gateway.config import parse_config
    from gateway.partners import PartnerRegistry
    from otv_sdk.ports import CallContext

    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "state_store": f"sqlite:///{folder / port_file.stem}.sqlite",
                "rate_limit": NO_PARTNER_LIMITS,
            },
            "practices": {"demo": {"adapter": {"plugin": "bench_signing:echo_adapter"}}},
        },
        folder,
    )

    def unsigned(context: Any, request_id: str | None) -> CallContext:
        return CallContext(partner_id="bench", deadline=None, request_id=request_id)

    gateway = await Gateway.start(config, None if signed else unsigned)
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner("bench")
    registry.add_key("bench", "bench-1", json.loads((folder / "key.json").read_text())["public"])
    registry.grant("bench", "demo")
    await asyncio.to_thread(port_file.write_text, str(gateway.port))
    await gateway.wait_for_termination()


# Which servers run, and how their calls are authenticated (None: not at all).
MODES = {"bare": None, "session": "session", "gateway": "ed25519", "unsigned_gateway": None}
LABELS = {
    "bare": "bare grpcio server",
    "session": "gateway, otv-session-v1",
    "gateway": "gateway, otv-ed25519-v1",
    "unsigned_gateway": "gateway, unsigned",
}


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _load(
    port: int, seconds: float, concurrency: int, scheme: str | None, signer: Signer, pid: int
) -> dict[str, float]:
    """Calls per second, and CPU microseconds per call of the server (pid) and of this process."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
    sessions = [SessionSigner(signer, channel) for channel in channels]
    request = reader_service_pb2.GetPracticeRequest(name="practices/demo")
    body = request.SerializeToString()
    done = 0
    stop = 0.0

    async def worker(index: int) -> None:
        nonlocal done
        stub = reader_service_pb2_grpc.ReaderServiceStub(channels[index % len(channels)])
        session = sessions[index % len(channels)]
        while time.perf_counter() < stop:
            # Authenticated the way the partner client does it: fresh headers for every call.
            metadata: Any = None
            if scheme == "session":
                metadata = await session.headers(METHOD, body)
            elif scheme == "ed25519":
                metadata = signer.headers(METHOD, body)
            await stub.GetPractice(request, timeout=10, metadata=metadata)
            done += 1

    stop = time.perf_counter() + 0.5  # warm the channels
    await asyncio.gather(*(worker(i) for i in range(8)))
    done = 0
    server_cpu, own_cpu, started = _cpu_seconds(pid), _own_cpu_seconds(), time.perf_counter()
    stop = started + seconds
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    server_cpu, own_cpu = _cpu_seconds(pid) - server_cpu, _own_cpu_seconds() - own_cpu
    for channel in channels:
        await channel.close()
    return {
        "calls_per_s": done / elapsed,
        "server_cpu_us_per_call": 1e6 * server_cpu / done,
        "client_cpu_us_per_call": 1e6 * own_cpu / done,
    }


def _start(mode: str, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = folder / f"{mode}.port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--folder", str(folder)])
    for _ in range(300):
        if port_file.exists() and port_file.read_text():
            return process, int(port_file.read_text())
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the {mode} server did not start")


def _median(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def _crypto_us(signer: Signer, public_key: str) -> dict[str, float]:
    """Median µs of one call's signature (all its headers) and of one verification, alone."""
    body = reader_service_pb2.GetPracticeRequest(name="practices/demo").SerializeToString()
    key = public_key_bytes(public_key)
    headers = dict(signer.headers(METHOD, body))
    message = canonical_string(
        signer.key_id, signer.audience, METHOD, headers[TIMESTAMP_HEADER], headers[NONCE_HEADER], content_hash(body)
    )
    signature = headers[SIGNATURE_HEADER]
    assert verify_signature(key, message, signature)

    def median_us(work: Any) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(400):
                work()
            times.append((time.perf_counter() - started) / 400 * 1e6)
        return statistics.median(times)

    session_key = bytes(32)
    session_canonical = session_canonical_string("s" * 22, "otv", METHOD, "1", "1", content_hash(body))
    return {
        "sign_us": round(median_us(lambda: signer.headers(METHOD, body)), 1),
        "verify_us": round(median_us(lambda: verify_signature(key, message, signature)), 1),
        "hmac_us": round(median_us(lambda: call_mac(session_key, session_canonical)), 2),
    }


def run(seconds: float, concurrency: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        private, public = generate_key_pair()
        (folder / "key.json").write_text(json.dumps({"public": public}))
        signer = Signer("bench-1", private, "otv")
        servers = {mode: _start(mode, folder) for mode in MODES}
        try:
            for index in range(rounds):
                order = list(MODES) if index % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    process, port = servers[mode]
                    load = _load(port, seconds, concurrency, MODES[mode], signer, process.pid)
                    samples[mode].append(asyncio.run(load))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(10)
        crypto = _crypto_us(signer, public)

    def ratios(mode: str) -> list[float]:
        return [m["calls_per_s"] / b["calls_per_s"] for m, b in zip(samples[mode], samples["bare"], strict=True)]

    return {
        "ratio": round(statistics.median(ratios("session")), 3),
        "ratios": [round(r, 3) for r in ratios("session")],
        "target_ratio": 0.7,
        "ed25519_ratio": round(statistics.median(ratios("gateway")), 3),
        "unsigned_ratio": round(statistics.median(ratios("unsigned_gateway")), 3),
        "crypto": crypto,
        "medians": {mode: {key: round(_median(samples[mode], key)) for key in samples[mode][0]} for mode in MODES},
        "rounds": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4, help="length of each measurement")
    parser.add_argument("--concurrency", type=int, default=128, help="calls in flight (enough to saturate each)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "bare":
        asyncio.run(_serve_bare(args.folder / "bare.port"))
        return
    if args.serve is not None:
        port_file = args.folder / f"{args.serve}.port"
        asyncio.run(_serve_gateway(port_file, args.folder, signed=MODES[args.serve] is not None))
        return
    result = run(args.seconds, args.concurrency, args.rounds)
    print(f"medians of {args.rounds} rounds; CPU per call: server process / load generator")
    for mode, label in LABELS.items():
        median = result["medians"][mode]
        print(
            f"{label + ':':24s} {median['calls_per_s']:5d} calls/s"
            f"   {median['server_cpu_us_per_call']:4d} / {median['client_cpu_us_per_call']:4d} µs"
        )
    verdict = "meets" if result["ratio"] >= 0.7 else "misses"
    ratios = " ".join(f"{r:.0%}" for r in result["ratios"])
    print(f"otv-session-v1 / bare:   {result['ratio']:.0%} median of rounds ({ratios}); {verdict} the 70% target")
    print(
        f"for reference:           otv-ed25519-v1 / bare {result['ed25519_ratio']:.0%},"
        f" unsigned gateway / bare {result['unsigned_ratio']:.0%}"
    )
    crypto = result["crypto"]
    print(
        f"on this machine:         Ed25519 signing a call {crypto['sign_us']} µs, verifying {crypto['verify_us']} µs;"
        f" HMAC-SHA256 of a call {crypto['hmac_us']} µs"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
