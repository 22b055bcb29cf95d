"""Run a gateway as its own process for multi-process tests: `python gateway_process.py CONFIG.toml`.

Uses the test-only header identity so one test can act as several partners.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from patient_env import header_identity

from gateway.app import run_gateway
from gateway.config import load_config

if __name__ == "__main__":
    asyncio.run(run_gateway(load_config(Path(sys.argv[1])), identify=header_identity))
