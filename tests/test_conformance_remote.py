"""The mutation harness over the second transport: every faulty adapter behind a real adapter server.

Vendors certify remote adapters with `otv conformance run --remote`; what the suite sees then is
the gateway's PracticeDataService client, a real gRPC link and the change stream, not the Python
ports. So each faulty adapter of conformance_faults.py is also served by the SDK's adapter server
(`serve_adapters`, what `otv adapter serve` runs) and certified remotely, and must fail with the
case that names its rule, exactly as in-process (test_conformance.py). Every fault runs remotely:
what a written entry was stored with (source partner, category, appointment type) comes back in
DeleteCalendarEntryResponse since suite 1.3.0, and `SOURCE_FAULTS` must fail naming the field they
get wrong. `SERVER_FAULTS` are bugs of the server rather than of the data access (no heartbeats),
which exist only remotely.
"""

from __future__ import annotations

from typing import Any

import conformance_faults
import pytest

from otv_conformance import RunResult, Target, all_cases, run_suite
from otv_conformance.cases import Result
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.ports import Adapter

# The watch's idle heartbeat: the vendor guide's 15 s would make every run wait that long for
# pvs.changes.heartbeat; the case's budget (20 s) is what matters, and `no_heartbeats` tests it.
HEARTBEAT_SECONDS = 0.5
# The faults of the written entry's source, with the field each must be failed on: before the delete
# answer carried the stored entry, these passed remotely (issue 19).
SOURCE_FAULTS = {
    "writes_without_category": "category",
    "source_partner_of_first_write": "source partner",
    "source_partner_of_deleting_call": "source partner",
    "writes_one_appointment_type": "appointment type",
}
REMOTE_FAULTS = sorted(set(conformance_faults.FAULTS) - set(SOURCE_FAULTS))  # SOURCE_FAULTS run below


async def _certify_remotely(adapter: Adapter, **serve_options: Any) -> RunResult:
    options = {"heartbeat_seconds": HEARTBEAT_SECONDS, **serve_options}
    server = await serve_adapters({"sandbox": adapter}, **options)
    try:
        return await run_suite(Target(remote=f"127.0.0.1:{server.port}"))
    finally:
        await server.stop(0)


def _not_passed(run: RunResult) -> list[tuple[str, str]]:
    return [(r.case.id, r.message) for r in run.results if r.result is not Result.PASS]


def _failed(run: RunResult) -> set[str]:
    return {r.case.id for r in run.results if r.result in (Result.FAIL, Result.ERROR)}


def test_every_fault_runs_remotely_and_every_group_is_covered() -> None:
    faults = conformance_faults.FAULTS
    assert set(SOURCE_FAULTS) <= set(faults)
    assert all(faults[name][1] == "pvs.write.source" for name in SOURCE_FAULTS)
    assert len(REMOTE_FAULTS) + len(SOURCE_FAULTS) == len(faults) >= 60
    cases = {c.id: c for c in all_cases()}
    groups = {cases[faults[name][1]].group.value for name in REMOTE_FAULTS}
    assert groups == {"reader", "writer", "pvs", "patients", "consent"}
    assert all(expected in cases for _, expected in conformance_faults.SERVER_FAULTS.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", REMOTE_FAULTS)
async def test_every_faulty_adapter_fails_behind_a_remote_adapter_server(name: str) -> None:
    factory, expected = conformance_faults.FAULTS[name]
    run = await _certify_remotely(factory("sandbox", {}))
    assert run.target.transport == "remote"
    assert not run.certified
    assert expected in _failed(run), _not_passed(run)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(conformance_faults.SERVER_FAULTS))
async def test_every_faulty_adapter_server_fails(name: str) -> None:
    options, expected = conformance_faults.SERVER_FAULTS[name]
    run = await _certify_remotely(conformance_faults.reference(), **options)
    assert not run.certified
    assert _failed(run) == {expected}, _not_passed(run)  # the reference's data access is right: only that case


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(conformance_faults.UNCAUGHT))
async def test_every_uncaught_fault_is_still_certified_remotely(name: str) -> None:
    """No false failure on the second transport either: the harmless variants pass remotely."""
    factory, reason = conformance_faults.UNCAUGHT[name]
    run = await _certify_remotely(factory("sandbox", {}))
    assert run.certified, (f"{name} is caught remotely now", _not_passed(run), reason)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOURCE_FAULTS))
async def test_a_written_entrys_source_type_and_category_are_certified_remotely(name: str) -> None:
    """What the write sent comes back in the delete's answer as the PVS stored it, so a PVS that drops
    the category or records the wrong source or type fails on exactly that field, not on a note."""
    factory, expected = conformance_faults.FAULTS[name]
    run = await _certify_remotely(factory("sandbox", {}))
    assert not run.certified
    assert _failed(run) == {expected}, _not_passed(run)  # everything else it does right
    result = next(r for r in run.results if r.case.id == expected)
    assert result.result is Result.FAIL
    assert f"with {SOURCE_FAULTS[name]} " in result.message, result.message
    assert "the PVS returned" in result.message, result.message
