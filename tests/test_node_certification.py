"""The Node.js example adapter is certified by the full suite, as a vendor would run it.

Proof that the vendor contract is language-neutral: a data-access-only adapter written from the
.proto files in another language passes every conformance case through a real gateway, started
by `otv conformance run --remote`, the command the vendor guide gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_node_example import NodeAdapter, installed  # noqa: F401  (the fixture installs node_modules)

pytestmark = pytest.mark.slow


def test_the_node_example_passes_the_whole_conformance_suite(installed: None, tmp_path: Path) -> None:  # noqa: F811
    adapter = NodeAdapter(practices="sandbox")
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "otv"),
                "conformance",
                "run",
                "--remote",
                adapter.address,
                "--out",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        code = adapter.stop()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    reports = [tmp_path / "report.json"]
    assert reports, run.stdout
    report = json.loads(reports[0].read_text())
    summary = report["summary"]
    assert summary["failed"] == summary["errors"] == summary["required_not_passed"] == 0, summary
    assert summary["passed"] > 0, summary
    assert code == 0, adapter.stderr
