"""`otv`: run the gateway, serve an adapter remotely, or make a first call as a partner.

otv demo                                  gateway with the demo practice (embedded default)
otv gateway serve --config gateway.toml   gateway from a configuration file
otv adapter serve --plugin reference --practice demo --listen 127.0.0.1:50061
otv adapter serve --plugin reference --practice demo --connect gw.example:50051 --key praxis.key
                                          the same, dialling out to the gateway (no inbound port)
otv adapter serve ... --tracing-endpoint http://collector:4317   its spans join the partners' traces
otv client calendars --practice demo      list the demo practice's calendars
otv client busy --practice demo --days 7  busy times of the next 7 days
otv client slots --practice demo --type kontrolle   the next bookable slots
otv client --help                         a whole booking: patient, slots, hold, confirm, appointments, cancel
otv keys generate --partner alpha --out alpha.key   a partner's key pair (private key into the file)
otv partner add --config gw.toml --id alpha --key-file alpha.key --grant demo
otv partner list --config gw.toml
otv partner revoke-key --config gw.toml --key-id alpha-20261121-1a2b
otv partner revoke-grant --config gw.toml --id alpha --practice demo
otv config reference > docs/configuration.md   every configuration key
otv practice user add --practice demo --user anna   a staff account for the web page (asks the password)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway.app import run_gateway
from gateway.certificates import init_dev_pki
from gateway.config import ConfigError, GatewayConfig, demo_config, load_config
from gateway.config_reference import configuration_reference
from gateway.observability import configure_logging
from gateway.partners import PartnerRegistry
from gateway.state_store import StateStore, open_store
from otv_cli import adapter, client, conformance, practice
from otv_sdk.errors import OtvError
from otv_sdk.signing import generate_key_pair, load_key_file, public_key_of, save_key_file

EXIT_CONFIG = 2
EXIT_CALL_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text to read (default), json for production: one event per line with trace ids (docs/operations.md)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the gateway on the embedded default with the demo practice")
    demo.add_argument("--listen", default=None, help="host:port (default 127.0.0.1:50051)")
    demo.add_argument("--http-listen", default=None, help="host:port of the staff page (default 127.0.0.1:8080)")
    demo.add_argument("--state-dir", type=Path, default=Path("var"), help="where the demo SQLite file lives")

    gateway = commands.add_parser("gateway", help="run the gateway").add_subparsers(dest="action", required=True)
    serve = gateway.add_parser("serve", help="serve from a configuration file")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument("--listen", default=None, help="override [gateway] listen")

    adapter.add_parser(commands)

    certs = commands.add_parser("certs", help="development certificates").add_subparsers(dest="action", required=True)
    certs_init = certs.add_parser("init", help="a development CA, server and client certificates")
    certs_init.add_argument("--dir", type=Path, default=Path("var/certs"))
    certs_init.add_argument("--name", action="append", default=[], help="server DNS name (default localhost)")

    keys = commands.add_parser("keys", help="partner keys").add_subparsers(dest="action", required=True)
    generate = keys.add_parser("generate", help="make an Ed25519 key pair for a partner")
    generate.add_argument("--partner", required=True)
    generate.add_argument("--out", type=Path, required=True, help="key file to write (private; mode 0600)")
    generate.add_argument("--audience", default="otv", help="the gateway's audience name")

    partner = commands.add_parser("partner", help="manage partners").add_subparsers(dest="action", required=True)
    add = partner.add_parser("add", help="register a partner, or another key of one (rotation)")
    add.add_argument("--config", type=Path, required=True)
    add.add_argument("--id", required=True)
    add.add_argument("--name", default="")
    add.add_argument("--key-file", type=Path, help="take key id and public key from this key file")
    add.add_argument("--key-id")
    add.add_argument("--public-key")
    add.add_argument(
        "--grant",
        action="append",
        default=[],
        help="PRACTICE or PRACTICE:reader,writer,...; a PVS: PRACTICE:practice (never in *)",
    )
    listing = partner.add_parser("list", help="partners, keys and grants")
    listing.add_argument("--config", type=Path, required=True)
    revoke = partner.add_parser("revoke-key", help="refuse a key from now on")
    revoke.add_argument("--config", type=Path, required=True)
    revoke.add_argument("--key-id", required=True)
    withdraw = partner.add_parser("revoke-grant", help="withdraw a partner's grant for a practice")
    withdraw.add_argument("--config", type=Path, required=True)
    withdraw.add_argument("--id", required=True, help="partner id")
    withdraw.add_argument("--practice", required=True, help="practice id whose grant is withdrawn")

    conformance.add_parser(commands)
    practice.add_parser(commands)
    client.add_parser(commands)
    config = commands.add_parser("config", help="the configuration file").add_subparsers(dest="action", required=True)
    config.add_parser("reference", help="print every TOML key with type, default and meaning (docs/configuration.md)")
    return parser


def _serve_config(config: GatewayConfig, listen: str | None) -> GatewayConfig:
    if listen is None:
        return config
    gateway = config.gateway.model_copy(update={"listen": listen})
    return config.model_copy(update={"gateway": gateway})


def _registry(config_path: Path) -> tuple[PartnerRegistry, StateStore]:
    config = load_config(config_path)
    store = open_store(config.gateway.state_store, config.base_dir)
    return PartnerRegistry(store), store


def _keys_generate(args: argparse.Namespace) -> None:
    private, public = generate_key_pair()
    key_id = f"{args.partner}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    save_key_file(args.out, args.partner, key_id, private, args.audience)
    print(f"key id:     {key_id}\npublic key: {public}\nprivate key written to {args.out} (keep it secret)")


def _partner(args: argparse.Namespace) -> None:
    registry, store = _registry(args.config)
    try:
        if args.action == "add":
            registry.add_partner(args.id, args.name)
            key_id, public_key = args.key_id, args.public_key
            if args.key_file is not None:
                key_id = load_key_file(args.key_file).key_id
                public_key = public_key_of(json.loads(args.key_file.read_text())["private_key"])
            if key_id and public_key:
                registry.add_key(args.id, key_id, public_key)
            for grant in args.grant:
                practice, _, services = grant.partition(":")
                registry.grant(args.id, practice, tuple(services.split(",")) if services else ("*",))
            print(f"partner {args.id} registered")
        elif args.action == "list":
            for key in registry.list_keys():
                print(f"key {key.key_id} of {key.partner}{' (revoked)' if key.revoked else ''}")
            for partner_id, practice, services in registry.list_grants():
                print(f"grant {partner_id} -> {practice}: {services}")
        elif args.action == "revoke-grant":
            registry.revoke_grant(args.id, args.practice)
            print(f"grant of {args.id} for {args.practice} withdrawn")
        else:
            registry.revoke_key(args.key_id)
            print(f"key {args.key_id} revoked")
    finally:
        store.close()


DEMO_PARTNER = "demo-partner"


def _demo_partner(config: GatewayConfig, state_dir: Path) -> Path:
    """The demo's partner with a key pair ready, so a newcomer's first call is signed."""
    key_file = state_dir / "demo-partner.key"
    store = open_store(config.gateway.state_store, config.base_dir)
    try:
        registry = PartnerRegistry(store)
        registry.add_partner(DEMO_PARTNER, "Demo partner")
        if not key_file.exists():
            private, public = generate_key_pair()
            key_id = f"{DEMO_PARTNER}-{secrets.token_hex(3)}"
            registry.add_key(DEMO_PARTNER, key_id, public)
            save_key_file(key_file, DEMO_PARTNER, key_id, private, config.gateway.audience)
        for practice_id in config.practices:
            registry.grant(DEMO_PARTNER, practice_id)
    finally:
        store.close()
    return key_file


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(logging.INFO, args.log_format)
    try:
        if args.command == "demo":
            args.state_dir.mkdir(parents=True, exist_ok=True)
            config = demo_config(args.state_dir.resolve(), args.listen, args.http_listen)
            key_file = _demo_partner(config, args.state_dir)
            print(f"demo partner key: {key_file} (otv client ... signs with it)", flush=True)
            asyncio.run(run_gateway(config))
        elif args.command == "certs":
            pki = init_dev_pki(args.dir, tuple(args.name) or ("localhost",))
            print(
                f"CA {pki.ca}\nserver {pki.server_cert} / {pki.server_key}\nclient {pki.client_cert} / {pki.client_key}"
            )
        elif args.command == "keys":
            _keys_generate(args)
        elif args.command == "partner":
            _partner(args)
        elif args.command == "gateway":
            asyncio.run(run_gateway(_serve_config(load_config(args.config), args.listen)))
        elif args.command == "adapter":
            asyncio.run(adapter.adapter_serve(args))
        elif args.command == "practice":
            return practice.practice_command(args)
        elif args.command == "conformance":
            return asyncio.run(conformance.conformance_command(args))
        elif args.command == "config":
            print(configuration_reference(), end="")
        else:
            asyncio.run(client.client_command(args))
    except ConfigError as error:
        print(f"otv: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (LookupError, ValueError) as error:
        print(f"otv: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except FileExistsError as error:
        print(f"otv: {error.filename} exists; refusing to overwrite it (it may hold a private key)", file=sys.stderr)
        return EXIT_CONFIG
    except OtvError as error:
        print(f"otv: {error.code.value}: {error.message}", file=sys.stderr)
        return EXIT_CALL_FAILED
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
