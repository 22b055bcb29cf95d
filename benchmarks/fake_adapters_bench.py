"""A plugin factory that hands the gateway an adapter the benchmark built (and can write to directly)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from otv_sdk.ports import Adapter

ADAPTERS: dict[str, Adapter] = {}


def shared(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    return ADAPTERS[practice_id]
