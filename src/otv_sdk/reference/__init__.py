"""The reference adapter: a demo practice whose PVS is a SQLite file.

It is the gateway's embedded default, the example PVS vendors copy, and the system under test
for the rest of the project. Registered as the `reference` entry point in `otv.adapters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from otv_sdk.changes import ChangeOutbox
from otv_sdk.models import AdapterInfo, PracticeProfile
from otv_sdk.ports import Adapter
from otv_sdk.reference.database import Database
from otv_sdk.reference.demo import DEMO_TIME_ZONE, seed_demo
from otv_sdk.reference.patients import ReferencePatients
from otv_sdk.reference.reader import ReferenceCalendarData
from otv_sdk.reference.sandbox import ReferenceSandbox, insert_practice
from otv_sdk.reference.writer import ReferenceCalendarWriter

__all__ = ["ReferenceSettings", "create_adapter"]

ADAPTER_INFO = AdapterInfo(vendor="otv", product="reference", version="0.1.0")


class ReferenceSettings(BaseModel):
    """Settings of one reference practice, from the gateway configuration."""

    model_config = ConfigDict(extra="forbid")

    database: str = Field(":memory:", description="SQLite file, or ':memory:'")
    demo: bool = Field(True, description="fill an empty database with the demo practice")
    demo_anchor: date | None = Field(None, description="first day of demo data; default today")
    display_name: str = "Zahnarztpraxis Dr. Berg & Kollegen"
    time_zone: str = DEMO_TIME_ZONE
    sandbox: bool = Field(False, description="offer the sandbox hook (certification runs only: it replaces all data)")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


def create_adapter(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
    """Entry point: build the adapter for one practice. Raises pydantic.ValidationError on bad settings."""
    config = ReferenceSettings.model_validate(dict(settings))
    path: str | Path = config.database
    if config.database != ":memory:" and base_dir is not None and not Path(config.database).is_absolute():
        path = base_dir / config.database
    database = Database(path)
    profile = PracticeProfile(config.display_name, config.time_zone)
    if database.is_empty():
        if config.demo:
            anchor = config.demo_anchor or date.today()
            database.run_sync(lambda conn: seed_demo(conn, anchor, config.display_name, config.time_zone))
        else:  # a practice without calendar data yet (a fresh sandbox)
            database.run_sync(lambda conn: insert_practice(conn, profile))
    changes = ChangeOutbox()  # the reference PVS changes only through this adapter, so it knows every change
    patients = ReferencePatients(database)
    return Adapter(
        info=ADAPTER_INFO,
        calendar=ReferenceCalendarData(database),
        calendar_writer=ReferenceCalendarWriter(database, changes),
        patients=patients,
        consents=patients,
        sandbox=ReferenceSandbox(database, profile, changes) if config.sandbox else None,
        changes=changes,
    )
