"""A certification run: start a gateway in front of the adapter, load the scenario, run the cases.

The suite calls the adapter only as partners will: through its own gateway, signed, over real
gRPC; plus the PVS-contract cases and the sandbox hook, which use the adapter's ports through the
same transport the gateway uses. Nothing here can touch a vendor's real data: without a sandbox
hook the run stops before the first case.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc

from gateway.app import Gateway
from gateway.config import ConfigError, parse_config
from gateway.partners import PartnerRegistry
from otv_conformance.cases import Case, CheckFailed, Result, all_cases
from otv_conformance.expectations import SLOT_GRID_MINUTES
from otv_conformance.scenarios import PlacedScenario, RunValues, load_scenario, place_scenario
from otv_conformance.session import Session
from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.errors import OtvError
from otv_sdk.models import AdapterInfo, Capability
from otv_sdk.ports import CallContext
from otv_sdk.signing import Signer, generate_key_pair

__all__ = ["CaseResult", "CouldNotRun", "RunResult", "Target", "run_suite"]

log = logging.getLogger("otv.conformance")

PRACTICE = "sandbox"
AUDIENCE = "otv-conformance"
DEFAULT_SCENARIO = "dental-practice.v1"
CASE_TIMEOUT_SECONDS = 60.0


class CouldNotRun(Exception):
    """The run could not start or had to stop: no verdict about the adapter."""


@dataclass(frozen=True, slots=True)
class Target:
    """The adapter under certification: an in-process plugin or a remote adapter server."""

    plugin: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    remote: str | None = None
    remote_practice: str = PRACTICE
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def transport(self) -> str:
        return "remote" if self.remote else "in_process"

    def describe(self) -> str:
        return f"remote {self.remote} (practice {self.remote_practice})" if self.remote else f"plugin {self.plugin}"

    def adapter_config(self) -> dict[str, Any]:
        if (self.plugin is None) == (self.remote is None):
            raise CouldNotRun("give exactly one of a plugin and a remote address")
        if self.plugin is not None:
            return {"plugin": self.plugin, "settings": self.settings}
        remote: dict[str, Any] = {"address": self.remote, "practice": self.remote_practice}
        if self.tls_ca is not None:
            remote["tls"] = {"ca_file": str(self.tls_ca.resolve())}
            if self.tls_cert is not None and self.tls_key is not None:
                remote["tls"] |= {"cert_file": str(self.tls_cert.resolve()), "key_file": str(self.tls_key.resolve())}
        return {"remote": remote}


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    result: Result
    message: str
    duration: float


@dataclass(slots=True)
class RunResult:
    target: Target
    placed: PlacedScenario
    adapter: AdapterInfo
    capabilities: frozenset[Capability]
    started: datetime
    finished: datetime
    results: list[CaseResult]

    @property
    def certified(self) -> bool:
        return all(r.result in (Result.PASS, Result.SKIP) for r in self.results if r.case.required)


def _gateway_config(target: Target) -> Any:
    return parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "shutdown_grace_seconds": 0,
                "secret_key": secrets.token_hex(48),
                "state_store": "sqlite://:memory:",
                "audience": AUDIENCE,
                # A certification run is one trusted caller driving the whole suite: its calls are not
                # held to a partner's share of the gateway (docs/security.md).
                "rate_limit": {"per_second": 100_000, "burst": 100_000, "concurrent": 1000, "share": 64},
            },
            # The start grid is the gateway's configuration; the oracle's slot expectations use the same.
            "practices": {PRACTICE: {"adapter": target.adapter_config(), "slot_grid_minutes": SLOT_GRID_MINUTES}},
        }
    )


def _data_channel(target: Target) -> grpc.aio.Channel | None:
    """The suite's own channel to a remote adapter server, with the gateway's credentials."""
    if target.remote is None:
        return None
    if target.tls_ca is None:
        return grpc.aio.insecure_channel(target.remote)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=target.tls_ca.read_bytes(),
        private_key=target.tls_key.read_bytes() if target.tls_key and target.tls_cert else None,
        certificate_chain=target.tls_cert.read_bytes() if target.tls_key and target.tls_cert else None,
    )
    return grpc.aio.secure_channel(target.remote, credentials)


def _partner(gateway: Gateway, partner_id: str) -> Signer:
    private, public = generate_key_pair()
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner(partner_id, "conformance suite")
    registry.add_key(partner_id, f"{partner_id}-1", public)
    registry.grant(partner_id, PRACTICE)
    return Signer(f"{partner_id}-1", private, AUDIENCE)


async def _run_case(case: Case, session: Session) -> CaseResult:
    if case.capability not in session.capabilities:
        return CaseResult(
            case, Result.SKIP, f"not applicable: the adapter does not declare {case.capability.value}", 0.0
        )
    begin = time.perf_counter()
    try:
        async with asyncio.timeout(CASE_TIMEOUT_SECONDS):
            note = await case.run(session)
        result, message = Result.PASS, note or ""
    except CheckFailed as failure:
        result, message = Result.FAIL, str(failure)
    except OtvError as error:
        result, message = Result.ERROR, f"{error.code.name}: {error.message}"
    except TimeoutError:
        result, message = Result.ERROR, f"no answer within {CASE_TIMEOUT_SECONDS:.0f} s"
    except Exception as error:  # a case must never end the run
        result, message = Result.ERROR, f"{type(error).__name__}: {error}"
    return CaseResult(case, result, message, time.perf_counter() - begin)


async def run_suite(
    target: Target,
    *,
    scenario: str = DEFAULT_SCENARIO,
    latency_budget_ms: float = 1000.0,
    progress: Callable[[CaseResult], None] | None = None,
    today: date | None = None,
) -> RunResult:
    """Certify the target; raises CouldNotRun when there is no verdict to give."""
    started = datetime.now(UTC)
    try:
        data = load_scenario(scenario)
    except (OSError, ValueError) as error:
        raise CouldNotRun(f"scenario {scenario}: {error}") from None
    try:
        gateway = await Gateway.start(_gateway_config(target))
    except ConfigError as error:
        raise CouldNotRun(f"the adapter could not be set up: {error}") from None
    clients: list[PartnerClient] = []
    channel: grpc.aio.Channel | None = None
    data_channel: grpc.aio.Channel | None = None
    adapter = None
    ctx = CallContext(partner_id="otv-conformance")
    try:
        partner_a, partner_b = f"conformance-a-{secrets.token_hex(3)}", f"conformance-b-{secrets.token_hex(3)}"
        signer_a, signer_b = _partner(gateway, partner_a), _partner(gateway, partner_b)
        placed = place_scenario(data, today or datetime.now(UTC).date(), RunValues(partner_a, partner_b))
        try:
            adapter = await gateway.router.configured_adapter(PRACTICE, ctx)
        except OtvError as error:
            raise CouldNotRun(f"the adapter cannot be reached: {error.code.name}: {error.message}") from None
        if adapter.sandbox is None:
            raise CouldNotRun(
                "the adapter offers no sandbox hook (CAPABILITY_SANDBOX); certification never runs against real data"
            )
        try:
            await adapter.sandbox.load_scenario(ctx, placed.scenario)
        except OtvError as error:
            raise CouldNotRun(f"the sandbox refused the scenario: {error.code.name}: {error.message}") from None
        a = PartnerClient.connect(gateway.address, signer=signer_a)
        b = PartnerClient.connect(gateway.address, signer=signer_b)
        clients += [a, b]
        channel = grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(signer_a))
        practice = await a.get_practice(PRACTICE)
        data_channel = _data_channel(target)
        session = Session(
            placed=placed,
            practice_id=PRACTICE,
            partner_a=partner_a,
            partner_b=partner_b,
            a=a,
            b=b,
            channel_a=channel,
            adapter=adapter,
            capabilities=practice.capabilities,
            latency_budget_ms=latency_budget_ms,
            transport=target.transport,
            data_channel=data_channel,
            remote_practice=target.remote_practice,
        )
        results: list[CaseResult] = []
        for case in all_cases():
            outcome = await _run_case(case, session)
            results.append(outcome)
            if progress is not None:
                progress(outcome)
        return RunResult(target, placed, practice.adapter, practice.capabilities, started, datetime.now(UTC), results)
    finally:
        if adapter is not None and adapter.sandbox is not None:
            try:
                await adapter.sandbox.reset(ctx)
            except OtvError as error:
                log.warning("could not reset the sandbox: %s", error.code.name)
        for client in clients:
            await client.close()
        for open_channel in (channel, data_channel):
            if open_channel is not None:
                await open_channel.close()
        await gateway.stop(0)
