"""Routing: which adapter serves a practice.

Built once from the configuration. In-process plugins are created at start, so a bad plugin or
bad settings stop the gateway before it listens; remote adapters are contacted on first use, so
a PVS that is down at start does not keep the gateway from serving the other practices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import ValidationError

from gateway.config import ConfigError, GatewayConfig, load_secret
from gateway.patient_ids import PatientIdScope
from gateway.plugins import load_factory
from gateway.privacy import protect
from gateway.remote import RemoteAdapterSource
from otv_sdk.errors import NotFound
from otv_sdk.ports import Adapter, CallContext

__all__ = ["AdapterSource", "LocalAdapterSource", "PracticeRouter", "build_router"]


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


class PracticeRouter:
    """The gateway's AdapterResolver: finds the practice's adapter and hands it out privacy-guarded."""

    def __init__(self, sources: Mapping[str, AdapterSource], scope: PatientIdScope) -> None:
        self._sources = dict(sources)
        self._scope = scope
        self._guarded: dict[str, tuple[Adapter, Adapter]] = {}

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
            known = (adapter, protect(adapter, self._scope))
            self._guarded[practice_id] = known
        return known[1]

    async def aclose(self) -> None:
        for source in self._sources.values():
            await source.aclose()


def _describe_settings_error(prefix: str, error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{prefix}.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors())
    return f"{prefix}: {error}"


async def build_router(config: GatewayConfig) -> PracticeRouter:
    """Create every practice's adapter source; raise ConfigError naming the field on failure."""
    scope = PatientIdScope(load_secret(config))
    sources: dict[str, AdapterSource] = {}
    try:
        for practice_id in config.practices:
            sources[practice_id] = _source(config, practice_id, f"practices.{practice_id}.adapter")
    except BaseException:
        await PracticeRouter(sources, scope).aclose()  # release what was opened before the failure
        raise
    return PracticeRouter(sources, scope)


def _source(config: GatewayConfig, practice_id: str, where: str) -> AdapterSource:
    adapter_config = config.practices[practice_id].adapter
    if adapter_config.remote is not None:
        remote = adapter_config.remote
        return RemoteAdapterSource(
            remote.address, remote.practice or practice_id, cache_seconds=remote.capability_cache_seconds
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
