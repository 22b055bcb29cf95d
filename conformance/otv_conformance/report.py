"""Reports: signed JSON (the record), JUnit XML (for CI systems), HTML (for people); and verification.

The JSON report is signed with Ed25519 over its canonical form (sorted keys, no insignificant
white space, UTF-8) without the `signature` member. `verify_report` checks that signature, and
that the report is complete and consistent for the suite version that made it: every case of the
suite is there once, applicability follows the declared capabilities, the summary and the
verdict follow from the results. Editing any result breaks the signature; re-signing an edited
report with another key is caught by pinning the expected key (`--public-key`).
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from otv_conformance.cases import SUITE_VERSION, Result, all_cases
from otv_conformance.runner import CASE_TIMEOUT_SECONDS, RunResult
from otv_sdk.models import Capability
from otv_sdk.signing import Signer, public_key_bytes, verify_signature

__all__ = ["FORMAT", "build_report", "canonical", "sign_report", "verify_report", "write_reports"]

FORMAT = "otv-conformance-report/1"
SIGNATURE_SCHEME = "otv-report-ed25519-v1"


def _summary(tests: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(t["result"] for t in tests)
    return {
        "total": len(tests),
        "passed": counts[Result.PASS.value],
        "failed": counts[Result.FAIL.value],
        "errors": counts[Result.ERROR.value],
        "skipped": counts[Result.SKIP.value],
        "required_not_passed": sum(
            1 for t in tests if t["required"] and t["result"] in (Result.FAIL.value, Result.ERROR.value)
        ),
    }


def build_report(run: RunResult) -> dict[str, Any]:
    scenario = run.placed.scenario
    tests = [
        {
            "id": r.case.id,
            "requirement": r.case.requirement,
            "group": r.case.group.value,
            "required": r.case.required,
            "title": r.case.title,
            "result": r.result.value,
            "message": r.message,
            "duration_ms": round(r.duration * 1000, 1),
        }
        for r in run.results
    ]
    return {
        "format": FORMAT,
        "suite": {"name": "otv-conformance", "version": SUITE_VERSION},
        "scenarios": [
            {"id": scenario.id, "version": scenario.version, "anchor": run.placed.anchors.monday.isoformat()}
        ],
        "adapter": {
            "vendor": run.adapter.vendor,
            "product": run.adapter.product,
            "version": run.adapter.version,
            "capabilities": sorted(c.value for c in run.capabilities),
            "transport": run.target.transport,
            "target": run.target.describe(),
        },
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat(),
        "verdict": "certified" if run.certified else "failed",
        # Every test must finish within this; a test still running then is an error (docs/conformance.md).
        "time_budget": {"per_test_seconds": CASE_TIMEOUT_SECONDS},
        "summary": _summary(tests),
        "tests": tests,
    }


def canonical(report: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in report.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_report(report: dict[str, Any], signer: Signer) -> dict[str, Any]:
    signed = dict(report)
    signed["signature"] = {
        "scheme": SIGNATURE_SCHEME,
        "key_id": signer.key_id,
        "public_key": signer.public_key,
        "value": signer.sign(canonical(report)),
    }
    return signed


def verify_report(report: dict[str, Any], trusted_public_key: str | None = None) -> list[str]:
    """Problems with the report; empty means signed, complete and consistent."""
    problems: list[str] = []
    signature = report.get("signature")
    if not isinstance(signature, dict) or signature.get("scheme") != SIGNATURE_SCHEME:
        return ["the report is not signed (or not with " + SIGNATURE_SCHEME + ")"]
    try:
        key = public_key_bytes(str(signature.get("public_key", "")))
    except ValueError:
        return ["the signature's public key is malformed"]
    if trusted_public_key is not None and signature.get("public_key") != trusted_public_key:
        problems.append("the report is signed by another key than the one expected")
    if not verify_signature(key, canonical(report), str(signature.get("value", ""))):
        return [*problems, "the signature does not match the report: it was changed after signing"]
    if report.get("format") != FORMAT:
        return [*problems, f"unknown report format {report.get('format')!r}"]
    version = report.get("suite", {}).get("version")
    if version != SUITE_VERSION:
        return [*problems, f"made by suite version {version}; this verifier checks version {SUITE_VERSION}"]
    try:
        capabilities = {Capability(c) for c in report["adapter"]["capabilities"]}
        tests = list(report["tests"])
        by_id = Counter(t["id"] for t in tests)
    except (KeyError, TypeError, ValueError) as error:
        return [*problems, f"the report is malformed: {error}"]
    known = {c.id: c for c in all_cases()}
    for case_id, count in by_id.items():
        if case_id not in known:
            problems.append(f"{case_id}: not a case of suite version {SUITE_VERSION}")
        elif count > 1:
            problems.append(f"{case_id}: reported {count} times")
    for case_id, case in known.items():
        entry = next((t for t in tests if t["id"] == case_id), None)
        if entry is None:
            problems.append(f"{case_id}: missing")
            continue
        if (entry["requirement"], entry["group"], entry["required"]) != (
            case.requirement,
            case.group.value,
            case.required,
        ):
            problems.append(f"{case_id}: requirement, group or required flag differ from the suite's")
        applicable = case.capability in capabilities
        if applicable and entry["result"] == Result.SKIP.value:
            problems.append(f"{case_id}: skipped although the adapter declares {case.capability.value}")
        if not applicable and entry["result"] != Result.SKIP.value:
            problems.append(f"{case_id}: has a result although {case.capability.value} is not declared")
    if report.get("summary") != _summary(tests):
        problems.append("the summary does not follow from the results")
    certified = not any(t["required"] and t["result"] in (Result.FAIL.value, Result.ERROR.value) for t in tests)
    if report.get("verdict") != ("certified" if certified else "failed"):
        problems.append("the verdict does not follow from the results")
    return problems


def _junit(report: dict[str, Any]) -> bytes:
    root = ET.Element("testsuites", name=f"otv-conformance {report['suite']['version']}")
    per_test = report.get("time_budget", {}).get("per_test_seconds")
    if per_test is not None:
        ET.SubElement(ET.SubElement(root, "properties"), "property", name="time_budget_per_test_s", value=str(per_test))
    groups: dict[str, list[dict[str, Any]]] = {}
    for test in report["tests"]:
        groups.setdefault(test["group"], []).append(test)
    for group, tests in groups.items():
        counts = Counter(t["result"] for t in tests)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=group,
            tests=str(len(tests)),
            failures=str(counts["fail"]),
            errors=str(counts["error"]),
            skipped=str(counts["skip"]),
            time=f"{sum(t['duration_ms'] for t in tests) / 1000:.3f}",
        )
        for test in tests:
            element = ET.SubElement(
                suite,
                "testcase",
                classname=f"otv.conformance.{group}",
                name=test["id"],
                time=f"{test['duration_ms'] / 1000:.3f}",
            )
            ET.SubElement(element, "properties").append(
                ET.Element("property", name="requirement", value=test["requirement"])
            )
            if test["result"] in ("fail", "error"):
                kind = "failure" if test["result"] == "fail" else "error"
                ET.SubElement(element, kind, message=test["message"][:200]).text = test["message"]
            elif test["result"] == "skip":
                ET.SubElement(element, "skipped", message=test["message"])
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#1d1d1f}
table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;
text-align:left;vertical-align:top}th{background:#f4f4f6}.pass{color:#0a7d32}.fail,.error{color:#b3261e;font-weight:600}
.skip{color:#777}.verdict{font-size:1.4rem;font-weight:700}code{font-size:.9em}
"""


def _html(report: dict[str, Any]) -> str:
    e = html.escape
    a = report["adapter"]
    s = report["summary"]
    rows = "\n".join(
        f"<tr><td><code>{e(t['id'])}</code><br>{e(t['title'])}</td><td>{e(t['requirement'])}</td>"
        f'<td>{"required" if t["required"] else "optional"}</td><td class="{e(t["result"])}">{e(t["result"])}</td>'
        f"<td>{e(t['message'])}</td><td>{t['duration_ms']:.0f} ms</td></tr>"
        for t in report["tests"]
    )
    scenarios = ", ".join(f"{e(x['id'])} {e(x['version'])}" for x in report["scenarios"])
    signature = report.get("signature", {})
    per_test = report.get("time_budget", {}).get("per_test_seconds")
    budget = f"{per_test:.0f} s" if isinstance(per_test, int | float) else "not stated"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>otv conformance: {e(a["product"])} {e(a["version"])}</title>
<style>{_STYLE}</style></head><body>
<h1>otv conformance report</h1>
<p class="verdict {"pass" if report["verdict"] == "certified" else "fail"}">{e(report["verdict"].upper())}</p>
<table>
<tr><th>Adapter</th><td>{e(a["vendor"])} {e(a["product"])} {e(a["version"])}
({e(a["transport"])}: {e(a["target"])})</td></tr>
<tr><th>Capabilities</th><td>{e(", ".join(a["capabilities"]))}</td></tr>
<tr><th>Suite</th><td>{e(report["suite"]["version"])}</td></tr>
<tr><th>Scenarios</th><td>{scenarios}</td></tr>
<tr><th>Run</th><td>{e(report["started"])} to {e(report["finished"])}</td></tr>
<tr><th>Time budget</th><td>{budget} per test (a test still running then is an error)</td></tr>
<tr><th>Result</th><td>{s["passed"]} passed, {s["failed"]} failed, {s["errors"]} errors, {s["skipped"]} not applicable;
{s["required_not_passed"]} required not passed</td></tr>
<tr><th>Signed by</th><td>key <code>{e(str(signature.get("key_id", "")))}</code>, public key
<code>{e(str(signature.get("public_key", "")))}</code>. Check with <code>otv conformance verify</code>.</td></tr>
</table>
<table><tr><th>Test</th><th>Requirement</th><th></th><th>Result</th><th>Message</th><th>Time</th></tr>
{rows}
</table></body></html>
"""


def write_reports(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path, Path]:
    """Write report.json, report.junit.xml and report.html; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, junit_path, html_path = out_dir / "report.json", out_dir / "report.junit.xml", out_dir / "report.html"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    junit_path.write_bytes(_junit(report))
    html_path.write_text(_html(report), encoding="utf-8")
    return json_path, junit_path, html_path
