"""Prometheus metrics of one gateway: gRPC calls, data-port calls, refusals, feeds, holds, inbox.

One registry per Gateway (tests run many gateways in one process), served at /metrics on the
gateway's HTTP listener. Labels are bounded and carry no personal data: gRPC service and method
names come from the registered services (calls to any other method count as "unknown"), practice
ids from the configuration, port methods from the code, codes from gRPC's list.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.state_store import Row, StateStore, Tx
from otv_sdk.call_observation import Begin, End, ObservingInterceptor
from otv_sdk.errors import OtvError
from otv_sdk.ports import Adapter

if TYPE_CHECKING:
    from gateway.change_feed import PracticeFeed

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "PracticeGauges"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a cached read (sub-millisecond) to a PVS that takes its time; the call deadline is 30 s at most.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BOUNDS = (*(repr(bound) for bound in _BUCKETS), "+Inf")  # the `le` labels, spelt as prometheus_client does
_DATA_PORTS = ("calendar", "calendar_writer", "patients", "consents")


class PracticeGauges:
    """Values per practice read when Prometheus scrapes: set by `refresh` before each scrape."""

    def __init__(self) -> None:
        self.watchers: Callable[[], dict[str, int]] = dict
        self.holds: dict[str, int] = {}
        self.inbox: dict[str, int] = {}


class _GaugeCollector(Collector):
    def __init__(self, gauges: PracticeGauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, doc, values in (
            ("otv_change_feed_watchers", "WatchChanges streams open, per practice", self._gauges.watchers()),
            ("otv_holds_active", "slot holds not yet confirmed, released or expired, per practice", self._gauges.holds),
            ("otv_inbox_pending", "bookings waiting for the practice (pending_practice/_transfer)", self._gauges.inbox),
        ):
            family = GaugeMetricFamily(name, doc, labels=["practice"])
            for practice, value in sorted(values.items()):
                family.add_metric([practice], value)
            yield family


class _Histogram:
    """Observations counted in `_BUCKETS`, as plain numbers without a lock.

    They are changed only by the event loop's thread (grpc.aio runs every handler there, data-port
    calls are coroutines) and read at a scrape, which runs there too; a prometheus_client child
    would take a lock for each update."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
        self.total += seconds

    def buckets(self) -> list[tuple[str, int]]:
        return list(zip(_BOUNDS, accumulate(self.counts), strict=True))


class _MethodCalls(_Histogram):
    """One method's calls: started, handled by code, and the handling-time histogram."""

    __slots__ = ("codes", "labels", "started")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        super().__init__()
        self.labels = labels
        self.started = 0
        self.codes: dict[grpc.StatusCode, int] = {}

    def begin(self, context: object) -> float:
        self.started += 1
        return time.perf_counter()

    def end(self, at: float, code: grpc.StatusCode) -> None:
        self.observe(time.perf_counter() - at)
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1


class _CallCollector(Collector):
    """grpc_server_started_total, grpc_server_handled_total and grpc_server_handling_seconds of
    the calls served; otv_adapter_call_seconds of the data-port calls made."""

    def __init__(self) -> None:
        self.methods: dict[str, _MethodCalls] = {}
        self.ports: dict[tuple[str, str, str], _Histogram] = {}  # (practice, port, method)

    def collect(self) -> Iterator[Metric]:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily("grpc_server_started", "RPCs started on the server", labels=labels)
        handled = CounterMetricFamily(
            "grpc_server_handled", "RPCs completed on the server, whatever their status", labels=[*labels, "grpc_code"]
        )
        handling = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "time from the start of an RPC to its status (streams: their whole life)",
            labels=labels,
        )
        for calls in list(self.methods.values()):
            started.add_metric(calls.labels, calls.started)
            for code, count in list(calls.codes.items()):
                handled.add_metric([*calls.labels, code.name], count)
            handling.add_metric(calls.labels, calls.buckets(), calls.total)
        ports = HistogramMetricFamily(
            "otv_adapter_call_seconds",
            "data-port calls to a practice's adapter (in-process plugin, remote adapter server or connector)",
            labels=["practice", "port", "method"],
        )
        for (practice, port, method), timings in list(self.ports.items()):
            ports.add_metric([practice, port, method], timings.buckets(), timings.total)
        yield from (started, handled, handling, ports)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = _CallCollector()
        self.registry.register(self.calls)
        self.port_errors = Counter(
            "otv_adapter_call_errors",
            "data-port calls that failed, by the error's gRPC code (INTERNAL for anything unexpected)",
            ["practice", "port", "method", "code"],
            registry=self.registry,
        )
        self.refused = Counter(
            "otv_refused_calls",
            "calls the gateway refused before serving them, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.feed_lag = Histogram(
            "otv_change_feed_delivery_seconds",
            "from a change event being stored to its delivery to a live watcher; replica says whether"
            " it was stored by this replica or another (whose announcement or the fallback poll woke this one)",
            ["replica"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.gauges = PracticeGauges()
        self.registry.register(_GaugeCollector(self.gauges))
        self._ports: dict[tuple[str, str], tuple[Any, _MeteredPort]] = {}
        self._practices: tuple[str, ...] = ()
        self._store: StateStore | None = None

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        """Started, handled and handling time of every call; outermost but request decoding."""
        methods = self.calls.methods

        def hooks(method: str, kind: str) -> tuple[Begin, End]:
            calls = methods.get(method)
            if calls is None:
                service, _, name = method[1:].partition("/")
                calls = methods[method] = _MethodCalls((kind, service, name))
            return calls.begin, calls.end

        def unknown(method: str) -> None:  # one series for them all: a caller cannot add labels
            calls = methods.get("")
            if calls is None:
                calls = methods[""] = _MethodCalls(("unknown", "unknown", "unknown"))
            calls.end(calls.begin(None), grpc.StatusCode.UNIMPLEMENTED)

        return ObservingInterceptor(hooks, unknown)

    def watch_practices(
        self, practice_ids: Sequence[str], store: StateStore, watchers: Callable[[], dict[str, int]]
    ) -> None:
        """Where the per-practice gauges come from: `refresh` reads holds and inbox from the store."""
        self._practices = tuple(practice_ids)
        self._store = store
        self.gauges.watchers = watchers

    def watch_feeds(self, feeds: Iterable[PracticeFeed]) -> None:
        """Observe each feed's delivery lag (one histogram for all practices: the label set stays small)."""
        here, elsewhere = self.feed_lag.labels("this"), self.feed_lag.labels("other")

        def delivered(seconds: float, stored_elsewhere: bool) -> None:
            (elsewhere if stored_elsewhere else here).observe(seconds)

        for feed in feeds:
            feed.on_delivered = delivered

    async def refresh(self) -> None:
        """Before a scrape: two counting queries in the store's worker thread, not on the event loop."""
        if self._store is None:
            return
        now = int(time.time())

        def read(tx: Tx) -> tuple[list[Row], list[Row]]:
            holds = tx.all(
                "SELECT practice, COUNT(*) AS n FROM holds WHERE state = 'active' AND expire_s > ? GROUP BY practice",
                (now,),
            )
            inbox = tx.all(
                "SELECT practice, COUNT(*) AS n FROM appointments"
                " WHERE state IN ('pending_practice', 'pending_transfer') AND rescheduled_to IS NULL GROUP BY practice"
            )
            return holds, inbox

        holds, inbox = await self._store.run(read, durable=False)
        self.gauges.holds = {p: 0 for p in self._practices} | {str(r["practice"]): int(r["n"]) for r in holds}
        self.gauges.inbox = {p: 0 for p in self._practices} | {str(r["practice"]): int(r["n"]) for r in inbox}

    def refusal(self, reason: str) -> None:
        self.refused.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def metered_adapter(self, practice_id: str, adapter: Adapter) -> Adapter:
        """The adapter with its data ports timed (the same port keeps the same wrapper)."""
        replaced: dict[str, Any] = {}
        for port in _DATA_PORTS:
            inner = getattr(adapter, port)
            if inner is None:
                continue
            known = self._ports.get((practice_id, port))
            if known is None or known[0] is not inner:  # the same port keeps its wrapper (readers key on it)
                known = (inner, _MeteredPort(inner, practice_id, port, self))
                self._ports[(practice_id, port)] = known
            replaced[port] = known[1]
        return dataclasses.replace(adapter, **replaced)


class _MeteredPort:
    """Times every coroutine method of a data port; everything else passes through."""

    def __init__(self, inner: Any, practice_id: str, port: str, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._practice = practice_id
        self._port = port
        self._metrics = metrics
        self._methods: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        metered = self._methods.get(name)
        if metered is None:
            metered = self._meter(name)
            self._methods[name] = metered
            # found as an attribute from now on: no __getattr__, no inspection per call
            vars(self)[name] = metered
        return metered

    def _meter(self, name: str) -> Callable[..., Awaitable[Any]]:
        timer = self._metrics.calls.ports.setdefault((self._practice, self._port, name), _Histogram())
        errors = self._metrics.port_errors
        inner = self._inner
        labels = (self._practice, self._port, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            at = time.perf_counter()
            try:
                return await getattr(inner, name)(*args, **kwargs)
            except OtvError as error:
                errors.labels(*labels, error.code.value).inc()
                raise
            except Exception:
                errors.labels(*labels, "INTERNAL").inc()
                raise
            finally:
                timer.observe(time.perf_counter() - at)

        return call
