"""`otv conformance run|verify`: certify an adapter, check a report.

Exit codes of `run`: 0 certified, 1 not certified, 3 could not run (no verdict: the adapter
could not be set up or reached, offers no sandbox, or refused the scenario).
`verify`: 0 valid, 1 invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from otv_conformance.cases import Result
from otv_conformance.report import build_report, sign_report, verify_report, write_reports
from otv_conformance.runner import DEFAULT_SCENARIO, CaseResult, CouldNotRun, Target, run_suite
from otv_conformance.scenarios import available_scenarios
from otv_sdk.signing import Signer, generate_key_pair, load_key_file, save_key_file

__all__ = ["EXIT_CERTIFIED", "EXIT_COULD_NOT_RUN", "EXIT_NOT_CERTIFIED", "add_parser", "conformance_command"]

EXIT_CERTIFIED = 0
EXIT_NOT_CERTIFIED = 1
EXIT_COULD_NOT_RUN = 3

_MARK = {Result.PASS: "PASS", Result.FAIL: "FAIL", Result.ERROR: "ERROR", Result.SKIP: "n/a"}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    conformance = commands.add_parser("conformance", help="certify a PVS adapter").add_subparsers(
        dest="action", required=True
    )
    run = conformance.add_parser("run", help="run the conformance suite against an adapter's sandbox")
    target = run.add_mutually_exclusive_group(required=True)
    target.add_argument("--plugin", help="in-process adapter: entry-point name or module:factory")
    target.add_argument("--remote", help="remote adapter server address host:port")
    run.add_argument("--settings", default="{}", help="plugin settings as a JSON object, e.g. '{\"sandbox\": true}'")
    run.add_argument("--remote-practice", default="sandbox", help="practice id on the remote adapter server")
    run.add_argument("--tls-ca", type=Path, help="CA of the remote adapter server's certificate")
    run.add_argument("--tls-cert", type=Path, help="client certificate for mTLS to the remote")
    run.add_argument("--tls-key", type=Path, help="client key for mTLS to the remote")
    run.add_argument("--scenario", default=DEFAULT_SCENARIO, choices=available_scenarios())
    run.add_argument("--out", type=Path, default=Path("conformance-report"), help="folder for the reports")
    run.add_argument("--key", type=Path, help="key file that signs the report (default: OUT/runner.key, made once)")
    run.add_argument("--latency-budget-ms", type=float, default=1000.0)
    verify = conformance.add_parser("verify", help="check a report's signature and completeness")
    verify.add_argument("report", type=Path)
    verify.add_argument("--public-key", help="accept only a report signed by this public key")


def _signer(args: argparse.Namespace) -> Signer:
    if args.key is not None:
        return load_key_file(args.key)
    path = args.out / "runner.key"
    if not path.exists():
        args.out.mkdir(parents=True, exist_ok=True)
        private, _ = generate_key_pair()
        save_key_file(path, "conformance-runner", "conformance-runner-1", private, "otv-conformance-report")
    return load_key_file(path)


def _progress(outcome: CaseResult) -> None:
    """One line per test, and below it the test's message whatever the result: a failure's reason,
    or the note a passing test carries (what it could not apply, and why), which the vendor must see
    on the console as well as in the report."""
    mark = _MARK[outcome.result]
    line = f"  {mark:<5} {outcome.case.id:<42} {outcome.duration * 1000:7.0f} ms"
    if outcome.message:
        line += f"\n        {'note: ' if outcome.result is Result.PASS else ''}{outcome.message}"
    print(line, flush=True)


async def conformance_command(args: argparse.Namespace) -> int:
    if args.action == "verify":
        report = json.loads(args.report.read_text(encoding="utf-8"))
        problems = verify_report(report, args.public_key)
        if problems:
            print(f"{args.report}: INVALID", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        signature = report["signature"]
        print(
            f"{args.report}: valid; verdict {report['verdict']},"
            f" signed by {signature['key_id']} ({signature['public_key']})"
        )
        return 0
    target = Target(
        plugin=args.plugin,
        settings=json.loads(args.settings),
        remote=args.remote,
        remote_practice=args.remote_practice,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    signer = _signer(args)
    print(f"otv conformance: certifying {target.describe()} with scenario {args.scenario}", flush=True)
    try:
        run = await run_suite(
            target, scenario=args.scenario, latency_budget_ms=args.latency_budget_ms, progress=_progress
        )
    except CouldNotRun as error:
        print(f"otv conformance: could not run: {error}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    report = sign_report(build_report(run), signer)
    paths = write_reports(report, args.out)
    print()
    print(f"{'group':<12} {'pass':>5} {'fail':>5} {'error':>6} {'n/a':>5}")
    groups: dict[str, list[CaseResult]] = {}
    for outcome in run.results:
        groups.setdefault(outcome.case.group.value, []).append(outcome)
    for group, outcomes in groups.items():
        n = {r: sum(1 for o in outcomes if o.result is r) for r in Result}
        print(f"{group:<12} {n[Result.PASS]:>5} {n[Result.FAIL]:>5} {n[Result.ERROR]:>6} {n[Result.SKIP]:>5}")
    a = run.adapter
    verdict = "CERTIFIED" if run.certified else "NOT CERTIFIED"
    print(f"\n{a.vendor} {a.product} {a.version}: {verdict}")
    print("reports: " + ", ".join(str(p) for p in paths))
    return EXIT_CERTIFIED if run.certified else EXIT_NOT_CERTIFIED
