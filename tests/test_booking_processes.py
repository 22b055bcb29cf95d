"""What only several processes can show: exactly one winner across two gateways sharing a store,
and a gateway killed in the middle of a booking losing nothing."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from booking_env import ANCHOR
from conftest import SECRET
from patient_env import as_partner
from store_backends import BACKENDS, require_postgres, store_for

from otv_sdk.client import PartnerClient
from otv_sdk.errors import Aborted, FailedPrecondition
from otv_sdk.models import AppointmentState, Interval
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter

LAUNCHER = Path(__file__).parent / "gateway_process.py"


def write_config(path: Path, state_store: str, adapter: str) -> Path:
    path.write_text(
        f"""[gateway]
listen = "127.0.0.1:0"
shutdown_grace_seconds = 1
secret_key = "{SECRET}"
state_store = "{state_store}"

[practices.demo.adapter]
{adapter}
"""
    )
    return path


def reference_adapter(database: Path, extra: str = "") -> str:
    return (
        'plugin = "reference"\n'
        f'settings = {{ database = "{database}", demo = true, demo_anchor = "{ANCHOR.isoformat()}"{extra} }}'
    )


@asynccontextmanager
async def gateway_process(config: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LAUNCHER),
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        match = re.search(r"listening on (\S+) ", line)
        if match is None:
            _, err = await process.communicate()
            raise AssertionError(f"gateway did not start: {line!r} {err.decode()[-2000:]}")
        yield process, match.group(1)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _first_slot(client: PartnerClient) -> SlotRequest:
    start = datetime.combine(ANCHOR, time(0), UTC)
    query = SlotQuery("kontrolle", Interval(start, start + timedelta(days=7)), ("berg",), PageRequest(1))
    (slot,) = (await client.find_slots("demo", query, metadata=as_partner("alpha"))).items
    return SlotRequest("kontrolle", slot.column_id, slot.start, "")


async def _patient(client: PartnerClient, partner: str) -> str:
    patient, _ = await client.find_or_create_patient(
        "demo", PatientQuery("Erika", "Mustermann", ANCHOR.replace(year=1964)), metadata=as_partner(partner)
    )
    return patient.id


def _online_entries(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [r[0] for r in conn.execute("SELECT reference FROM calendar_entries WHERE reference IS NOT NULL")]


async def test_hundred_holds_through_two_gateways_sharing_postgresql_have_one_winner(tmp_path: Path) -> None:
    require_postgres()
    database = tmp_path / "pvs.sqlite"
    seeded = create_adapter("demo", {"database": str(database), "demo": True, "demo_anchor": ANCHOR.isoformat()})
    await seeded.aclose()  # the practice exists before both gateways open it
    with store_for("postgres", tmp_path) as (store, url):
        store.close()
        config = write_config(tmp_path / "gateway.toml", url, reference_adapter(database))
        async with gateway_process(config) as (_, first), gateway_process(config) as (_, second):
            clients = [PartnerClient.connect(first), PartnerClient.connect(second)]
            partners = ["alpha", "beta", "gamma", "delta"]
            patients = {p: await _patient(clients[0], p) for p in partners}
            target = await _first_slot(clients[0])
            attempts = [
                clients[i % 2].hold_slot(
                    "demo",
                    SlotRequest(target.appointment_type_id, target.column_id, target.start, patients[partners[i % 4]]),
                    metadata=as_partner(partners[i % 4]),
                    timeout=30,
                )
                for i in range(100)
            ]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            winners = [(i, r) for i, r in enumerate(results) if not isinstance(r, BaseException)]
            losers = [r for r in results if isinstance(r, BaseException)]
            assert len(winners) == 1, losers[:3]
            assert all(isinstance(r, (Aborted, FailedPrecondition)) for r in losers)
            index, hold = winners[0]
            await clients[index % 2].confirm_hold("demo", hold.id, metadata=as_partner(partners[index % 4]))  # type: ignore[union-attr]
            assert len(_online_entries(database)) == 1
            for client in clients:
                await client.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_gateway_killed_mid_booking_loses_nothing(backend: str, tmp_path: Path) -> None:
    database = tmp_path / "pvs.sqlite"
    marker = tmp_path / "written"
    with store_for(backend, tmp_path) as (store, url):
        store.close()
        stalling = write_config(
            tmp_path / "stalling.toml",
            url,
            reference_adapter(database, f', marker = "{marker}"').replace(
                '"reference"', '"fake_adapters:create_stalling"'
            ),
        )
        normal = write_config(tmp_path / "normal.toml", url, reference_adapter(database))
        async with gateway_process(stalling) as (process, address), PartnerClient.connect(address) as client:
            patient = await _patient(client, "alpha")
            slot = await _first_slot(client)
            request = SlotRequest(slot.appointment_type_id, slot.column_id, slot.start, patient)
            booking = asyncio.create_task(
                client.book_appointment("demo", request, request_id="crash-1", metadata=as_partner("alpha"), timeout=90)
            )
            for _ in range(300):
                if marker.exists():
                    break
                await asyncio.sleep(0.1)
            assert marker.exists(), "the PVS write never happened"
            process.send_signal(signal.SIGKILL)  # between the PVS write and recording it
            await process.wait()
            with pytest.raises(Exception):  # noqa: B017, PT011 - the call dies with the process
                await booking
        appointment_id = marker.read_text()
        assert _online_entries(database) == [appointment_id]
        async with gateway_process(normal) as (_, address), PartnerClient.connect(address) as client:
            # The restarted gateway finished the interrupted booking; a retry returns it, once.
            retried = await client.book_appointment("demo", request, request_id="crash-1", metadata=as_partner("alpha"))
            assert retried.id == appointment_id
            assert retried.state is AppointmentState.BOOKED
            assert _online_entries(database) == [appointment_id]
            start = datetime.combine(ANCHOR, time(0), UTC)
            query = SlotQuery("kontrolle", Interval(start, start + timedelta(days=7)), ("berg",), PageRequest(50))
            offered = (await client.find_slots("demo", query, metadata=as_partner("alpha"))).items
            assert all(s.start != slot.start for s in offered)  # booked, so not free
