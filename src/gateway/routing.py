"""Routing: which adapter serves a practice.

Built once from the configuration. In-process plugins are created at start, so a bad plugin or
bad settings stop the gateway before it listens; remote adapters are contacted on first use, so
a PVS that is down at start does not keep the gateway from serving the other practices.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Protocol

import grpc
from pydantic import ValidationError

from gateway.booking import BookingDesk, BookingPolicy
from gateway.calendar_cache import CalendarCache
from gateway.change_feed import AnnouncingWriter, PracticeFeed
from gateway.config import ConfigError, GatewayConfig, load_secret, read_file
from gateway.connectors import ConnectorHub
from gateway.consent_records import RecordedConsent
from gateway.encryption import FieldCipher, keys_from
from gateway.metrics import GatewayMetrics
from gateway.offline import ConnectorAdapterSource, OnlineOnlyWriter
from gateway.patient_ids import PatientIdScope
from gateway.patient_matching import PatientMatcher
from gateway.plugins import load_factory
from gateway.practice_reader import PracticeReader
from gateway.privacy import BookingFactory, protect
from gateway.remote import RemoteAdapterSource
from gateway.snapshots import SnapshotKeeper, SnapshotPractice, snapshot_adapter
from gateway.state_store import StateStore, open_store
from otv_rules.availability import SlotPolicy
from otv_sdk.changes import Change
from otv_sdk.errors import NotFound, OtvError
from otv_sdk.models import Capability
from otv_sdk.ports import Adapter, CalendarDataPort, CallContext

__all__ = ["AdapterSource", "LocalAdapterSource", "PracticeRouter", "booking_desk", "build_router"]

log = logging.getLogger("otv.gateway.routing")


class AdapterSource(Protocol):
    async def get(self, ctx: CallContext) -> Adapter: ...

    async def aclose(self) -> None: ...


class LocalAdapterSource:
    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    async def get(self, ctx: CallContext) -> Adapter:
        return self._adapter

    async def aclose(self) -> None:
        await self._adapter.aclose()


class LocatingConnectorSource(ConnectorAdapterSource):
    """A connector practice on one of several replicas: before the practice's adapter is handed
    out, find where its stream is held, so that `online` is true for a connector attached to
    another replica a moment ago, not only after the next registry read."""

    async def get(self, ctx: CallContext) -> Adapter:
        await self._hub.locate(self._practice)
        return await super().get(ctx)


class PracticeRouter:
    """The gateway's AdapterResolver: finds the practice's adapter and hands it out privacy-guarded."""

    def __init__(
        self,
        sources: Mapping[str, AdapterSource],
        scope: PatientIdScope,
        store: StateStore | None = None,
        policies: Mapping[str, BookingPolicy] | None = None,
        cipher: FieldCipher | None = None,
        feeds: Mapping[str, PracticeFeed] | None = None,
        snapshot_keepers: Mapping[str, SnapshotKeeper] | None = None,
        connectors: ConnectorHub | None = None,
    ) -> None:
        self.snapshot_keepers = dict(snapshot_keepers or {})
        self.connectors = connectors or ConnectorHub({}, {})
        self._cipher = cipher
        self._feeds = dict(feeds or {})
        self._sources = dict(sources)
        self._scope = scope
        self._store = store
        self._policies = dict(policies or {})
        self._guarded: dict[str, tuple[Adapter, Adapter]] = {}
        self._readers: dict[str, PracticeReader] = {}
        self.metrics: GatewayMetrics | None = None  # set by the gateway: data-port calls are timed

    @property
    def store(self) -> StateStore:
        if self._store is None:
            raise RuntimeError("this router has no state store")
        return self._store

    @property
    def practice_ids(self) -> list[str]:
        return sorted(self._sources)

    async def resolve(self, practice_id: str, ctx: CallContext, field: str) -> Adapter:
        source = self._sources.get(practice_id)
        if source is None:
            raise NotFound.field(field, "no practice with this id is connected to this gateway")
        adapter = await source.get(ctx)
        known = self._guarded.get(practice_id)
        if known is None or known[0] is not adapter:  # remote adapters are re-described now and then
            metered = adapter if self.metrics is None else self.metrics.metered_adapter(practice_id, adapter)
            served = self._serve(practice_id, metered)
            guarded = self._with_feed(practice_id, adapter, protect(served, self._scope, self._booking(practice_id)))
            if isinstance(source, ConnectorAdapterSource) and guarded.writer is not None:
                guarded = dataclasses.replace(guarded, writer=OnlineOnlyWriter(guarded.writer, source.online))
            known = (adapter, guarded)
            self._guarded[practice_id] = known
        return known[1]

    def _serve(self, practice_id: str, adapter: Adapter) -> Adapter:
        """The services partners call, computed by the gateway from the data the PVS serves."""
        reader = adapter.reader
        if adapter.calendar is not None:
            reader = self._readers.get(practice_id)
            if reader is None or reader.source is not adapter.calendar:
                reader = self._practice_reader(practice_id, adapter)
                self._readers[practice_id] = reader
        return dataclasses.replace(
            adapter,
            reader=reader,
            patient_lookup=(
                PatientMatcher(practice_id, adapter.patients, self._store, cipher=self._cipher)
                if adapter.patients is not None
                else adapter.patient_lookup
            ),
            consent=RecordedConsent(adapter.consents) if adapter.consents is not None else adapter.consent,
        )

    def _practice_reader(self, practice_id: str, adapter: Adapter) -> PracticeReader:
        assert adapter.calendar is not None
        feed = self._feeds.get(practice_id)
        # An engine and the configuration are kept only where every change of the practice reaches
        # its feed: the adapter's outbox, or a remote's or connector's change stream. Snapshot
        # practices re-read their uploads per query.
        announced = (
            feed is not None
            and practice_id not in self.snapshot_keepers
            and (adapter.changes is not None or Capability.CHANGE_FEED in adapter.extra_capabilities)
        )
        data: CalendarDataPort = adapter.calendar
        if announced and feed is not None:
            data = CalendarCache(data, feed.listen)
        grid = self._policies.get(practice_id, BookingPolicy()).grid_minutes
        source = self._sources.get(practice_id)
        online = source.online if isinstance(source, ConnectorAdapterSource) else None
        reader = PracticeReader(
            data, SlotPolicy(grid_minutes=grid), announced=announced, source=adapter.calendar, online=online
        )
        if announced and feed is not None:
            feed.listen(reader.apply)
        return reader

    async def configured_adapter(self, practice_id: str, ctx: CallContext) -> Adapter:
        """The practice's adapter as configured, without the gateway's protection around it.

        For operators and certification runs (the PVS-contract checks and the sandbox hook), never
        for serving partners.
        """
        source = self._sources.get(practice_id)
        if source is None:
            raise NotFound.field("practice", "no practice with this id is connected to this gateway")
        return await source.get(ctx)

    def _with_feed(self, practice_id: str, adapter: Adapter, protected: Adapter) -> Adapter:
        """Attach the practice's change feed: the adapter's own changes go in, partners watch it."""
        feed = self._feeds.get(practice_id)
        if feed is None:
            return protected
        if adapter.changes is not None and self._guarded.get(practice_id) is None:
            adapter.changes.subscribe(feed.publish)
        writer = None if protected.writer is None else AnnouncingWriter(protected.writer, feed)
        return dataclasses.replace(protected, writer=writer, change_feed=feed)

    def feed(self, practice_id: str) -> PracticeFeed | None:
        return self._feeds.get(practice_id)

    def _booking(self, practice_id: str) -> BookingFactory | None:
        store, cipher = self._store, self._cipher
        if store is None or cipher is None:
            return None
        policy = self._policies.get(practice_id, BookingPolicy())
        feed = self._feeds.get(practice_id)
        announce = None if feed is None else feed.publish
        return lambda adapter, patients: BookingDesk(
            practice_id, adapter, patients, store, policy, cipher, announce=announce
        )

    async def recover(self) -> None:
        """Finish PVS writes that a crash interrupted, practice by practice."""
        ctx = CallContext(partner_id="otv-gateway")
        for practice_id in self.practice_ids:
            try:
                desk = booking_desk(await self.resolve(practice_id, ctx, "practice"))
                if desk is not None:
                    completed = await desk.recover(ctx)
                    if completed:
                        log.warning("completed %d interrupted bookings for practice %s", completed, practice_id)
            except OtvError as error:
                log.warning("could not check practice %s for interrupted bookings: %s", practice_id, error.code.value)

    async def aclose(self) -> None:
        for feed in self._feeds.values():
            await feed.aclose()
        self.connectors.close()
        for source in self._sources.values():
            await source.aclose()
        if self._store is not None:
            self._store.close()


def booking_desk(adapter: Adapter) -> BookingDesk | None:
    """The booking desk behind a guarded adapter's writer, if it has one."""
    writer = adapter.writer
    while isinstance(writer, AnnouncingWriter | OnlineOnlyWriter):
        writer = writer.inner
    return writer if isinstance(writer, BookingDesk) else None


def _describe_settings_error(prefix: str, error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{prefix}.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors())
    return f"{prefix}: {error}"


async def build_router(
    config: GatewayConfig, channel_interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
) -> PracticeRouter:
    """Create every practice's adapter source; raise ConfigError naming the field on failure.

    `channel_interceptors` go on the channels to remote adapter servers (trace context)."""
    secret = load_secret(config)
    scope = PatientIdScope(secret)
    try:
        cipher = FieldCipher(*keys_from(config.gateway.encryption_keys, config.gateway.encryption_key, secret))
    except ValueError as error:
        raise ConfigError(f"gateway.encryption_keys: {error}") from None
    try:
        store = open_store(config.gateway.state_store, config.base_dir)
    except (ValueError, OSError) as error:
        raise ConfigError(f"gateway.state_store: cannot open it: {error}") from None
    except Exception as error:  # a database driver's own errors (PostgreSQL unreachable, ...)
        raise ConfigError(f"gateway.state_store: cannot open it: {type(error).__name__}: {error}") from None
    policies = {
        practice_id: BookingPolicy(
            default_mode=practice.booking.mode,
            modes=dict(practice.booking.modes),
            hold=timedelta(minutes=practice.booking.hold_minutes),
            cancellation_deadline=timedelta(hours=practice.booking.cancellation_deadline_hours),
            confirm_within=timedelta(hours=practice.booking.confirm_within_hours),
            category=practice.booking.category,
            grid_minutes=practice.slot_grid_minutes,
        )
        for practice_id, practice in config.practices.items()
    }
    feeds = {
        practice_id: PracticeFeed(
            practice_id,
            store,
            cipher,
            heartbeat_seconds=config.gateway.heartbeat_seconds,
            retention=config.gateway.change_retention,
        )
        for practice_id in config.practices
    }
    connectors = {
        practice_id: practice.adapter.connector
        for practice_id, practice in config.practices.items()
        if practice.adapter.connector is not None
    }
    hub = ConnectorHub(
        connectors,
        {practice_id: c.ping_seconds for practice_id, c in connectors.items()},
        lambda practice_id, change: feeds[practice_id].publish(change),
    )
    sources: dict[str, AdapterSource] = {}
    keepers: dict[str, SnapshotKeeper] = {}
    try:
        for practice_id, practice in config.practices.items():
            snapshot = practice.adapter.snapshot
            if snapshot is not None:
                keepers[practice_id] = SnapshotKeeper(
                    SnapshotPractice.from_config(practice_id, snapshot), store, feeds[practice_id]
                )
                sources[practice_id] = LocalAdapterSource(snapshot_adapter(keepers[practice_id]))
            else:
                where = f"practices.{practice_id}.adapter"
                sources[practice_id] = _source(
                    config, hub, practice_id, where, feeds[practice_id].publish, channel_interceptors
                )
    except BaseException:
        await PracticeRouter(sources, scope, store).aclose()  # release what was opened before the failure
        raise
    router = PracticeRouter(sources, scope, store, policies, cipher, feeds, keepers, hub)
    for practice_id, keeper in keepers.items():  # uploads reconcile manual bookings (reconciliation.py)
        keeper.bookings = functools.partial(_practice_desk, router, practice_id)
    return router


async def _practice_desk(router: PracticeRouter, practice_id: str) -> BookingDesk | None:
    return booking_desk(await router.resolve(practice_id, CallContext(partner_id=f"practice:{practice_id}"), "parent"))


def _source(
    config: GatewayConfig,
    hub: ConnectorHub,
    practice_id: str,
    where: str,
    publish: Callable[[Change], None],
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> AdapterSource:
    adapter_config = config.practices[practice_id].adapter
    if adapter_config.remote is not None:
        remote = adapter_config.remote
        credentials = None
        if remote.tls is not None:
            tls = remote.tls
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read_file(config, tls.ca_file, f"{where}.remote.tls.ca_file"),
                private_key=read_file(config, tls.key_file, f"{where}.remote.tls.key_file") if tls.key_file else None,
                certificate_chain=(
                    read_file(config, tls.cert_file, f"{where}.remote.tls.cert_file") if tls.cert_file else None
                ),
            )
        channel = (
            grpc.aio.insecure_channel(remote.address, interceptors=interceptors)
            if credentials is None
            else grpc.aio.secure_channel(remote.address, credentials, interceptors=interceptors)
        )
        return RemoteAdapterSource(
            channel,
            remote.practice or practice_id,
            cache_seconds=remote.capability_cache_seconds,
            publish=publish,
        )
    if adapter_config.connector is not None:
        connector = adapter_config.connector
        return LocatingConnectorSource(
            hub, practice_id, connector.practice or practice_id, connector.capability_cache_seconds
        )
    assert adapter_config.plugin is not None  # AdapterConfig guarantees one of the two
    try:
        factory = load_factory(adapter_config.plugin)
    except LookupError as error:
        raise ConfigError(f"{where}.plugin: {error}") from None
    try:
        adapter = factory(practice_id, adapter_config.settings, base_dir=config.base_dir)
    except (ValidationError, ValueError, OSError) as error:
        raise ConfigError(_describe_settings_error(f"{where}.settings", error)) from None
    if not isinstance(adapter, Adapter):
        raise ConfigError(f"{where}.plugin: the factory returned {type(adapter).__name__}, not an Adapter")
    return LocalAdapterSource(adapter)
