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
import numpy as np
import pytest
from conftest import SECRET, register_test_partner, signer
from google.protobuf import json_format

from gateway.app import Gateway
from gateway.config import SnapshotAdapterConfig, parse_config
from gateway.partners import PartnerRegistry
from gateway.snapshots import (
    MAX_BUSY_SECONDS,
    MAX_BUSY_TIMES,
    WINDOW_TOLERANCE,
    SnapshotKeeper,
    SnapshotPractice,
    SnapshotUpload,
)
from gateway.state_store import Tx
from otv.v1 import (
    reader_service_pb2,
    reader_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
    time_pb2,
)
from otv_rules.wallclock import to_utc, zone
from otv_sdk import conversion as cv
from otv_sdk.changes import BusyTimeChanged, ChangeEvent, Heartbeat
from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.errors import InvalidArgument, Unavailable
from otv_sdk.freshness import DATA_AGE_METADATA_KEY
from otv_sdk.models import Interval
from otv_sdk.ports import PageRequest, SlotQuery
from otv_sdk.server import MAX_MESSAGE_BYTES
from otv_sdk.signing import Signer, generate_key_pair
from otv_sdk.status import error_from_rpc_error
from otv_sdk.timeline import IntervalArray

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
            {"requestId": "x", "window": json_format.MessageToDict(env.request({})).get("window"),
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


# --- what an upload may hold: every refusal names the field and changes nothing ----------------------


def keeper(env: Env) -> SnapshotKeeper:
    return env.gateway.router.snapshot_keepers["up"]


def pin_clock(env: Env, moment: datetime) -> None:
    """The gateway's clock for snapshots (windows, checks), so a test never straddles midnight."""
    keeper(env).clock = lambda: moment.timestamp()


def local_window(first: date, days: int = 14) -> Interval:
    return Interval(at(first, 0), at(first + timedelta(days=days), 0))


async def stored_state(env: Env) -> tuple[list[dict[str, Any]], ...]:
    """Everything an upload writes: the column snapshots, the last upload, the change feed."""

    def read(tx: Tx) -> tuple[list[dict[str, Any]], ...]:
        return (
            tx.all("SELECT * FROM snapshot_columns WHERE practice = 'up' ORDER BY column_id"),
            tx.all("SELECT * FROM snapshot_uploads WHERE practice = 'up'"),
            tx.all("SELECT seq, column_id, body FROM change_events WHERE practice = 'up' ORDER BY seq"),
        )

    return await env.gateway.router.store.run(read)


async def refusal(env: Env, request: snapshot_service_pb2.UploadSnapshotRequest, transport: str) -> list[str]:
    """Send over gRPC or as JSON with curl; the refusal must be INVALID_ARGUMENT (HTTP 400). Its fields."""
    if transport == "grpc":
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await env.uploads.UploadSnapshot(request)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        return [v.field for v in error_from_rpc_error(raised.value).violations]
    body = json_format.MessageToJson(request).encode()
    status, answer = await asyncio.to_thread(curl, env, "snapshot:upload", body)
    assert (status, answer["code"]) == (400, "INVALID_ARGUMENT"), answer
    return [v["field"] for v in answer.get("fieldViolations", [])]


def column(name: str, *busy: time_pb2.TimeInterval) -> snapshot_service_pb2.ColumnSnapshot:
    return snapshot_service_pb2.ColumnSnapshot(column=name, busy_times=busy)


def raw_interval(start: int, end: int, start_nanos: int = 0, end_nanos: int = 0) -> time_pb2.TimeInterval:
    message = time_pb2.TimeInterval()
    message.start_time.seconds, message.start_time.nanos = start, start_nanos
    message.end_time.seconds, message.end_time.nanos = end, end_nanos
    return message


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _bad_requests(env: Env) -> dict[str, tuple[snapshot_service_pb2.UploadSnapshotRequest, str]]:
    """Each case: a request that breaks one rule, and the field its refusal must name."""
    today = env.tomorrow - timedelta(days=1)
    window = local_window(today)
    good = span(env.tomorrow, 9)
    lo, hi = _seconds(window.start), _seconds(window.end)

    def with_busy(*busy: Interval) -> snapshot_service_pb2.UploadSnapshotRequest:
        return env.request({"dr-a": [good, *busy]})

    def with_raw(*busy: time_pb2.TimeInterval) -> snapshot_service_pb2.UploadSnapshotRequest:
        request = env.request({})
        request.columns.append(column("practices/up/columns/dr-a", cv.interval_to_proto(good), *busy))
        return request

    twice = env.request({"dr-a": [good], "dr-b": []})
    twice.columns.append(column("practices/up/columns/dr-a"))
    missing_start = time_pb2.TimeInterval()
    missing_start.end_time.seconds = lo + 60
    longest = timedelta(seconds=MAX_BUSY_SECONDS)
    return {
        "window a day late": (env.request({}, window=local_window(env.tomorrow)), "window.end_time"),
        "window from yesterday": (env.request({}, window=local_window(today - timedelta(days=1))), "window.start_time"),
        "window in 2020": (env.request({}, window=local_window(date(2020, 1, 6))), "window.start_time"),
        "window longer than asked": (env.request({}, window=local_window(today, 15)), "window.end_time"),
        "busy time ending where the window starts": (
            with_busy(Interval(window.start - timedelta(minutes=30), window.start)),
            "columns[0].busy_times[1]",
        ),
        "busy time starting where the window ends": (
            with_busy(Interval(window.end, window.end + timedelta(minutes=30))),
            "columns[0].busy_times[1]",
        ),
        "busy time in 2020": (
            with_busy(Interval(datetime(2020, 1, 1, 9, tzinfo=UTC), datetime(2020, 1, 1, 10, tzinfo=UTC))),
            "columns[0].busy_times[1]",
        ),
        "busy time longer than the longest": (
            with_busy(Interval(window.start, window.start + longest + timedelta(seconds=1))),
            "columns[0].busy_times[1]",
        ),
        "busy time over the window and beyond 2038": (
            with_busy(Interval(window.start - timedelta(hours=1), datetime(2040, 1, 1, tzinfo=UTC))),
            "columns[0].busy_times[1]",
        ),
        "busy time ending where it starts": (
            with_raw(raw_interval(lo + 60, lo + 60)),
            "columns[0].busy_times[1].end_time",
        ),
        "busy time ending before it starts": (
            with_raw(raw_interval(lo + 120, lo + 60)),
            "columns[0].busy_times[1].end_time",
        ),
        "busy time without a start": (with_raw(missing_start), "columns[0].busy_times[1].start_time"),
        "unknown column": (env.request({"nobody": []}), "columns[0].column"),
        "column of another practice": (
            snapshot_service_pb2.UploadSnapshotRequest(
                parent="practices/up",
                request_id=str(uuid.uuid4()),
                window=cv.interval_to_proto(window),
                columns=[column("practices/other/columns/dr-a")],
            ),
            "columns[0].column",
        ),
        "column named twice": (twice, "columns[2].column"),
        "busy time later in a second column": (
            env.request({"dr-a": [good], "dr-b": [good, good, Interval(window.end, window.end + longest)]}),
            "columns[1].busy_times[2]",
        ),
    } | {
        # the same busy times the window check reads, but only the gRPC encoding can carry these values
        "busy time ending after year 9999 (gRPC)": (
            with_raw(raw_interval(hi - 60, 253402300800)),
            "columns[0].busy_times[1].end_time",
        ),
        "busy time with nanos of two seconds (gRPC)": (
            with_raw(raw_interval(lo + 60, lo + 120, start_nanos=2 * 10**9)),
            "columns[0].busy_times[1].start_time",
        ),
        "busy time shorter than a microsecond (gRPC)": (
            with_raw(raw_interval(lo + 60, lo + 60, start_nanos=100, end_nanos=900)),
            "columns[0].busy_times[1].end_time",
        ),
    }


BAD_CASES = [
    "window a day late",
    "window from yesterday",
    "window in 2020",
    "window longer than asked",
    "busy time ending where the window starts",
    "busy time starting where the window ends",
    "busy time in 2020",
    "busy time longer than the longest",
    "busy time over the window and beyond 2038",
    "busy time ending where it starts",
    "busy time ending before it starts",
    "busy time without a start",
    "unknown column",
    "column of another practice",
    "column named twice",
    "busy time later in a second column",
]
GRPC_ONLY = [
    "busy time ending after year 9999 (gRPC)",
    "busy time with nanos of two seconds (gRPC)",
    "busy time shorter than a microsecond (gRPC)",
]


@pytest.mark.parametrize(
    ("case", "transport"),
    [(case, transport) for case in BAD_CASES for transport in ("grpc", "http")] + [(c, "grpc") for c in GRPC_ONLY],
)
async def test_a_bad_upload_names_the_field_and_changes_nothing(tmp_path: Path, case: str, transport: str) -> None:
    async with snapshot_env(tmp_path) as env:
        pin_clock(env, at(env.tomorrow - timedelta(days=1), 12))  # noon: no midnight within the tolerance
        await env.upload({"dr-a": [span(env.tomorrow, 8)], "dr-b": [span(env.tomorrow, 11)]}, request_id="good-1")
        before = await stored_state(env)
        request, field = _bad_requests(env)[case]
        assert await refusal(env, request, transport) == [field]
        assert await stored_state(env) == before
        # and the refused request_id was not remembered: a good upload with it is applied
        good = env.request({"dr-a": [span(env.tomorrow, 9)]}, request_id=request.request_id)
        applied = await env.uploads.UploadSnapshot(good)
        assert (applied.added_count, applied.removed_count) == (1, 1)


async def test_json_that_protobuf_cannot_parse_names_the_field(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        await env.upload({"dr-a": [span(env.tomorrow, 8)]}, request_id="good-1")
        before = await stored_state(env)
        body = json_format.MessageToDict(env.request({"dr-a": [span(env.tomorrow, 9), span(env.tomorrow, 10)]}))
        cases = [
            (
                ("columns", 0, "busyTimes", 1, "startTime"),
                "10000-01-01T00:00:00Z",
                "columns[0].busy_times[1].start_time",
            ),
            (("columns", 0, "busyTimes", 0, "endTime"), "2027-13-01T00:00:00Z", "columns[0].busy_times[0].end_time"),
            (("window", "startTime"), "0000-01-01T00:00:00Z", "window.start_time"),
            (("requestId",), 5, "request_id"),
            (("columns",), {}, "columns"),
        ]
        for path, value, field in cases:
            broken = json.loads(json.dumps(body))
            target = broken
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
            status, answer = await asyncio.to_thread(curl, env, "snapshot:upload", json.dumps(broken).encode())
            assert (status, answer["code"]) == (400, "INVALID_ARGUMENT"), answer
            assert [v["field"] for v in answer["fieldViolations"]] == [field], answer
        assert await stored_state(env) == before


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_the_window_tolerates_a_midnight_between_asking_and_uploading(tmp_path: Path, transport: str) -> None:
    async with snapshot_env(tmp_path) as env:
        today = env.tomorrow - timedelta(days=1)
        yesterday_window = local_window(today - timedelta(days=1))
        tomorrow_window = local_window(env.tomorrow)
        minute = timedelta(minutes=1)
        # asked just before midnight, uploads just after it: yesterday's window is still accepted
        pin_clock(env, at(today, 0) + WINDOW_TOLERANCE - minute)
        early = env.request({"dr-a": [span(today, 9)]}, window=yesterday_window)
        assert (await env.uploads.UploadSnapshot(early)).added_count == 1
        # a PVS clock slightly ahead: tomorrow's window just before midnight
        pin_clock(env, at(env.tomorrow, 0) - WINDOW_TOLERANCE + minute)
        ahead = env.request({"dr-a": [span(env.tomorrow, 9)]}, window=tomorrow_window)
        assert (await env.uploads.UploadSnapshot(ahead)).added_count == 1
        before = await stored_state(env)
        # beyond the tolerance neither is
        pin_clock(env, at(today, 0) + WINDOW_TOLERANCE + minute)
        late = env.request({"dr-a": [span(today, 9)]}, window=yesterday_window)
        assert await refusal(env, late, transport) == ["window.start_time"]
        pin_clock(env, at(env.tomorrow, 0) - WINDOW_TOLERANCE - minute)
        too_early = env.request({"dr-a": [span(env.tomorrow, 9)]}, window=tomorrow_window)
        assert await refusal(env, too_early, transport) == ["window.end_time"]
        assert await stored_state(env) == before


async def test_a_part_of_the_window_busy_times_across_its_edges_and_sub_seconds_are_accepted(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        today = env.tomorrow - timedelta(days=1)
        pin_clock(env, at(today, 12))
        window = local_window(today, 7)  # a shorter window than asked: the rest stays unknown (busy)
        across_start = Interval(window.start - timedelta(days=3), window.start + timedelta(hours=8))  # an absence
        across_end = Interval(window.end - timedelta(hours=1), window.end + timedelta(days=2))
        longest = Interval(window.start, window.start + timedelta(seconds=MAX_BUSY_SECONDS))
        request = env.request({"dr-a": [across_start, across_end, longest]}, window=window)
        odd = request.columns[0].busy_times.add()  # 09:00:00.25 to 09:30:00.5
        odd.CopyFrom(cv.interval_to_proto(span(env.tomorrow, 9)))
        odd.start_time.nanos, odd.end_time.nanos = 250_000_000, 500_000_000
        answer = await env.uploads.UploadSnapshot(request)
        assert answer.added_count == 4
        (event,) = await take(env.watch("c1-0"), 1)
        rounded = Interval(span(env.tomorrow, 9).start, span(env.tomorrow, 9).end + timedelta(seconds=1))
        assert isinstance(event.change, BusyTimeChanged)
        assert sorted(event.change.added, key=lambda i: (i.start, i.end)) == sorted(
            [across_start, across_end, longest, rounded], key=lambda i: (i.start, i.end)
        )


async def test_unsorted_and_overlapping_busy_times_are_a_multiset(tmp_path: Path) -> None:
    """The contract allows any order and overlaps (double bookings): they are accepted, not refused."""
    async with snapshot_env(tmp_path) as env:
        day = env.tomorrow
        first = await env.upload({"dr-a": [span(day, 10), span(day, 9, 60), span(day, 9, 30, 15), span(day, 9, 60)]})
        assert first.added_count == 4
        assert await env.busy("dr-a") == sorted(
            [span(day, 10), span(day, 9, 60), span(day, 9, 30, 15), span(day, 9, 60)], key=lambda i: (i.start, i.end)
        )
        second = await env.upload({"dr-a": [span(day, 9, 30, 15), span(day, 9, 60), span(day, 10)]})
        assert (second.added_count, second.removed_count) == (0, 1)
        (event,) = await take(env.watch(first.change_cursor), 1)
        assert event.change == BusyTimeChanged("dr-a", removed=(span(day, 9, 60),))


async def test_too_many_busy_times_are_refused_before_they_are_read(tmp_path: Path) -> None:
    async with snapshot_env(tmp_path) as env:
        pin_clock(env, at(env.tomorrow - timedelta(days=1), 12))
        await env.upload({"dr-a": [span(env.tomorrow, 8)]}, request_id="good-1")
        before = await stored_state(env)
        one = cv.interval_to_proto(span(env.tomorrow, 9))
        request = env.request({})
        half = MAX_BUSY_TIMES // 2 + 1  # over two columns: the limit is per upload
        request.columns.extend(
            [column("practices/up/columns/dr-a", *[one] * half), column("practices/up/columns/dr-b", *[one] * half)]
        )
        request.columns[1].busy_times[-1].end_time.seconds = 0  # malformed, but never read: counted first
        assert request.ByteSize() < MAX_MESSAGE_BYTES
        assert await refusal(env, request, "grpc") == ["columns"]
        request.columns[1].busy_times.pop(0)  # one fewer per column: read, and the malformed one is named
        request.columns[0].busy_times.pop(0)
        assert await refusal(env, request, "grpc") == [f"columns[1].busy_times[{half - 2}].end_time"]
        assert await stored_state(env) == before


async def test_the_keeper_checks_what_callers_other_than_the_services_hand_it(tmp_path: Path) -> None:
    """SnapshotKeeper.upload is the one place every upload passes: it checks even already parsed ones."""
    async with snapshot_env(tmp_path) as env:
        today = env.tomorrow - timedelta(days=1)
        pin_clock(env, at(today, 12))
        lo = _seconds(at(env.tomorrow, 9))
        window = local_window(today)
        empty = SnapshotUpload("k-1", window, (("dr-a", IntervalArray.of([(lo, lo + 60), (lo, lo)])),))
        with pytest.raises(InvalidArgument) as raised:
            await keeper(env).upload(empty)
        assert [v.field for v in raised.value.violations] == ["columns[0].busy_times[1]"]
        many = IntervalArray(np.full(MAX_BUSY_TIMES + 1, lo, np.int64), np.full(MAX_BUSY_TIMES + 1, lo + 60, np.int64))
        with pytest.raises(InvalidArgument) as raised:
            await keeper(env).upload(SnapshotUpload("k-2", window, (("dr-a", many),)))
        assert [v.field for v in raised.value.violations] == ["columns"]
        with pytest.raises(Unavailable):
            await env.busy("dr-a")  # nothing was stored


# --- instants before 1970 and after 2038 travel unchanged from upload to feed ----------------------


@pytest.mark.parametrize("today", [date(2040, 6, 4), date(2150, 1, 12), date(1900, 6, 5)])
async def test_busy_times_far_from_1970_reach_the_feed_with_their_dates(tmp_path: Path, today: date) -> None:
    """A gateway whose clock says `today`: the upload, its diff and WatchChanges keep every date
    (the diff once packed starts into 32 bits, and 2040 came back as 1903)."""
    async with snapshot_env(tmp_path) as env:
        pin_clock(env, at(today, 12))
        window = cv.interval_from_proto((await env.window()).window, "window")
        assert window == local_window(today)
        day = today + timedelta(days=1)
        kept, moved, moved_to = span(day, 10), span(day, 9), span(day, 9, minute=30)
        first = await env.uploads.UploadSnapshot(env.request({"dr-a": [moved, kept, kept]}, window=window))
        second = await env.uploads.UploadSnapshot(env.request({"dr-a": [kept, moved_to]}, window=window))
        assert (second.added_count, second.removed_count) == (1, 2)
        (event,) = await take(env.watch(first.change_cursor), 1)
        assert event.change == BusyTimeChanged("dr-a", added=(moved_to,), removed=(moved, kept))
        (busy,) = await env.partner.list_busy_times("up", window, ["dr-a"])
        assert list(busy.intervals.intervals()) == [moved_to, kept]


async def test_curl_over_the_rate_limit_gets_429_with_retry_after(tmp_path: Path) -> None:
    limits = {PVS_ID: {"per_second": 0.5, "burst": 2}}
    async with snapshot_env(tmp_path, partner_rate_limits=limits) as env:
        statuses = [(await asyncio.to_thread(curl, env, "snapshot:window", b"{}"))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        method = "/otv.v1.SnapshotService/GetUploadWindow"
        assert env.gateway.http is not None
        url = f"http://127.0.0.1:{env.gateway.http.port}/v1/practices/up/snapshot:window"
        args = ["curl", "-sS", "-X", "POST", "--data-binary", "{}", "-D", "-", "-o", "/dev/null"]
        for name, value in pvs_signer().headers(method, b"{}"):
            args += ["-H", f"{name}: {value}"]
        done = await asyncio.to_thread(subprocess.run, [*args, url], capture_output=True, check=True)
        headers = done.stdout.decode().lower()
        assert " 429 " in headers.splitlines()[0]
        assert "retry-after: 2" in headers  # one call every two seconds
