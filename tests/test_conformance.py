"""The conformance suite itself: it certifies the reference adapter, fails every faulty one, and its
reports can be verified and cannot be altered unnoticed."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import conformance_faults
import pytest

from otv_cli.conformance import EXIT_CERTIFIED, EXIT_COULD_NOT_RUN, EXIT_NOT_CERTIFIED
from otv_cli.main import main
from otv_conformance import CouldNotRun, Target, all_cases, run_suite
from otv_conformance.cases import Result
from otv_conformance.report import build_report, sign_report, verify_report, write_reports
from otv_conformance.requirements import REQUIREMENTS
from otv_conformance.scenarios import RunValues, anchors_for, load_scenario, place_scenario
from otv_rules.wallclock import zone
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer, generate_key_pair

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = {"sandbox": True, "demo": False}


def _signer(name: str = "runner") -> Signer:
    private, _ = generate_key_pair()
    return Signer(f"{name}-1", private, "otv-conformance-report")


def _failed(run: object) -> set[str]:
    return {r.case.id for r in run.results if r.result in (Result.FAIL, Result.ERROR)}  # type: ignore[attr-defined]


async def test_reference_in_process_is_certified_and_its_report_verifies(tmp_path: Path) -> None:
    seen: list[str] = []
    run = await run_suite(Target(plugin="reference", settings=SANDBOX), progress=lambda r: seen.append(r.case.id))
    assert not _failed(run), [(r.case.id, r.message) for r in run.results if r.result is not Result.PASS]
    assert run.certified
    assert seen == [c.id for c in all_cases()]  # progress reported test by test, in order
    signer = _signer()
    report = sign_report(build_report(run), signer)
    json_path, junit_path, html_path = write_reports(report, tmp_path)
    stored = json.loads(json_path.read_text(encoding="utf-8"))
    assert verify_report(stored) == []
    assert verify_report(stored, signer.public_key) == []
    assert stored["verdict"] == "certified"
    assert stored["adapter"]["product"] == "reference"
    assert {"reader", "writer", "patient_lookup", "consent", "sandbox"} <= set(stored["adapter"]["capabilities"])
    assert stored["scenarios"][0]["id"] == "dental-practice"
    assert stored["time_budget"] == {"per_test_seconds": 60.0}  # the documented per-test budget, in the record
    assert all({"id", "requirement", "result", "message", "duration_ms"} <= set(t) for t in stored["tests"])
    junit = junit_path.read_text(encoding="utf-8")
    assert junit.count("<testcase ") == len(all_cases())
    page = html_path.read_text(encoding="utf-8")
    assert "CERTIFIED" in page
    assert "Time budget</th><td>60 s per test" in page
    assert 'name="time_budget_per_test_s" value="60.0"' in junit
    assert "<script" not in page  # self-contained and static


async def test_reference_behind_a_remote_adapter_server_is_certified() -> None:
    # Heartbeats every second instead of the default 15 s, so pvs.changes.heartbeat does not wait
    # 15 s here (benchmarks/bench_conformance.py and the Node example run with the default).
    server = await serve_adapters({"sandbox": create_adapter("sandbox", SANDBOX)}, heartbeat_seconds=1.0)
    try:
        run = await run_suite(Target(remote=f"127.0.0.1:{server.port}"))
    finally:
        await server.stop(0)
    assert run.certified, [(r.case.id, r.message) for r in run.results if r.result is not Result.PASS]
    assert run.target.transport == "remote"


async def test_a_modified_or_resigned_report_is_rejected() -> None:
    run = await run_suite(Target(plugin="conformance_faults:writes_nothing"))
    signer = _signer()
    report = sign_report(build_report(run), signer)
    assert verify_report(report) == []
    assert report["verdict"] == "failed"

    flipped = json.loads(json.dumps(report))
    for test in flipped["tests"]:
        if test["result"] == "fail":
            test["result"] = "pass"
    flipped["verdict"] = "certified"
    assert any("changed after signing" in p for p in verify_report(flipped))

    # Re-signed by someone else after editing: caught by the expected key and by the consistency checks.
    forged = sign_report({k: v for k, v in flipped.items() if k != "signature"}, _signer("forger"))
    assert any("another key" in p for p in verify_report(forged, signer.public_key))
    dropped = dict(forged, tests=[t for t in forged["tests"] if t["id"] != "writer.book.written"])
    problems = verify_report(sign_report({k: v for k, v in dropped.items() if k != "signature"}, _signer("forger")))
    assert "writer.book.written: missing" in problems
    assert "the summary does not follow from the results" in problems


async def test_no_sandbox_or_no_adapter_means_could_not_run() -> None:
    with pytest.raises(CouldNotRun, match="no sandbox hook"):
        await run_suite(Target(plugin="reference", settings={"demo": True}))
    with pytest.raises(CouldNotRun, match="cannot be reached"):
        await run_suite(Target(remote="127.0.0.1:9"))
    with pytest.raises(CouldNotRun, match="could not be set up"):
        await run_suite(Target(plugin="no_such_module:factory"))


def test_cli_exit_codes_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ok"
    assert (
        main(["conformance", "run", "--plugin", "reference", "--settings", json.dumps(SANDBOX), "--out", str(out)])
        == EXIT_CERTIFIED
    )
    printed = capsys.readouterr().out
    assert "PASS  reader.busy.exact" in printed
    assert re.search(r"reader\s+\d+\s+0\s+0", printed)  # the summary table
    assert "CERTIFIED" in printed
    assert main(["conformance", "verify", str(out / "report.json")]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # Every note a passing test carries in the report is printed under its line too.
    lines = printed.splitlines()
    noted = [t for t in report["tests"] if t["result"] == "pass" and t["message"]]
    assert noted  # in-process, the heartbeat test passes with a note (the adapter server sends them)
    for test in noted:
        at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["PASS", test["id"]])
        assert lines[at + 1].strip() == f"note: {test['message']}"
    report["tests"][0]["duration_ms"] += 1
    (tmp_path / "modified.json").write_text(json.dumps(report), encoding="utf-8")
    assert main(["conformance", "verify", str(tmp_path / "modified.json")]) == 1

    bad = tmp_path / "bad"
    assert (
        main(["conformance", "run", "--plugin", "conformance_faults:ignores_absences", "--out", str(bad)])
        == EXIT_NOT_CERTIFIED
    )
    assert "FAIL  reader.absences.listed" in capsys.readouterr().out
    assert main(["conformance", "run", "--plugin", "reference", "--out", str(bad)]) == EXIT_COULD_NOT_RUN


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(conformance_faults.FAULTS))
async def test_every_faulty_adapter_is_failed_by_the_expected_case(name: str) -> None:
    _, expected = conformance_faults.FAULTS[name]
    run = await run_suite(Target(plugin=f"conformance_faults:{name}"))
    assert not run.certified
    assert expected in _failed(run), [(r.case.id, r.message) for r in run.results if r.result is not Result.PASS]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(conformance_faults.UNCAUGHT))
async def test_every_uncaught_fault_is_still_certified(name: str) -> None:
    """A known gap of the suite, kept visible: when a case starts catching it, move it to FAULTS."""
    _, reason = conformance_faults.UNCAUGHT[name]
    run = await run_suite(Target(plugin=f"conformance_faults:{name}"))
    assert run.certified, (f"{name} is caught now: register it with @fault", _failed(run), reason)


async def test_there_are_at_least_sixty_faulty_adapters_covering_every_group() -> None:
    assert len(conformance_faults.FAULTS) >= 60
    cases = {c.id: c for c in all_cases()}
    assert all(expected in cases for _, expected in conformance_faults.FAULTS.values())
    groups = {cases[expected].group for _, expected in conformance_faults.FAULTS.values()}
    assert {g.value for g in groups} == {"reader", "writer", "pvs", "patients", "consent"}
    assert not set(conformance_faults.FAULTS) & set(conformance_faults.UNCAUGHT)
    assert all(reason.startswith(("gap: ", "harmless: ")) for _, reason in conformance_faults.UNCAUGHT.values())
    # Harmless variants that must stay certified: list order the contract leaves open, other id
    # formats, slower but within budget (test_every_uncaught_fault_is_still_certified runs them).
    harmless = {n for n, (_, reason) in conformance_faults.UNCAUGHT.items() if reason.startswith("harmless: ")}
    assert {
        "unsorted_busy_times",
        "patients_in_reverse_order",
        "absences_in_reverse_order",
        "prefixed_entry_ids",
        "slow_but_within_budget",
    } <= harmless
    for name in (*conformance_faults.FAULTS, *conformance_faults.UNCAUGHT):  # each is a plugin of its own
        adapter = getattr(conformance_faults, name)("sandbox", {})
        assert adapter.sandbox is not None
        await adapter.aclose()


def test_every_case_names_a_documented_requirement() -> None:
    doc = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    for requirement in REQUIREMENTS:
        assert f"| {requirement} |" in doc, requirement
    ids = [c.id for c in all_cases()]
    assert len(ids) == len(set(ids))
    assert all(c.requirement in REQUIREMENTS for c in all_cases())
    assert {c.requirement for c in all_cases()} == set(REQUIREMENTS)  # nothing listed that nothing checks
    for c in all_cases():  # the checks table: every test with its requirement and whether it is required
        assert f"| `{c.id}` | {c.requirement} | {'yes' if c.required else 'no'} |" in doc, c.id


def test_scenarios_are_placed_around_both_daylight_saving_switches_and_unique_per_run() -> None:
    anchors = anchors_for(date(2026, 11, 21), zone("Europe/Berlin"))
    assert (anchors.monday, anchors.spring, anchors.autumn) == (
        date(2026, 11, 30),
        date(2027, 3, 28),
        date(2027, 10, 31),
    )
    anchors = anchors_for(date(2027, 3, 25), zone("Europe/Berlin"))
    assert anchors.monday == date(2027, 4, 5)
    assert (anchors.spring, anchors.autumn) == (date(2028, 3, 26), date(2027, 10, 31))
    data = load_scenario("dental-practice.v1")
    one = place_scenario(data, date(2026, 11, 21), RunValues("a", "b"))
    two = place_scenario(data, date(2026, 11, 21), RunValues("a", "b"))
    assert one.window.end - one.window.start < (
        one.window.start.replace(year=one.window.start.year + 2) - one.window.start
    )
    assert set(one.personal_values()) - {p.id for p in one.scenario.patients}
    assert not (set(one.values.generated) & set(two.values.generated))
    assert one.patient("p-erika").family_name != two.patient("p-erika").family_name
    # The PVS-contract writes use S+n and F+n days: both UTC offsets of the zone in every run, whatever the date.
    for today in (date(2026, 11, 21), date(2027, 3, 25), date(2027, 7, 1)):
        anchors = anchors_for(today, zone("Europe/Berlin"))
        offsets = {
            anchors.instant(f"{d} 10:05", zone("Europe/Berlin")).astimezone(zone("Europe/Berlin")).utcoffset()
            for d in ("S+2", "F+2")
        }
        assert len(offsets) == 2, today
