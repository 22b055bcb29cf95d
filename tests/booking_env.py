"""A gateway with a writable reference practice, on a chosen state-store backend (for writer tests)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import fake_adapters
from conftest import SECRET, reference_settings
from patient_env import as_partner, header_identity
from store_backends import store_for

from gateway.app import Gateway
from gateway.booking import BookingDesk
from gateway.config import parse_config
from gateway.routing import booking_desk
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.models import Interval, Slot
from otv_sdk.ports import CallContext, PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter
from otv_sdk.reference.database import Database
from otv_sdk.reference.patients import ReferencePatients

# Demo data from next week on: bookings must lie in the future and within the types' horizon.
ANCHOR = date.today() + timedelta(days=7 - date.today().weekday() + 7)


@dataclass
class BookingEnv:
    gateway: Gateway
    client: PartnerClient
    database_path: Path

    async def desk(self) -> BookingDesk:
        adapter = await self.gateway.router.resolve("demo", CallContext("test"), "parent")
        return cast(BookingDesk, booking_desk(adapter))

    async def patient(self, partner: str = "alpha", family: str = "Mustermann") -> str:
        patient, _ = await self.client.find_or_create_patient(
            "demo", PatientQuery("Erika", family, date(1964, 8, 12)), metadata=as_partner(partner)
        )
        return patient.id

    async def slots(self, type_id: str = "kontrolle", column: str = "berg", count: int = 5) -> list[Slot]:
        start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        query = SlotQuery(type_id, Interval(start, start + timedelta(days=7)), (column,), PageRequest(count))
        return list((await self.client.find_slots("demo", query, metadata=as_partner("alpha"))).items)

    async def disjoint_slots(self, count: int, type_id: str = "kontrolle") -> list[Slot]:
        """`count` slots of which none overlaps another."""
        chosen: list[Slot] = []
        for slot in await self.slots(type_id, count=200):
            if all(slot.start >= other.end for other in chosen):
                chosen.append(slot)
            if len(chosen) == count:
                return chosen
        raise AssertionError("not enough free slots in the demo week")

    def pvs_entries(self, reference: str | None = None) -> list[dict[str, Any]]:
        with sqlite3.connect(self.database_path) as conn:
            conn.row_factory = sqlite3.Row
            sql = "SELECT * FROM calendar_entries WHERE reference IS NOT NULL"
            rows = conn.execute(sql + (" AND reference = ?" if reference else ""), (reference,) if reference else ())
            return [dict(r) for r in rows]


def slot_request(slot: Slot, patient: str, type_id: str = "kontrolle") -> SlotRequest:
    return SlotRequest(type_id, slot.column_id, slot.start, patient)


@asynccontextmanager
async def booking_env(
    backend: str, tmp_path: Path, transport: str = "in_process", **booking: Any
) -> AsyncIterator[BookingEnv]:
    """A writable reference practice behind a gateway: in-process, or behind an adapter server."""
    database = tmp_path / "pvs.sqlite"
    adapter = create_adapter("demo", reference_settings(database=str(database), demo_anchor=ANCHOR.isoformat()))
    remote: AdapterServer | None = None
    if transport == "remote":
        remote = await serve_adapters({"demo": adapter})
        practice: dict[str, Any] = {"adapter": {"remote": {"address": f"127.0.0.1:{remote.port}"}}}
    else:
        fake_adapters.SHARED["demo"] = adapter
        practice = {"adapter": {"plugin": "fake_adapters:shared"}}
    with store_for(backend, tmp_path) as (store, url):
        store.close()
        gateway_section = {
            "listen": "127.0.0.1:0",
            "shutdown_grace_seconds": 0,
            "secret_key": SECRET,
            "state_store": url,
        }
        config = parse_config({"gateway": gateway_section, "practices": {"demo": {**practice, "booking": booking}}})
        gateway = await Gateway.start(config, identify=header_identity)
        try:
            async with PartnerClient.connect(gateway.address) as client:
                yield BookingEnv(gateway, client, database)
        finally:
            await gateway.stop(0)
            if remote is not None:
                await remote.stop(0)
            fake_adapters.SHARED.pop("demo", None)


__all__ = ["ANCHOR", "BookingEnv", "Database", "ReferencePatients", "booking_env", "slot_request"]
