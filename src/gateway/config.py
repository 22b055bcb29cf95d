"""Gateway configuration: one TOML file, validated with pydantic.

A wrong file fails at start with `ConfigError` naming the field, e.g.
`practices.demo.adapter.plugin: unknown adapter plugin 'refrence'`.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from datetime import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from otv_sdk.models import WeeklySpan
from otv_sdk.resources import is_valid_practice_id

__all__ = [
    "AdapterConfig",
    "BookingConfig",
    "ConfigError",
    "ConnectorAdapterConfig",
    "GatewayConfig",
    "GatewaySection",
    "RateLimitConfig",
    "RemoteAdapterConfig",
    "ReplicasConfig",
    "SnapshotAdapterConfig",
    "load_config",
]


class ConfigError(ValueError):
    """The configuration is wrong; the message names the field."""


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be 'host:port' with a port from 0 to 65535")
    return value


Address = Annotated[str, AfterValidator(_address)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsServerConfig(_Strict):
    """TLS on the gateway's port; with client_ca, mutual TLS: clients must show a certificate it signed."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class TlsClientConfig(_Strict):
    """How the gateway reaches a remote adapter over (mutual) TLS."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


class RateLimitConfig(_Strict):
    per_second: float = Field(200.0, gt=0, le=1_000_000, description="calls per second, sustained")
    burst: int = Field(400, ge=1, le=1_000_000, description="calls allowed at once after a quiet spell")
    concurrent: int = Field(8, ge=1, le=10_000, description="calls served at once; more wait their turn")
    queued: int = Field(256, ge=0, le=100_000, description="calls waiting for their turn; beyond, refused")
    share: float = Field(
        0.05, gt=0, le=64, description="of a replica's time one partner's calls may take on average (1 = one core)"
    )
    share_burst: float = Field(1.0, gt=0, le=3600, description="seconds of it usable at once after a quiet spell")


class TracingConfig(_Strict):
    endpoint: str | None = Field(
        None,
        description="OTLP/gRPC collector for the spans (http://host:4317); unset: traces are carried, not exported",
    )
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="share of partner calls traced when the caller sent no sampling decision"
    )
    service_name: str = Field("otv-gateway", min_length=1, max_length=100, description="service.name of the spans")


class ReplicasConfig(_Strict):
    """Several replicas of one gateway (docs/replica-forwarding.md): each serves every practice;
    a connector practice's calls reach the replica holding its stream through these listeners."""

    listen: Address = Field(
        description="internal listener for the other replicas (ReplicaService); keep it off the partners' network"
    )
    advertise: Address | None = Field(
        None, description="how the other replicas reach that listener; default: listen with the port it bound"
    )
    lease_seconds: float = Field(
        10.0,
        ge=1,
        le=300,
        description="a dead replica's connector streams are given up this long after its last renewal",
    )
    tls: TlsServerConfig | None = Field(
        None, description="TLS on the internal listener; with client_ca_file, replicas must show a certificate"
    )
    peer_tls: TlsClientConfig | None = Field(None, description="how this replica reaches the others over (mutual) TLS")

    @field_validator("advertise")
    @classmethod
    def _advertised_port(cls, value: str | None) -> str | None:
        if value is not None and value.rpartition(":")[2] == "0":
            raise ValueError("must name the port the other replicas connect to, not 0")
        return value


class GatewaySection(_Strict):
    listen: Address = Field("127.0.0.1:50051", description="address the gateway listens on")
    http_listen: Address | None = Field(
        None, description="address of the HTTP + JSON snapshot upload (for a PVS with curl); off when unset"
    )
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=300)
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    secret_key: str | None = Field(
        None, description="hex, at least 32 bytes; derives partner-scoped ids. Prefer secret_key_file"
    )
    secret_key_file: str = Field(
        "gateway-secret.key", description="file with the secret (created on first start); relative to the config"
    )
    tls: TlsServerConfig | None = None
    metrics: bool = Field(
        True, description="Prometheus metrics, served at /metrics on http_listen (docs/operations.md)"
    )
    tracing: TracingConfig | None = Field(
        None, description="OpenTelemetry traces (docs/operations.md); off when the section is absent"
    )
    encryption_keys: dict[str, str] = Field(
        default_factory=dict, description="key id -> 32 bytes hex, for personal values at rest"
    )
    encryption_key: str | None = Field(None, description="the key id that seals new values")
    audience: str = Field("otv", min_length=1, max_length=200, description="this gateway's name in signatures")
    max_clock_skew_seconds: int = Field(300, ge=10, le=3600, description="how old or new a signed call may be")
    heartbeat_seconds: float = Field(15.0, gt=0, le=300, description="idle WatchChanges streams get a heartbeat")
    change_retention: int = Field(
        100_000, ge=100, description="change events kept per practice; older cursors must re-read a snapshot"
    )
    rate_limit: RateLimitConfig = Field(
        default_factory=RateLimitConfig,  # type: ignore[arg-type]
        description="what each partner may call per gateway replica; beyond it RESOURCE_EXHAUSTED with RetryInfo",
    )
    partner_rate_limits: dict[str, RateLimitConfig] = Field(
        default_factory=dict, description="partner id -> its own rate limit, instead of rate_limit"
    )
    state_store: str = Field(
        "sqlite:///gateway-state.sqlite",
        description="sqlite:///path (relative to the config) or postgresql://... for several gateways",
        pattern="^(sqlite://|postgres(ql)?://)",
    )
    replicas: ReplicasConfig | None = Field(
        None, description="several replicas sharing state_store: connector practices from any replica; off when absent"
    )

    @field_validator("encryption_keys")
    @classmethod
    def _keys_are_32_bytes(cls, value: dict[str, str]) -> dict[str, str]:
        for key_id, key in value.items():
            try:
                if len(bytes.fromhex(key)) != 32:
                    raise ValueError
            except ValueError:
                raise ValueError(f"key {key_id!r} must be 32 bytes as 64 hex digits") from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_is_hex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ValueError("must be hexadecimal") from None
            if len(raw) < 32:
                raise ValueError("must be at least 32 bytes (64 hex digits)")
        return value


class RemoteAdapterConfig(_Strict):
    address: Address = Field(description="host:port of the vendor's adapter server")
    practice: str | None = Field(None, description="practice id on the adapter server; default: the same id")
    capability_cache_seconds: float = Field(60.0, ge=0)
    tls: TlsClientConfig | None = None


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_weekly_span(value: str) -> WeeklySpan:
    """'mon 08:00-12:30': a weekday and a span of wall-clock time on it."""
    day, _, span = value.strip().partition(" ")
    start, _, end = span.strip().partition("-")
    try:
        weekday = _WEEKDAYS.index(day.lower()) + 1
        first, last = time.fromisoformat(start), time.fromisoformat(end)
    except ValueError:
        raise ValueError(f"{value!r} is not like 'mon 08:00-12:30'") from None
    if first >= last:
        raise ValueError(f"{value!r} ends before it starts")
    return WeeklySpan(weekday, first, last)


def _weekly_span(value: str) -> str:
    parse_weekly_span(value)
    return value


class SnapshotColumnConfig(_Strict):
    id: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    display_name: str = Field(min_length=1, max_length=200)
    weekly_hours: list[Annotated[str, AfterValidator(_weekly_span)]] = Field(
        default_factory=list, description="e.g. 'mon 08:00-12:30'; wall-clock time of the practice"
    )


class SnapshotTypeConfig(_Strict):
    id: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    display_name: str = Field(min_length=1, max_length=200)
    minutes: int = Field(ge=5, le=24 * 60)
    columns: list[str] = Field(min_length=1)


class SnapshotAdapterConfig(_Strict):
    """A PVS that can only upload its busy times: the gateway keeps them and serves the calendar."""

    display_name: str = Field(min_length=1, max_length=200)
    time_zone: str = "Europe/Berlin"
    window_days: int = Field(90, ge=1, le=730, description="how far ahead the PVS uploads, from today")
    upload_interval_seconds: int = Field(120, ge=10, le=3600, description="how often the PVS uploads")
    columns: list[SnapshotColumnConfig] = Field(min_length=1)
    appointment_types: list[SnapshotTypeConfig] = Field(default_factory=list)
    slot_list: bool = Field(
        False,
        description="the PVS uploads its free slots per column as well (DURIA); only those are offered online",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _types_name_columns(self) -> SnapshotAdapterConfig:
        ids = [column.id for column in self.columns]
        if len(set(ids)) != len(ids):
            raise ValueError("column ids must be unique")
        for kind in self.appointment_types:
            unknown = sorted(set(kind.columns) - set(ids))
            if unknown:
                raise ValueError(f"appointment type {kind.id!r} names unknown columns {unknown}")
        return self


class ConnectorAdapterConfig(_Strict):
    """The practice's adapter dials out to the gateway (ConnectorService) instead of being dialled."""

    practice: str | None = Field(None, description="practice id on the connector's side; default: the same id")
    capability_cache_seconds: float = Field(60.0, ge=0)
    ping_seconds: float = Field(15.0, gt=0, le=300, description="idle streams get a ping this often")


class AdapterConfig(_Strict):
    """Exactly one transport: an in-process plugin (entry-point name or 'module:factory'), a remote
    address, snapshot uploads, or an outbound connector."""

    plugin: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    remote: RemoteAdapterConfig | None = None
    snapshot: SnapshotAdapterConfig | None = None
    connector: ConnectorAdapterConfig | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> AdapterConfig:
        chosen = [self.plugin, self.remote, self.snapshot, self.connector]
        if sum(item is not None for item in chosen) != 1:
            raise ValueError("set exactly one of 'plugin' (in-process), 'remote', 'snapshot' or 'connector'")
        if self.plugin is None and self.settings:
            raise ValueError("'settings' belong to plugins; other adapters are configured where they run")
        return self


BookingModeName = Literal["automatic", "confirmation", "manual"]


class BookingConfig(_Strict):
    """How online bookings reach this practice's calendar."""

    mode: BookingModeName = Field("automatic", description="automatic, confirmation (by the practice) or manual")
    modes: dict[str, BookingModeName] = Field(default_factory=dict, description="per appointment type id")
    hold_minutes: int = Field(15, ge=1, le=24 * 60, description="how long a hold lasts (double opt-in)")
    cancellation_deadline_hours: int = Field(24, ge=0, le=24 * 90)
    confirm_within_hours: float = Field(
        48, gt=0, le=24 * 90, description="a confirmation the practice has not decided by then is rejected"
    )
    category: str = Field("online", min_length=1, max_length=40, description="how the PVS marks online bookings")


class PracticeConfig(_Strict):
    adapter: AdapterConfig
    booking: BookingConfig = Field(default_factory=BookingConfig)  # type: ignore[arg-type]
    slot_grid_minutes: int = Field(
        5, ge=1, le=24 * 60, description="slots start every N minutes of local time; must divide a day"
    )

    @field_validator("slot_grid_minutes")
    @classmethod
    def _divides_a_day(cls, value: int) -> int:
        if (24 * 60) % value:
            raise ValueError("must divide a day (5, 10, 15, 20, 30, 60, ...)")
        return value


class GatewayConfig(_Strict):
    gateway: GatewaySection = Field(default_factory=GatewaySection)  # type: ignore[arg-type]
    practices: dict[str, PracticeConfig]
    # Folder of the file, for relative paths in plugin settings; not part of the file.
    base_dir: Path | None = Field(None, exclude=True)

    @field_validator("practices")
    @classmethod
    def _practice_ids(cls, value: dict[str, PracticeConfig]) -> dict[str, PracticeConfig]:
        if not value:
            raise ValueError("configure at least one practice")
        for practice_id in value:
            if not is_valid_practice_id(practice_id):
                raise ValueError(
                    f"practice id {practice_id!r} must be 1-63 lower-case letters, digits or '-',"
                    " not starting or ending with '-'"
                )
        return value


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(file)"
        lines.append(f"{location}: {item['msg']}")
    return "; ".join(lines)


def parse_config(data: dict[str, Any], base_dir: Path | None = None) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate({**data, "base_dir": base_dir})
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def load_config(path: Path) -> GatewayConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return parse_config(data, path.resolve().parent)


def resolve_path(config: GatewayConfig, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else (config.base_dir or Path.cwd()) / path


def read_file(config: GatewayConfig, name: str, field: str) -> bytes:
    """A file the configuration names (certificates, keys), or ConfigError naming the field."""
    try:
        return resolve_path(config, name).read_bytes()
    except OSError as error:
        raise ConfigError(f"{field}: cannot read {name}: {error.strerror}") from None


def load_secret(config: GatewayConfig) -> bytes:
    """The gateway's secret: from the configuration, else from its file, created (0600) on first start."""
    if config.gateway.secret_key is not None:
        return bytes.fromhex(config.gateway.secret_key)
    path = Path(config.gateway.secret_key_file)
    if not path.is_absolute():
        path = (config.base_dir or Path.cwd()) / path
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                handle.write(secrets.token_hex(64))
        raw = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as error:
        raise ConfigError(f"gateway.secret_key_file: cannot use {path}: {error}") from None
    if len(raw) < 32:
        raise ConfigError(f"gateway.secret_key_file: {path} holds fewer than 32 bytes")
    return raw


def demo_config(state_dir: Path, listen: str | None = None, http_listen: str | None = None) -> GatewayConfig:
    """The embedded default: the demo practice on the reference adapter, stored under state_dir."""
    data = tomllib.loads(resources.files(__package__).joinpath("demo.toml").read_text(encoding="utf-8"))
    if listen is not None:
        data.setdefault("gateway", {})["listen"] = listen
    if http_listen is not None:
        data.setdefault("gateway", {})["http_listen"] = http_listen
    return parse_config(data, state_dir)
