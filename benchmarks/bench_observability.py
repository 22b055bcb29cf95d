"""What metrics and traces cost: the signed gateway's GetPractice throughput with them on and off.

    python benchmarks/bench_observability.py [--seconds 3] [--rounds 5] [--concurrency 128] [--json PATH]

Two gateway processes, the same as bench_signing.py's session gateway (otv-session-v1: an HMAC
per call, grants, an adapter answering from memory), driven the way bench_signing.py drives it (a
SessionSigner per channel, as the partner client signs): `off` with `gateway.metrics = false` and
no tracing, `on` with Prometheus metrics (every call counted and timed, data-port calls timed) and
`[gateway.tracing]` with every call sampled but no endpoint. Without an exporter the gateway
records no spans (no one could see them): it carries each call's trace context, a new span id
with the sampling decision, to its adapters and into its logs. They take turns within each round,
in an order that alternates between rounds; the ratio on/off is taken within a round and its
median reported. Target: `on` reaches at least 95% of `off`. On a shared machine single rounds
scatter widely, so the gateway's CPU time per call is reported beside it (its ratio off/on is the
throughput ratio of a gateway with a core to itself).

More modes for count_observability.py (instructions per call under callgrind): `metrics` and
`tracing` alone, and `recording`, metrics and tracing whose spans are all recorded and handed to a
span processor that drops them (what exporting costs on the event loop, without the network).
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
from pathlib import Path
from typing import Any

from bench_signing import _load
from signed_partner import NO_PARTNER_LIMITS

from otv_sdk.signing import Signer, generate_key_pair

MODES = ("off", "on")
# What each server observes: metrics, and tracing (its sample ratio) or none.
OBSERVES = {
    "off": (False, None),
    "on": (True, 1.0),
    "metrics": (True, None),
    "tracing": (False, 1.0),
    "recording": (True, 1.0),
}
TARGET = 0.95


async def _serve(mode: str, folder: Path, sample_ratio: float | None = None) -> None:
    from gateway.app import Gateway
    from gateway.config import parse_config
    from gateway.partners import PartnerRegistry

    section: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "state_store": f"sqlite:///{folder / mode}.sqlite",
        "rate_limit": NO_PARTNER_LIMITS,
        "metrics": OBSERVES[mode][0],
    }
    ratio = OBSERVES[mode][1] if sample_ratio is None or OBSERVES[mode][1] is None else sample_ratio
    if ratio is not None:
        section["tracing"] = {"sample_ratio": ratio}  # no endpoint: no exporter
    practices = {"demo": {"adapter": {"plugin": "bench_signing:echo_adapter"}}}
    config = parse_config({"gateway": section, "practices": practices}, folder)
    provider = None
    if mode == "recording":
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from gateway.observability import tracer_provider

        assert config.gateway.tracing is not None
        provider = tracer_provider(config.gateway.tracing)
        exporter = InMemorySpanExporter()
        exporter.shutdown()  # takes every span and keeps none
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    gateway = await Gateway.start(config, tracer_provider=provider)
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner("bench")
    registry.add_key("bench", "bench-1", json.loads((folder / "key.json").read_text())["public"])
    registry.grant("bench", "demo")
    await asyncio.to_thread((folder / f"{mode}.port").write_text, str(gateway.port))
    await gateway.wait_for_termination()


def _start(mode: str, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = folder / f"{mode}.port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--folder", str(folder)])
    for _ in range(300):
        if port_file.exists() and port_file.read_text():
            return process, int(port_file.read_text())
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the {mode} gateway did not start")


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
                for mode in MODES if index % 2 == 0 else tuple(reversed(MODES)):
                    process, port = servers[mode]
                    load = _load(port, seconds, concurrency, "session", signer, process.pid)
                    samples[mode].append(asyncio.run(load))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(10)
    pairs = list(zip(samples["on"], samples["off"], strict=True))
    ratios = [on["calls_per_s"] / off["calls_per_s"] for on, off in pairs]
    # A gateway that has a core to itself serves 1 / (CPU per call) calls a second: the ratio of
    # CPU per call says what the calls per second say when other processes leave the core alone.
    cpu_ratios = [off["server_cpu_us_per_call"] / on["server_cpu_us_per_call"] for on, off in pairs]
    return {
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "cpu_ratio": round(statistics.median(cpu_ratios), 3),
        "cpu_ratios": [round(r, 3) for r in cpu_ratios],
        "target_ratio": TARGET,
        "medians": {
            mode: {key: round(statistics.median(s[key] for s in samples[mode])) for key in samples[mode][0]}
            for mode in MODES
        },
        "rounds": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3, help="length of each measurement")
    parser.add_argument("--concurrency", type=int, default=128, help="calls in flight")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve", choices=list(OBSERVES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sample-ratio", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(args.serve, args.folder, args.sample_ratio))
        return
    result = run(args.seconds, args.concurrency, args.rounds)
    print(f"signed GetPractice, medians of {args.rounds} rounds; CPU per call: gateway process / load generator")
    for mode, label in (("off", "metrics and tracing off"), ("on", "metrics and tracing on")):
        median = result["medians"][mode]
        print(
            f"{label + ':':26s} {median['calls_per_s']:5d} calls/s"
            f"   {median['server_cpu_us_per_call']:4d} / {median['client_cpu_us_per_call']:4d} µs"
        )
    verdict = "meets" if result["ratio"] >= TARGET else "misses"
    ratios = " ".join(f"{r:.1%}" for r in result["ratios"])
    print(f"on / off: {result['ratio']:.1%} median of rounds ({ratios}); {verdict} the {TARGET:.0%} target")
    cpu = " ".join(f"{r:.1%}" for r in result["cpu_ratios"])
    print(f"gateway CPU per call, off / on: {result['cpu_ratio']:.1%} median of rounds ({cpu})")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
