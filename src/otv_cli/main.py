"""`otv`: run the gateway, serve an adapter remotely, or make a first call as a partner.

otv demo                                  gateway with the demo practice (embedded default)
otv gateway serve --config gateway.toml   gateway from a configuration file
otv adapter serve --plugin reference --practice demo --listen 127.0.0.1:50061
otv client calendars --practice demo      list the demo practice's calendars
otv client busy --practice demo --days 7  busy times of the next 7 days
otv client slots --practice demo --type kontrolle   the next bookable slots
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from gateway.app import run_gateway
from gateway.config import ConfigError, GatewayConfig, demo_config, load_config
from gateway.plugins import load_factory
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.errors import OtvError
from otv_sdk.models import UTC, Interval
from otv_sdk.ports import PageRequest, SlotQuery

EXIT_CONFIG = 2
EXIT_CALL_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the gateway on the embedded default with the demo practice")
    demo.add_argument("--listen", default=None, help="host:port (default 127.0.0.1:50051)")
    demo.add_argument("--state-dir", type=Path, default=Path("var"), help="where the demo SQLite file lives")

    gateway = commands.add_parser("gateway", help="run the gateway").add_subparsers(dest="action", required=True)
    serve = gateway.add_parser("serve", help="serve from a configuration file")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument("--listen", default=None, help="override [gateway] listen")

    adapter = commands.add_parser("adapter", help="serve an adapter for a remote gateway").add_subparsers(
        dest="action", required=True
    )
    adapter_serve = adapter.add_parser("serve", help="serve one practice's adapter over gRPC")
    adapter_serve.add_argument("--plugin", required=True, help="entry-point name or module:factory")
    adapter_serve.add_argument("--practice", required=True)
    adapter_serve.add_argument("--settings", default="{}", help="adapter settings as a JSON object")
    adapter_serve.add_argument("--listen", default="127.0.0.1:50061")

    client = commands.add_parser("client", help="call a gateway as a partner").add_subparsers(
        dest="action", required=True
    )
    for name, help_text in (("calendars", "list calendars"), ("busy", "list busy times"), ("slots", "next slots")):
        sub = client.add_parser(name, help=help_text)
        sub.add_argument("--target", default="127.0.0.1:50051")
        sub.add_argument("--practice", default="demo")
        sub.add_argument("--days", type=int, default=7)
        if name == "slots":
            sub.add_argument("--type", required=True, help="appointment type id, e.g. kontrolle")
            sub.add_argument("--limit", type=int, default=10)
    return parser


def _serve_config(config: GatewayConfig, listen: str | None) -> GatewayConfig:
    if listen is None:
        return config
    gateway = config.gateway.model_copy(update={"listen": listen})
    return config.model_copy(update={"gateway": gateway})


async def _adapter_serve(plugin: str, practice: str, settings: str, listen: str) -> None:
    factory = load_factory(plugin)
    adapter = factory(practice, json.loads(settings), base_dir=Path.cwd())
    server = await serve_adapters({practice: adapter}, listen)
    print(f"otv adapter server for practice {practice!r} listening on port {server.port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop()


async def _client(args: argparse.Namespace) -> None:
    action, practice = args.action, args.practice
    async with PartnerClient.connect(args.target) as client:
        if action == "calendars":
            calendar = await client.list_calendars(practice, timeout=10)
            for column in calendar.columns:
                print(f"column {column.id}: {column.display_name} ({column.kind.value})")
            for kind in calendar.appointment_types:
                minutes = int(kind.duration.total_seconds() // 60)
                columns = ", ".join(kind.column_ids)
                print(f"type {kind.id}: {kind.display_name}, {minutes} min, columns {columns}")
            return
        now = datetime.now(UTC).replace(microsecond=0)
        window = Interval(now, now + timedelta(days=args.days))
        if action == "slots":
            query = SlotQuery(args.type, window, (), PageRequest(args.limit))
            for slot in (await client.find_slots(practice, query, timeout=10)).items:
                print(f"{slot.column_id}: {slot.start.isoformat()} - {slot.end.isoformat()}")
            return
        busy = await client.list_busy_times(practice, window, timeout=10)
        for busy_column in busy:
            print(f"column {busy_column.column_id}: {len(busy_column.intervals)} busy intervals")
            for interval in list(busy_column.intervals.intervals())[:3]:
                print(f"  {interval.start.isoformat()} - {interval.end.isoformat()}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            args.state_dir.mkdir(parents=True, exist_ok=True)
            asyncio.run(run_gateway(demo_config(args.state_dir.resolve(), args.listen)))
        elif args.command == "gateway":
            asyncio.run(run_gateway(_serve_config(load_config(args.config), args.listen)))
        elif args.command == "adapter":
            asyncio.run(_adapter_serve(args.plugin, args.practice, args.settings, args.listen))
        else:
            asyncio.run(_client(args))
    except ConfigError as error:
        print(f"otv: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (LookupError, ValueError) as error:
        print(f"otv: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except OtvError as error:
        print(f"otv: {error.code.value}: {error.message}", file=sys.stderr)
        return EXIT_CALL_FAILED
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
