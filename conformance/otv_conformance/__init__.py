"""The otv conformance suite: certifies a PVS adapter through a real gateway, as partners call it.

Run it with `otv conformance run`; check a report with `otv conformance verify`. See
docs/conformance.md.
"""

from otv_conformance.cases import SUITE_VERSION, Case, all_cases
from otv_conformance.report import verify_report
from otv_conformance.runner import CouldNotRun, RunResult, Target, run_suite

__all__ = ["SUITE_VERSION", "Case", "CouldNotRun", "RunResult", "Target", "all_cases", "run_suite", "verify_report"]
