"""What signed calls cost: the gateway (signature, nonce, grant checked) against a bare grpcio server.

    python benchmarks/bench_signing.py [--seconds 5] [--concurrency 128] [--runs 3] [--json PATH]

Both answer ReaderService.GetPractice from a constant (an echo-like cheap method): the bare server
with a plain servicer and no checks, the gateway through its whole stack (authentication interceptor,
routing, privacy and booking wrappers) in front of an adapter that answers from memory. Each server
runs in its own process; this process drives the same load at both (enough calls in flight to
saturate either; the gateway admits waiting calls in batches, so it needs more in flight than the
bare server to reach its peak) and counts completed calls. Requests are signed the way the partner
client signs them.
Target: the signed gateway reaches at least 70% of the bare server's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from otv.v1 import practice_pb2, reader_service_pb2, reader_service_pb2_grpc
from otv_sdk.models import AdapterInfo, PracticeProfile
from otv_sdk.ports import Adapter, CallContext
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer

INFO = AdapterInfo("otv", "echo", "1")
METHOD = "/otv.v1.ReaderService/GetPractice"


def echo_adapter(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    """The reference adapter, but GetPractice answers from memory."""
    adapter = create_adapter(practice_id, {"database": ":memory:", "demo": True})
    profile = PracticeProfile("Echo", "Europe/Berlin")

    async def get_practice(ctx: CallContext) -> PracticeProfile:
        return profile

    adapter.reader.get_practice = get_practice  # type: ignore[method-assign]
    return adapter


class _Bare(reader_service_pb2_grpc.ReaderServiceServicer):
    async def GetPractice(self, request: Any, context: Any) -> Any:
        return reader_service_pb2.GetPracticeResponse(
            practice=practice_pb2.Practice(name=request.name, display_name="Echo", time_zone="Europe/Berlin")
        )


async def _serve_bare(port_file: Path) -> None:
    server = grpc.aio.server()
    reader_service_pb2_grpc.add_ReaderServiceServicer_to_server(_Bare(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await asyncio.to_thread(port_file.write_text, str(port))
    await server.wait_for_termination()


async def _serve_gateway(port_file: Path, folder: Path) -> None:
    from gateway.app import Gateway
    from gateway.config import parse_config
    from gateway.partners import PartnerRegistry

    config = parse_config(
        {
            "gateway": {"listen": "127.0.0.1:0", "state_store": f"sqlite:///{folder / 'state.sqlite'}"},
            "practices": {"demo": {"adapter": {"plugin": "bench_signing:echo_adapter"}}},
        },
        folder,
    )
    gateway = await Gateway.start(config)
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner("bench")
    registry.add_key("bench", "bench-1", json.loads((folder / "key.json").read_text())["public"])
    registry.grant("bench", "demo")
    await asyncio.to_thread(port_file.write_text, str(gateway.port))
    await gateway.wait_for_termination()


async def _load(port: int, seconds: float, concurrency: int, signer: Signer | None) -> float:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
    request = reader_service_pb2.GetPracticeRequest(name="practices/demo")
    body = request.SerializeToString()
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        nonlocal done
        stub = reader_service_pb2_grpc.ReaderServiceStub(channels[index % len(channels)])
        while time.perf_counter() < stop:
            # Signed the way the partner client does it: fresh headers for every call.
            metadata = signer.headers(METHOD, body) if signer else None
            await stub.GetPractice(request, timeout=10, metadata=metadata)
            done += 1

    await asyncio.gather(*(worker(i) for i in range(8)))  # warm-up round is the first second
    started = time.perf_counter()
    done = 0
    stop = started + seconds
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return done / elapsed


def _start(mode: str, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = folder / f"{mode}.port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--folder", str(folder)])
    for _ in range(300):
        if port_file.exists() and port_file.read_text():
            return process, int(port_file.read_text())
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the {mode} server did not start")


def run(seconds: float, concurrency: int, runs: int) -> dict[str, Any]:
    from otv_sdk.signing import generate_key_pair

    results: dict[str, list[float]] = {"bare": [], "gateway": []}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        private, public = generate_key_pair()
        (folder / "key.json").write_text(json.dumps({"public": public}))
        signer = Signer("bench-1", private, "otv")
        for mode in ("bare", "gateway"):
            process, port = _start(mode, folder)
            try:
                for _ in range(runs):
                    rate = asyncio.run(_load(port, seconds, concurrency, signer if mode == "gateway" else None))
                    results[mode].append(rate)
            finally:
                process.terminate()
                process.wait(10)
    bare, signed = statistics.median(results["bare"]), statistics.median(results["gateway"])
    return {
        "bare_calls_per_s": round(bare),
        "signed_gateway_calls_per_s": round(signed),
        "ratio": round(signed / bare, 3),
        "target_ratio": 0.7,
        "runs": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=128, help="calls in flight (enough to saturate both)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve", choices=["bare", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "bare":
        asyncio.run(_serve_bare(args.folder / "bare.port"))
        return
    if args.serve == "gateway":
        asyncio.run(_serve_gateway(args.folder / "gateway.port", args.folder))
        return
    result = run(args.seconds, args.concurrency, args.runs)
    print(f"bare grpcio server:  {result['bare_calls_per_s']} calls/s (median of {args.runs} runs)")
    print(f"signed gateway:      {result['signed_gateway_calls_per_s']} calls/s")
    verdict = "meets" if result["ratio"] >= 0.7 else "misses"
    print(f"ratio:               {result['ratio']:.0%} ({verdict} the 70% target)")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
