"""What metrics and traces cost in instructions: a signed gateway under callgrind, per call.

    python benchmarks/count_observability.py [--calls 400] [--modes off on] [--sample-ratio 1.0]

Throughput on a shared 2-core machine scatters by a factor of two between rounds, so a cut of a
few microseconds per call cannot be seen in it. Instructions can: each gateway of
bench_observability.py (same configuration, same signed partner) runs under
`valgrind --tool=callgrind` with instrumentation off while it starts; this process then switches
it on, warms the gateway with calls, zeroes the counters, makes `--calls` signed GetPractice calls
one after the other or `--concurrency` at a time (otv-session-v1, a SessionSigner on one channel,
as the partner client does),
dumps the counters and divides the instructions (Ir, every thread of the process) by the calls.
The same count for two modes, one after the other, is deterministic to a fraction of a percent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from bench_observability import OBSERVES

from otv.v1 import reader_service_pb2, reader_service_pb2_grpc
from otv_sdk.session_signer import SessionSigner
from otv_sdk.signing import Signer, generate_key_pair

METHOD = "/otv.v1.ReaderService/GetPractice"
SERVER = Path(__file__).with_name("bench_observability.py")


def _control(pid: int, *options: str) -> None:
    subprocess.run(["callgrind_control", *options, str(pid)], check=True, capture_output=True, timeout=120)


async def _calls(port: int, signer: Signer, count: int, concurrency: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        session = SessionSigner(signer, channel)
        stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
        request = reader_service_pb2.GetPracticeRequest(name="practices/demo")
        body = request.SerializeToString()

        async def worker(calls: int) -> None:
            for _ in range(calls):
                await stub.GetPractice(request, timeout=60, metadata=await session.headers(METHOD, body))

        await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))


def _instructions(dump: Path) -> int:
    """The dump's total Ir (its `totals:` or `summary:` line)."""
    for line in dump.read_text().splitlines():
        found = re.match(r"(?:totals|summary):\s+(\d+)", line)
        if found:
            return int(found.group(1))
    raise SystemExit(f"no totals in {dump}")


def count(
    mode: str, calls: int, concurrency: int, sample_ratio: float | None, folder: Path, signer: Signer, dumps: Path
) -> float:
    """Instructions per call of one mode's gateway; its dump stays in `dumps` (callgrind_annotate)."""
    out = dumps / f"callgrind.{mode}"
    port_file = folder / f"{mode}.port"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}.%p",
        sys.executable,
        str(SERVER),
        "--serve",
        mode,
        "--folder",
        str(folder),
    ]
    if sample_ratio is not None:
        command += ["--sample-ratio", str(sample_ratio)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (port_file.exists() and port_file.read_text()):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"the {mode} gateway did not start under valgrind")
            time.sleep(0.5)
        port = int(port_file.read_text())
        _control(process.pid, "--instr=on")
        asyncio.run(_calls(port, signer, max(50, calls // 4), 1))  # warm: caches, label children, a session
        _control(process.pid, "--zero")
        asyncio.run(_calls(port, signer, calls, concurrency))
        _control(process.pid, "--dump")
        written = sorted(dumps.glob(f"callgrind.{mode}.{process.pid}*"), key=os.path.getmtime)
        if not written:
            raise SystemExit(f"callgrind wrote no dump for {mode}")
        return _instructions(written[-1]) / calls
    finally:
        process.terminate()
        process.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400, help="calls counted per mode")
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight (--calls is rounded down)")
    parser.add_argument("--modes", nargs="+", choices=list(OBSERVES), default=["off", "on"])
    parser.add_argument("--sample-ratio", type=float, default=None, help="tracing's ratio (default: the mode's)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--dumps", type=Path, default=None, help="keep callgrind's dumps in this folder")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is needed: apt-get install valgrind")
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        private, public = generate_key_pair()
        (folder / "key.json").write_text(json.dumps({"public": public}))
        signer = Signer("bench-1", private, "otv")
        dumps = args.dumps or folder
        dumps.mkdir(parents=True, exist_ok=True)
        for mode in args.modes:
            calls = args.calls // args.concurrency * args.concurrency
            result[mode] = round(count(mode, calls, args.concurrency, args.sample_ratio, folder, signer, dumps))
            print(f"{mode:8s} {result[mode]:9d} instructions per signed GetPractice", flush=True)
    if "off" in result:
        for mode, value in result.items():
            if mode != "off":
                print(f"{mode} / off: {value / result['off']:.1%}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
