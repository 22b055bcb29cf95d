"""The gateway process: build from configuration, serve, and shut down gracefully.

Start order: validate configuration, create adapters (fail fast), bind, start, report SERVING.
Stop order (SIGTERM or SIGINT): report NOT_SERVING so load balancers drain, stop accepting and let
calls in flight finish within the grace period, then close adapters.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl

import grpc
from opentelemetry.sdk.trace import TracerProvider

from gateway import observability
from gateway.authentication import SignatureAuthenticator
from gateway.config import GatewayConfig, RateLimitConfig, read_file, resolve_path
from gateway.connector_service import add_connector_servicer
from gateway.http_api import HttpApi
from gateway.identity import signed_identity
from gateway.metrics import GatewayMetrics
from gateway.practice_service import add_practice_servicer
from gateway.practice_web import PracticeWeb
from gateway.practice_web.desk import router_desks
from gateway.rate_limits import MeteredExecutor, PartnerRateLimits, Rate
from gateway.replica_service import ReplicaListener
from gateway.routing import PracticeRouter, build_router
from gateway.session_service import add_session_servicer
from gateway.snapshot_service import SnapshotCalls, add_snapshot_servicer
from otv_sdk.call_observation import joined
from otv_sdk.server import OtvServer, build_server
from otv_sdk.servicers import Identify
from otv_sdk.tracing import TracingServerInterceptor, client_interceptors

__all__ = ["Gateway", "run_gateway"]

log = logging.getLogger("otv.gateway")


class Gateway:
    """A started gateway. `port` is the bound port, useful when listening on port 0."""

    def __init__(
        self,
        config: GatewayConfig,
        router: PracticeRouter,
        otv_server: OtvServer,
        port: int,
        http: HttpApi | None,
        metrics: GatewayMetrics | None = None,
        tracing: TracerProvider | None = None,
        replicas: ReplicaListener | None = None,
    ) -> None:
        self.config = config
        self.replicas = replicas  # with [gateway.replicas]: the listener other replicas forward to
        self.metrics = metrics or GatewayMetrics()
        self._tracing = tracing
        self.http = http
        self.router = router
        self._otv = otv_server
        self.port = port
        self.address = f"{config.gateway.listen.rpartition(':')[0]}:{port}"

    @classmethod
    async def start(
        cls, config: GatewayConfig, identify: Identify | None = None, *, tracer_provider: TracerProvider | None = None
    ) -> Gateway:
        """Every call must be signed by a registered partner (see authentication.py).

        `identify` replaces that with another way of naming the partner: for tests only.
        `tracer_provider` traces with that provider instead of one built from [gateway.tracing].
        """
        # Jobs handed to worker threads are charged to the partner whose call handed them over.
        asyncio.get_running_loop().set_default_executor(MeteredExecutor(thread_name_prefix="otv-worker"))
        own_tracing = tracer_provider is None and config.gateway.tracing is not None
        tracing = tracer_provider
        if own_tracing and config.gateway.tracing is not None:
            tracing = observability.tracer_provider(config.gateway.tracing)
        router = await build_router(config, client_interceptors(tracing) if tracing is not None else ())
        metrics = GatewayMetrics()
        if config.gateway.metrics:
            router.metrics = metrics
            metrics.watch_practices(router.practice_ids, router.store, lambda: _watchers(router))
            metrics.watch_feeds(feed for p in router.practice_ids if (feed := router.feed(p)) is not None)
        http: HttpApi | None = None
        replicas: ReplicaListener | None = None
        try:
            if config.gateway.replicas is not None:  # before connectors can attach: they claim in the registry
                replicas = await ReplicaListener.start(config, router.connectors, router.store, tracing)
            calls = SnapshotCalls(router.snapshot_keepers, frozenset(router.practice_ids))
            authenticator = None
            if identify is None:
                authenticator = SignatureAuthenticator(
                    router.store,
                    config.gateway.audience,
                    config.gateway.max_clock_skew_seconds,
                    rate_limits=_rate_limits(config),
                )
                if config.gateway.metrics:
                    authenticator.on_refused = metrics.refusal
            observers: list[grpc.aio.ServerInterceptor] = [metrics.interceptor()] if config.gateway.metrics else []
            if tracing is not None:
                observers.append(TracingServerInterceptor(tracing))
            observers = [joined(*observers)] if observers else []  # one wrapper per call, whatever is on
            who: Identify = signed_identity if identify is None else identify
            otv_server = build_server(
                router,
                who,
                interceptors=observers if authenticator is None else [*observers, authenticator],
                extra_services=[
                    lambda s: add_snapshot_servicer(s, router, who, calls),
                    lambda s: add_connector_servicer(s, router.connectors, who),
                    lambda s: add_practice_servicer(s, router, who),
                    lambda s: add_session_servicer(s, None if authenticator is None else authenticator.sessions),
                ],
            )
            if config.gateway.http_listen is not None:  # the snapshot upload is always signed (no test identity)
                staff_page = PracticeWeb(
                    router.store, router_desks(router), router.practice_ids, secure=config.gateway.tls is not None
                )
                observed = metrics if config.gateway.metrics else None
                http = HttpApi(calls, authenticator, staff_page.app(), observed, tracing)
            tls = config.gateway.tls
            if tls is None:
                port = otv_server.server.add_insecure_port(config.gateway.listen)
            else:
                credentials = grpc.ssl_server_credentials(
                    [
                        (
                            read_file(config, tls.key_file, "gateway.tls.key_file"),
                            read_file(config, tls.cert_file, "gateway.tls.cert_file"),
                        )
                    ],
                    root_certificates=(
                        read_file(config, tls.client_ca_file, "gateway.tls.client_ca_file")
                        if tls.client_ca_file
                        else None
                    ),
                    require_client_auth=tls.client_ca_file is not None,
                )
                port = otv_server.server.add_secure_port(config.gateway.listen, credentials)
            await otv_server.server.start()
            if http is not None and config.gateway.http_listen is not None:
                await http.start(config.gateway.http_listen, _https_context(config))
        except BaseException:
            if http is not None:
                await http.stop()
            if replicas is not None:
                await replicas.stop(0)
            await router.aclose()
            raise
        await router.recover()
        await otv_server.set_serving(True)
        return cls(config, router, otv_server, port, http, metrics, tracing if own_tracing else None, replicas)

    async def stop(self, grace: float | None = None) -> None:
        await self._otv.set_serving(False)
        await self._otv.server.stop(self.config.gateway.shutdown_grace_seconds if grace is None else grace)
        if self.http is not None:
            await self.http.stop()
        if self.replicas is not None:  # after the partners' port: calls in flight may still forward
            await self.replicas.stop(0)
        await self.router.aclose()
        if self._tracing is not None:  # its own provider: export what is left
            self._tracing.shutdown()

    async def wait_for_termination(self) -> None:
        await self._otv.server.wait_for_termination()


def _watchers(router: PracticeRouter) -> dict[str, int]:
    feeds = {practice_id: router.feed(practice_id) for practice_id in router.practice_ids}
    return {practice_id: feed.watchers for practice_id, feed in feeds.items() if feed is not None}


def _rate_limits(config: GatewayConfig) -> PartnerRateLimits:
    def rate(limit: RateLimitConfig) -> Rate:
        return Rate(limit.per_second, limit.burst, limit.concurrent, limit.queued, limit.share, limit.share_burst)

    partners = config.gateway.partner_rate_limits
    return PartnerRateLimits(rate(config.gateway.rate_limit), {p: rate(r) for p, r in partners.items()})


def _https_context(config: GatewayConfig) -> ssl.SSLContext | None:
    """HTTPS with the gateway's own certificate when it has one."""
    tls = config.gateway.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(resolve_path(config, tls.cert_file), resolve_path(config, tls.key_file))
    return context


async def run_gateway(
    config: GatewayConfig, ready: asyncio.Event | None = None, identify: Identify | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    gateway = await Gateway.start(config, identify)
    # What start-up built lives as long as the process: out of the collector's way, so a full
    # collection (tens of milliseconds on a loaded practice) does not stall every call in flight.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    practices = ", ".join(gateway.router.practice_ids)
    print(f"otv gateway listening on {gateway.address} (practices: {practices})", flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("stopping: draining calls for up to %.0f s", config.gateway.shutdown_grace_seconds)
    await gateway.stop()
    print("otv gateway stopped", flush=True)
