"""What relaying a connector practice's calls between replicas costs.

    python benchmarks/bench_connector_forwarding.py [--calls 300] [--rounds 5] [--json PATH]

Two gateway replicas on one PostgreSQL database (127.0.0.1:5432, trust, database `test`, a fresh
schema per run; OTV_TEST_POSTGRES overrides) with [gateway.replicas], one outbound connector
attached to replica 0, the reference adapter behind it. Each round times `--calls` sequential
PracticeDataService.GetPracticeProfile calls over the practice's stream (the raw call every data
port makes, below the gateway's own caches) from replica 0 (its own stream) and from replica 1
(relayed to replica 0 over ReplicaService), taking turns so drift on a shared machine hits both.
Everything runs in this one process and event loop, the connector and adapter server included, so
the figures are upper bounds of what separate machines add. No target: docs/replica-forwarding.md
quotes the overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import SECRET, reference_settings, signer  # noqa: E402
from patient_env import header_identity  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.connectors import ConnectorHub  # noqa: E402
from otv.v1 import practice_data_service_pb2  # noqa: E402
from otv_sdk.adapter_server import serve_adapters  # noqa: E402
from otv_sdk.connector import OutboundConnector  # noqa: E402
from otv_sdk.reference import create_adapter  # noqa: E402

POSTGRES = os.environ.get("OTV_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
METHOD = "/otv.v1.PracticeDataService/GetPracticeProfile"


async def _timed(hub: ConnectorHub, calls: int) -> list[float]:
    request = practice_data_service_pb2.GetPracticeProfileRequest(name="practices/demo").SerializeToString()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await hub.call("edge", METHOD, request, "bench", 10.0)
        samples.append((time.perf_counter() - started) * 1000)
        assert result.status_code == 0, result.status_message
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


async def run(calls: int, rounds: int) -> dict[str, Any]:
    import psycopg

    schema = f"otv_bench_{secrets.token_hex(4)}"
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    folder = Path(tempfile.mkdtemp(prefix="otv-bench-forwarding-"))
    adapter = create_adapter("demo", reference_settings(database=str(folder / "pvs.sqlite")))
    adapters = await serve_adapters({"demo": adapter})
    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "secret_key": SECRET,
                "state_store": url,
                "shutdown_grace_seconds": 0,
                "replicas": {"listen": "127.0.0.1:0"},
            },
            "practices": {"edge": {"adapter": {"connector": {"practice": "demo"}}}},
        }
    )
    gateways = [await Gateway.start(config, header_identity) for _ in range(2)]
    connector = OutboundConnector(
        gateways[0].address, "edge", f"127.0.0.1:{adapters.port}", signer(), local_practice="demo"
    )
    connector.start()
    try:
        await gateways[0].router.connectors.wait_online("edge", 10)
        hubs = {"own stream": gateways[0].router.connectors, "relayed": gateways[1].router.connectors}
        await _timed(hubs["relayed"], 20)  # channels open, registry entry read
        samples: dict[str, list[float]] = {name: [] for name in hubs}
        medians: dict[str, list[float]] = {name: [] for name in hubs}
        for round_ in range(rounds):
            order = list(hubs) if round_ % 2 == 0 else list(reversed(hubs))
            for name in order:
                taken = await _timed(hubs[name], calls)
                samples[name] += taken
                medians[name].append(statistics.median(taken))
        result: dict[str, Any] = {name: _summary(values) for name, values in samples.items()}
        for name in hubs:
            result[name]["round_medians_ms"] = [round(m, 3) for m in medians[name]]
        result["relay_overhead_median_ms"] = round(
            result["relayed"]["median_ms"] - result["own stream"]["median_ms"], 3
        )
        result["load_average"] = os.getloadavg()
        return result
    finally:
        await connector.stop()
        for gateway in gateways:
            await gateway.stop(0)
        await adapters.stop(0)
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.rounds))
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
