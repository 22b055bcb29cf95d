"""`otv adapter serve`: one practice's adapter as a remote adapter server, optionally dialling out.

A PVS vendor runs this next to the practice software. With tracing on, the server continues the
trace context every gateway call carries (directly, or over the outbound connector's stream), so
the PVS's spans join the partner call's trace at the operator's collector; the options are the
keys of the gateway's [gateway.tracing] (docs/operations.md), built into a provider the same way.
SIGTERM and SIGINT stop it gracefully: calls under way finish, the connector says goodbye, and the
spans still batched are exported before the process ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import TracerProvider

from gateway.config import TracingConfig
from gateway.observability import tracer_provider
from gateway.plugins import load_factory
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.connector import OutboundConnector
from otv_sdk.signing import load_key_file
from otv_sdk.tracing import TracingServerInterceptor

__all__ = ["adapter_serve", "add_parser"]

DEFAULT_SERVICE_NAME = "otv-adapter"
# Calls under way when a stop is asked for get this long to finish.
STOP_GRACE_SECONDS = 5.0


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    adapter = commands.add_parser("adapter", help="serve an adapter for a remote gateway").add_subparsers(
        dest="action", required=True
    )
    serve = adapter.add_parser("serve", help="serve one practice's adapter over gRPC")
    serve.add_argument("--plugin", required=True, help="entry-point name or module:factory")
    serve.add_argument("--practice", required=True, help="the practice's id in this adapter")
    serve.add_argument("--settings", default="{}", help="adapter settings as a JSON object")
    serve.add_argument("--listen", default="127.0.0.1:50061", help="host:port (port 0: any free one)")
    serve.add_argument("--tls-cert", type=Path, help="serve over TLS with this certificate ...")
    serve.add_argument("--tls-key", type=Path, help="... and key")
    serve.add_argument("--client-ca", type=Path, help="require gateway certificates signed by this CA (mTLS)")
    serve.add_argument("--connect", metavar="GATEWAY", help="dial out to this gateway (outbound connector)")
    serve.add_argument("--key", type=Path, help="the practice's key file, for --connect")
    serve.add_argument("--gateway-practice", help="the practice's id at the gateway; default: --practice")
    serve.add_argument("--gateway-ca", type=Path, help="reach the gateway over TLS, trusting this CA")
    tracing = serve.add_argument_group(
        "tracing", "OpenTelemetry, off unless one of these is given; the keys of [gateway.tracing]"
    )
    tracing.add_argument(
        "--tracing", action="store_true", help="continue the gateway's traces (log lines carry trace ids)"
    )
    tracing.add_argument(
        "--tracing-endpoint", metavar="URL", help="OTLP/gRPC collector for the spans (http://host:4317)"
    )
    tracing.add_argument(
        "--tracing-sample-ratio",
        type=_ratio,
        metavar="RATIO",
        help="share of calls traced when the gateway sent no sampling decision (default 1.0)",
    )
    tracing.add_argument(
        "--tracing-service-name", metavar="NAME", help=f"service.name of the spans (default {DEFAULT_SERVICE_NAME})"
    )


def tracing_config(args: argparse.Namespace) -> TracingConfig | None:
    """[gateway.tracing] from the command line; None when no tracing option was given."""
    given = (args.tracing_endpoint, args.tracing_sample_ratio, args.tracing_service_name)
    if not args.tracing and all(value is None for value in given):
        return None
    return TracingConfig(
        endpoint=args.tracing_endpoint,
        sample_ratio=1.0 if args.tracing_sample_ratio is None else args.tracing_sample_ratio,
        service_name=args.tracing_service_name or DEFAULT_SERVICE_NAME,
    )


async def adapter_serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT (or the server ends), then stop gracefully."""
    if args.connect and args.key is None:
        raise ValueError("--connect needs --key: the practice's key file, registered at the gateway")
    factory = load_factory(args.plugin)
    adapter = factory(args.practice, json.loads(args.settings), base_dir=Path.cwd())
    credentials = None
    if args.tls_cert is not None and args.tls_key is not None:
        credentials = grpc.ssl_server_credentials(
            [(args.tls_key.read_bytes(), args.tls_cert.read_bytes())],
            root_certificates=args.client_ca.read_bytes() if args.client_ca else None,
            require_client_auth=args.client_ca is not None,
        )
    config = tracing_config(args)
    provider: TracerProvider | None = None if config is None else tracer_provider(config)
    interceptors = [] if provider is None else [TracingServerInterceptor(provider)]
    practice = args.practice
    server = await serve_adapters({practice: adapter}, args.listen, credentials=credentials, interceptors=interceptors)
    print(f"otv adapter server for practice {practice!r} listening on port {server.port}", flush=True)
    connector = None
    if args.connect:
        host = args.listen.rpartition(":")[0]
        connector = OutboundConnector(
            args.connect,
            args.gateway_practice or practice,
            f"{host}:{server.port}",
            load_key_file(args.key),
            local_practice=practice,
            credentials=grpc.ssl_channel_credentials(args.gateway_ca.read_bytes()) if args.gateway_ca else None,
            changes=adapter.changes,
        )
        connector.start()
        print(f"otv connector dialling {args.connect} for practice {practice!r}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    ended = asyncio.ensure_future(server.wait_for_termination())
    try:
        await asyncio.wait((stopping, ended), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if connector is not None:
            await connector.stop()
        await server.stop(STOP_GRACE_SECONDS)
        ended.cancel()
        if provider is not None:  # the spans still batched go to the collector now
            await asyncio.to_thread(provider.shutdown)
    print("otv adapter server stopped", flush=True)
