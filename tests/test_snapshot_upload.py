"""Snapshot uploads (SnapshotService, gRPC and HTTP + JSON) through a real, signed gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import SECRET, register_test_partner, signer

from gateway.app import Gateway
from gateway.config import SnapshotAdapterConfig, parse_config
from gateway.partners import PartnerRegistry
from gateway.snapshots import SnapshotPractice
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc, snapshot_service_pb2, snapshot_service_pb2_grpc
from otv_sdk import conversion as cv
from otv_sdk.changes import BusyTimeChanged, ChangeEvent, Heartbeat
from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.errors import Unavailable
from otv_sdk.freshness import DATA_AGE_METADATA_KEY
from otv_sdk.models import Interval
from otv_sdk.ports import PageRequest, SlotQuery
from otv_sdk.signing import Signer, generate_key_pair
from otv_sdk.status import error_from_rpc_error
from otv_sdk.wallclock import to_utc, zone

BERLIN = zone("Europe/Berlin")
PVS_ID = "duria-pvs"
PVS_PRIVATE, PVS_PUBLIC = generate_key_pair()
SNAPSHOT_PRACTICE = {
    "display_name": "Zahnarztpraxis Upload",
    "window_days": 14,
    "upload_interval_seconds": 90,
    "columns": [
        {"id": "dr-a", "display_name": "Dr. A", "weekly_hours": [f"{d} 08:00-12:00" for d in ("mon", "tue", "wed")]},
        {"id": "dr-b", "display_name": "Dr. B", "weekly_hours": ["thu 08:00-12:00"]},
    ],
    "appointment_types": [{"id": "kontrolle", "display_name": "Kontrolle", "minutes": 20, "columns": ["dr-a"]}],
}


def pvs_signer() -> Signer:
    return Signer("duria-pvs-1", PVS_PRIVATE, "otv")


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return to_utc(day, clock_time(hour, minute), BERLIN)


def span(day: date, hour: int, minutes: int = 30, minute: int = 0) -> Interval:
    start = at(day, hour, minute)
    return Interval(start, start + timedelta(minutes=minutes))


class Env:
    def __init__(self, gateway: Gateway, partner: PartnerClient, channel: grpc.aio.Channel) -> None:
        self.gateway = gateway
        self.partner = partner
        self.uploads = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        self.partner_uploads = snapshot_service_pb2_grpc.SnapshotServiceStub(
            grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(signer()))
        )
        self.tomorrow = datetime.now(BERLIN).date() + timedelta(days=1)

    async def window(self) -> snapshot_service_pb2.GetUploadWindowResponse:
        return await self.uploads.GetUploadWindow(snapshot_service_pb2.GetUploadWindowRequest(parent="practices/up"))

    def request(
        self, columns: dict[str, Sequence[Interval]], request_id: str | None = None, window: Interval | None = None
    ) -> snapshot_service_pb2.UploadSnapshotRequest:
        if window is None:
            today = datetime.now(BERLIN).date()
            window = Interval(at(today, 0), at(today + timedelta(days=14), 0))
        return snapshot_service_pb2.UploadSnapshotRequest(
            parent="practices/up",
            request_id=request_id or str(uuid.uuid4()),
            window=cv.interval_to_proto(window),
            columns=[
                snapshot_service_pb2.ColumnSnapshot(
                    column=f"practices/up/columns/{column}", busy_times=[cv.interval_to_proto(i) for i in busy]
                )
                for column, busy in columns.items()
            ],
        )

    async def upload(
        self, columns: dict[str, Sequence[Interval]], request_id: str | None = None
    ) -> snapshot_service_pb2.UploadSnapshotResponse:
        return await self.uploads.UploadSnapshot(self.request(columns, request_id))

    def watch(self, cursor: str) -> AsyncIterator[ChangeEvent]:
        return self.partner.watch_changes("up", (), cursor)

    async def busy(self, column: str) -> list[Interval]:
        today = datetime.now(BERLIN).date()
        window = Interval(at(today, 0), at(today + timedelta(days=14), 0))
        (result,) = await self.partner.list_busy_times("up", window, [column])
        return list(result.intervals.intervals())


@asynccontextmanager
async def snapshot_env(tmp_path: Path, **gateway: Any) -> AsyncIterator[Env]:
    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "http_listen": "127.0.0.1:0",
                "shutdown_grace_seconds": 0,
                "secret_key": SECRET,
                "state_store": f"sqlite:///{tmp_path / 'state.sqlite'}",
                **gateway,
            },
            "practices": {"up": {"adapter": {"snapshot": SNAPSHOT_PRACTICE}}},
        }
    )
    started = await Gateway.start(config)
    register_test_partner(started)  # a booking partner with "*": every partner service, no uploads
    registry = PartnerRegistry(started.router.store)
    registry.add_partner(PVS_ID)
    if "duria-pvs-1" not in {key.key_id for key in registry.list_keys()}:
        registry.add_key(PVS_ID, "duria-pvs-1", PVS_PUBLIC)
    registry.grant(PVS_ID, "up", ("snapshot",))
    channel = grpc.aio.insecure_channel(started.address, interceptors=signing_interceptors(pvs_signer()))
    try:
        async with PartnerClient.connect(started.address, signer=signer()) as partner:
            yield Env(started, partner, channel)
    finally:
        await channel.close()
        await started.stop(0)


async def take(events: AsyncIterator[ChangeEvent], count: int) -> list[ChangeEvent]:
    taken: list[ChangeEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            if not isinstance(event.change, Heartbeat):
                taken.append(event)
            if len(taken) == count:
                break
    return taken


async def test_the_window_is_local_days_from_today_with_the_columns_and_interval(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        answer = await env.window()
        today = datetime.now(BERLIN).date()
        window = cv.interval_from_proto(answer.window, "window")
        assert window == Interval(at(today, 0), at(today + timedelta(days=14), 0))
        assert answer.upload_interval.seconds == 90
        assert list(answer.columns) == ["practices/up/columns/dr-a", "practices/up/columns/dr-b"]


def test_the_upload_window_follows_the_daylight_saving_switches() -> None:
    practice = SnapshotPractice.from_config("up", SnapshotAdapterConfig.model_validate({**SNAPSHOT_PRACTICE}))
    short = SnapshotPractice("up", practice.profile, practice.calendar, 2, practice.upload_interval)
    spring = short.upload_window(datetime(2027, 3, 27, 12, tzinfo=UTC))
    autumn = short.upload_window(datetime(2027, 10, 30, 12, tzinfo=UTC))
    assert spring.start == datetime(2027, 3, 26, 23, tzinfo=UTC)
    assert spring.end - spring.start == timedelta(hours=47)
    assert autumn.start == datetime(2027, 10, 29, 22, tzinfo=UTC)
    assert autumn.end - autumn.start == timedelta(hours=49)


async def test_the_first_upload_backfills_and_watchers_see_every_busy_time(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        day = env.tomorrow
        a_busy = [span(day, 9), span(day, 10), span(day, 10)]  # a double booking is two busy times
        b_busy = [span(day, 8, 60)]
        answer = await env.upload({"dr-a": a_busy, "dr-b": b_busy})
        assert (answer.added_count, answer.removed_count) == (4, 0)
        assert set(answer.backfilled_columns) == {"practices/up/columns/dr-a", "practices/up/columns/dr-b"}
        next_upload = cv.timestamp_to_datetime(answer.next_upload_time, "next_upload_time")
        assert timedelta(seconds=85) < next_upload - datetime.now(UTC) <= timedelta(seconds=91)
        events = await take(env.watch("c1-0"), 2)
        assert [e.change for e in events] == [
            BusyTimeChanged("dr-a", added=tuple(sorted(a_busy, key=lambda i: i.start))),
            BusyTimeChanged("dr-b", added=tuple(b_busy)),
        ]
        assert events[-1].cursor == answer.change_cursor
        busy = await env.busy("dr-a")
        assert busy == sorted(a_busy, key=lambda i: i.start)


async def test_consecutive_uploads_become_added_removed_and_moved(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        day = env.tomorrow
        first = await env.upload({"dr-a": [span(day, 9), span(day, 10), span(day, 10), span(day, 11)]})
        # 09:00 moved to 09:30, one of the two 10:00 cancelled, 11:00 kept, 08:00 new
        second = await env.upload({"dr-a": [span(day, 9, minute=30), span(day, 10), span(day, 11), span(day, 8)]})
        assert (second.added_count, second.removed_count) == (2, 2)
        assert list(second.backfilled_columns) == []
        (event,) = await take(env.watch(first.change_cursor), 1)
        assert event.change == BusyTimeChanged(
            "dr-a", added=(span(day, 8), span(day, 9, minute=30)), removed=(span(day, 9), span(day, 10))
        )
        unchanged = await env.upload({"dr-a": [span(day, 11), span(day, 8), span(day, 10), span(day, 9, minute=30)]})
        assert (unchanged.added_count, unchanged.removed_count) == (0, 0)
        assert unchanged.change_cursor == second.change_cursor  # nothing happened, nothing announced


async def test_a_column_left_out_keeps_its_snapshot(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        day = env.tomorrow
        await env.upload({"dr-a": [span(day, 9)], "dr-b": [span(day, 8)]})
        await env.upload({"dr-a": [span(day, 10)]})
        assert await env.busy("dr-b") == [span(day, 8)]
        assert await env.busy("dr-a") == [span(day, 10)]


async def test_a_retried_upload_is_not_applied_twice(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        day = env.tomorrow
        await env.upload({"dr-a": [span(day, 9)]}, request_id="up-1")
        second = await env.upload({"dr-a": [span(day, 10)]}, request_id="up-2")
        again = await env.upload({"dr-a": [span(day, 10)]}, request_id="up-2")
        assert (again.added_count, again.removed_count, again.change_cursor) == (1, 1, second.change_cursor)


async def test_the_snapshot_survives_a_gateway_restart(tmp_path: Path) -> None:
    day = datetime.now(BERLIN).date() + timedelta(days=1)
    async with snapshot_env(tmp_path) as env:
        await env.upload({"dr-a": [span(day, 9), span(day, 10)]})
    async with snapshot_env(tmp_path) as env:
        assert await env.busy("dr-a") == [span(day, 9), span(day, 10)]
        answer = await env.upload({"dr-a": [span(day, 10)]})
        assert (answer.added_count, answer.removed_count, list(answer.backfilled_columns)) == (0, 1, [])


async def test_reads_state_the_age_of_the_last_upload(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        await env.upload({"dr-a": [span(env.tomorrow, 9)]})
        keeper = env.gateway.router.snapshot_keepers["up"]
        keeper.clock = lambda: datetime.now(UTC).timestamp() + 300  # five minutes later
        stub = reader_service_pb2_grpc.ReaderServiceStub(
            grpc.aio.insecure_channel(env.gateway.address, interceptors=signing_interceptors(signer()))
        )
        today = datetime.now(BERLIN).date()
        request = reader_service_pb2.ListBusyTimesRequest(
            parent="practices/up",
            columns=["practices/up/columns/dr-a"],
            window=cv.interval_to_proto(Interval(at(today, 0), at(today + timedelta(days=7), 0))),
        )
        call = stub.ListBusyTimes(request)
        await call
        age = dict(await call.trailing_metadata() or ())[DATA_AGE_METADATA_KEY]
        assert 299 <= int(age) <= 302


async def test_unknown_time_is_busy_and_nothing_uploaded_is_unavailable(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        today = datetime.now(BERLIN).date()
        with pytest.raises(Unavailable, match="not uploaded"):
            await env.busy("dr-a")
        short = Interval(at(today, 0), at(today + timedelta(days=7), 0))
        await env.uploads.UploadSnapshot(env.request({"dr-a": []}, window=short))
        query = SlotQuery("kontrolle", Interval(at(today, 0), at(today + timedelta(days=14), 0)), (), PageRequest(500))
        slots = (await env.partner.find_slots("up", query)).items
        assert slots, "the uploaded week has free working hours"
        assert max(slot.end for slot in slots) <= short.end  # the second week was never uploaded
        assert await env.busy("dr-b") == [Interval(at(today, 0), at(today + timedelta(days=14), 0))]


@pytest.mark.parametrize(
    ("columns", "field"),
    [
        ({"nobody": []}, "columns[0].column"),
        ({"dr-a": [Interval(datetime(2020, 1, 1, 9, tzinfo=UTC), datetime(2020, 1, 1, 10, tzinfo=UTC))]},
         "columns[0].busy_times[0]"),
    ],
)  # fmt: skip
async def test_bad_uploads_name_the_field(tmp_path: Path, columns: dict[str, list[Interval]], field: str) -> None:
    async with snapshot_env(tmp_path) as env:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await env.uploads.UploadSnapshot(env.request(columns))
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error_from_rpc_error(raised.value).violations] == [field]


async def test_a_missing_request_id_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        request = env.request({"dr-a": [span(env.tomorrow, 9)]})
        request.request_id = ""
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await env.uploads.UploadSnapshot(request)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(Unavailable):
            await env.busy("dr-a")


async def test_partners_cannot_upload_and_the_pvs_cannot_read(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await env.partner_uploads.UploadSnapshot(env.request({"dr-a": []}))
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED  # "*" holds no PVS services
        async with PartnerClient.connect(env.gateway.address, signer=pvs_signer()) as pvs_as_partner:
            with pytest.raises(Exception, match="may not use") as denied:
                await pvs_as_partner.list_calendars("up")
            assert type(denied.value).__name__ == "PermissionDenied"
        unsigned = snapshot_service_pb2_grpc.SnapshotServiceStub(grpc.aio.insecure_channel(env.gateway.address))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unsigned.GetUploadWindow(snapshot_service_pb2.GetUploadWindowRequest(parent="practices/up"))
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED


# --- HTTP + JSON, with curl ---------------------------------------------------------------------------


def curl(env: Env, path: str, body: bytes, who: Signer | None = None) -> tuple[int, dict[str, Any]]:
    """POST with the real curl, as a PVS would; headers signed over the exact body bytes."""
    method = "/otv.v1.SnapshotService/" + ("UploadSnapshot" if path.endswith(":upload") else "GetUploadWindow")
    headers = (who or pvs_signer()).headers(method, body)
    assert env.gateway.http is not None
    url = f"http://127.0.0.1:{env.gateway.http.port}/v1/practices/up/{path}"
    args = ["curl", "-sS", "-X", "POST", "--data-binary", "@-", "-H", "Content-Type: application/json"]
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run([*args, "-w", "\n%{http_code}", url], input=body, capture_output=True, check=True)
    text, _, status = done.stdout.decode().rpartition("\n")
    return int(status), json.loads(text)


async def test_curl_can_ask_for_the_window_and_upload(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        status, window = await asyncio.to_thread(curl, env, "snapshot:window", b"{}")
        assert status == 200
        assert window["columns"] == ["practices/up/columns/dr-a", "practices/up/columns/dr-b"]
        start = at(env.tomorrow, 9).isoformat().replace("+00:00", "Z")
        end = at(env.tomorrow, 9, 30).isoformat().replace("+00:00", "Z")
        body = json.dumps(
            {
                "requestId": "curl-1",
                "window": window["window"],
                "columns": [
                    {"column": "practices/up/columns/dr-a", "busyTimes": [{"startTime": start, "endTime": end}]}
                ],
            }
        ).encode()
        status, answer = await asyncio.to_thread(curl, env, "snapshot:upload", body)
        assert status == 200, answer
        assert answer["addedCount"] == 1
        assert answer["backfilledColumns"] == ["practices/up/columns/dr-a"]
        assert await env.busy("dr-a") == [span(env.tomorrow, 9)]
        (event,) = await take(env.watch("c1-0"), 1)
        assert event.change == BusyTimeChanged("dr-a", added=(span(env.tomorrow, 9),))


async def test_curl_gets_json_errors_with_the_right_http_status(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        bad_column = json.dumps(
            {"requestId": "x", "window": {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-02T00:00:00Z"},
             "columns": [{"column": "practices/up/columns/nobody"}]}
        ).encode()  # fmt: skip
        status, answer = await asyncio.to_thread(curl, env, "snapshot:upload", bad_column)
        assert (status, answer["code"]) == (400, "INVALID_ARGUMENT")
        assert answer["fieldViolations"][0]["field"] == "columns[0].column"
        status, answer = await asyncio.to_thread(curl, env, "snapshot:upload", b"{not json")
        assert (status, answer["code"]) == (400, "INVALID_ARGUMENT")
        status, answer = await asyncio.to_thread(curl, env, "snapshot:upload", b"{}", signer())
        assert (status, answer["code"]) == (403, "PERMISSION_DENIED")
        status, answer = await asyncio.to_thread(curl, env, "snapshot:nothing", b"{}")
        assert (status, answer["code"]) == (404, "NOT_FOUND")
        status, answer = await asyncio.to_thread(curl, env, "snapshot:upload", b" " * (5 << 20))
        assert (status, answer["code"]) == (413, "RESOURCE_EXHAUSTED")
        stranger = Signer("nobody-1", generate_key_pair()[0], "otv")
        status, answer = await asyncio.to_thread(curl, env, "snapshot:window", b"{}", stranger)
        assert (status, answer["code"]) == (401, "UNAUTHENTICATED")
