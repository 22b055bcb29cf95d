"""The practice web page over real HTTP (the gateway's HttpApi on loopback), against an in-memory desk:
login, throttling, CSRF, practice isolation, autoescaping, session expiry, logout, decisions, live events."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from gateway.http_api import HttpApi
from gateway.practice_web import PracticeWeb
from gateway.practice_web.sessions import Sessions
from gateway.practice_web.throttle import LoginThrottle
from gateway.state_store import SqliteStore
from otv_sdk.errors import FailedPrecondition, NotFound
from otv_sdk.models import Contact, ContactKind

PASSWORD = "richtig-geheim-1"


@dataclass(frozen=True, slots=True)
class PatientDetails:
    given_name: str
    family_name: str
    birth_date: date | None
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class InboxItem:
    appointment_id: str
    kind: str
    partner_id: str
    appointment_type_id: str
    appointment_type_name: str
    column_id: str
    column_name: str
    start: datetime
    end: datetime
    patient: PatientDetails | None
    create_time: datetime
    etag: str


@dataclass(frozen=True, slots=True)
class InboxEvent:
    cursor: str
    item: InboxItem | None
    removed_id: str | None


@dataclass(frozen=True, slots=True)
class PartnerLicence:
    partner_id: str
    display_name: str
    services: frozenset[str]


@dataclass
class FakeDesk:
    """The PracticeDesk API in memory."""

    items: dict[str, InboxItem] = field(default_factory=dict)
    decisions: list[tuple[str, ...]] = field(default_factory=list)
    licence: dict[str, frozenset[str]] = field(default_factory=lambda: {"alpha": frozenset({"reader", "writer"})})
    queues: list[asyncio.Queue[InboxEvent]] = field(default_factory=list)
    seq: int = 0

    def add(self, item: InboxItem) -> None:
        self.items[item.appointment_id] = item
        self._publish(InboxEvent(self._cursor(), item, None))

    def _cursor(self) -> str:
        self.seq += 1
        return str(self.seq)

    def _publish(self, event: InboxEvent) -> None:
        for queue in self.queues:
            queue.put_nowait(event)

    async def inbox(self) -> list[InboxItem]:
        return list(self.items.values())

    async def watch(self, cursor: str = "") -> AsyncIterator[InboxEvent]:
        queue: asyncio.Queue[InboxEvent] = asyncio.Queue()
        self.queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self.queues.remove(queue)

    def _take(self, appointment_id: str, etag: str) -> InboxItem:
        item = self.items.get(appointment_id)
        if item is None:
            raise FailedPrecondition("already decided")
        del self.items[appointment_id]
        self._publish(InboxEvent(self._cursor(), None, appointment_id))
        return item

    async def accept(self, actor: str, appointment_id: str, etag: str, request_id: str) -> InboxItem:
        self.decisions.append(("accept", actor, appointment_id))
        return self._take(appointment_id, etag)

    async def reject(self, actor: str, appointment_id: str, etag: str, reason: str, request_id: str) -> InboxItem:
        self.decisions.append(("reject", actor, appointment_id, reason))
        return self._take(appointment_id, etag)

    async def mark_transferred(
        self, actor: str, appointment_id: str, etag: str, pvs_id: str | None, request_id: str
    ) -> InboxItem:
        self.decisions.append(("transferred", actor, appointment_id, pvs_id or ""))
        return self._take(appointment_id, etag)

    async def audit(self, **_: Any) -> tuple[list[Any], str]:
        return [], ""

    async def recent(self, limit: int = 50) -> list[Any]:
        return []

    async def licences(self) -> list[PartnerLicence]:
        return [PartnerLicence(p, p.title(), s) for p, s in self.licence.items()]

    async def set_licence(self, actor: str, partner_id: str, services: frozenset[str]) -> PartnerLicence:
        if partner_id not in self.licence:
            raise NotFound("no such partner")
        self.licence[partner_id] = services
        return PartnerLicence(partner_id, partner_id.title(), services)


def item(appointment_id: str, family: str = "Mustermann", kind: str = "confirmation") -> InboxItem:
    start = datetime(2031, 3, 4, 8, 30, tzinfo=UTC)
    patient = PatientDetails("Erika", family, date(1964, 8, 12), (Contact(ContactKind.MOBILE, "+491701234567"),))
    return InboxItem(
        appointment_id, kind, "alpha", "kontrolle", "Kontrolle", "berg", "Dr. Berg",
        start, start + timedelta(minutes=15), patient, datetime.now(UTC), "e1",
    )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    base: str
    desks: dict[str, FakeDesk]
    web: PracticeWeb
    clock: Clock

    def client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(self.base, cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = SqliteStore(tmp_path / "state.sqlite")
    desks = {"demo": FakeDesk(), "other": FakeDesk()}

    async def desk_for(practice_id: str) -> FakeDesk:
        return desks[practice_id]

    clock = Clock()
    web = PracticeWeb(
        store,
        desk_for,
        desks,
        sessions=Sessions(store, idle_seconds=600, absolute_seconds=3600, clock=clock),
        throttle=LoginThrottle(account_limit=3, address_limit=6, window=60, clock=clock),
        heartbeat_seconds=0.2,
    )
    web.accounts.add("demo", "anna", PASSWORD)
    web.accounts.add("other", "otto", PASSWORD)
    http = HttpApi(cast(Any, None), None, web.app())
    await http.start("127.0.0.1:0")
    try:
        yield Env(f"http://127.0.0.1:{http.port}", desks, web, clock)
    finally:
        await http.stop()
        store.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found[1]


async def login(
    client: aiohttp.ClientSession, user: str = "anna", password: str = PASSWORD, practice: str = "demo"
) -> aiohttp.ClientResponse:
    page = await (await client.get("/practice/")).text()
    form = {"csrf_token": csrf_of(page), "practice": practice, "username": user, "password": password}
    return await client.post("/practice/login", data=form, allow_redirects=False)


async def test_login_sets_a_strict_http_only_cookie_and_shows_the_inbox(env: Env) -> None:
    env.desks["demo"].add(item("a1"))
    async with env.client() as client:
        response = await login(client)
        assert response.status == 303
        assert response.headers["Location"] == "/practice/demo/"
        cookie = next(v for k, v in response.headers.items() if k == "Set-Cookie" and "otv_practice_session" in v)
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/practice/" in cookie
        inbox = await client.get("/practice/demo/")
        html = await inbox.text()
        assert inbox.status == 200
        assert "default-src 'self'" in inbox.headers["Content-Security-Policy"]
        assert "Mustermann" in html
        assert "<script>" not in html  # the one script is a file
        assert 'lang="de"' in html


async def test_wrong_password_and_unknown_user_are_refused_alike(env: Env) -> None:
    async with env.client() as client:
        wrong = await login(client, password="falsch-falsch")
        unknown = await login(client, user="niemand")
        assert wrong.status == unknown.status == 401
        assert "Passwort ist falsch" in await wrong.text()
        assert (await client.get("/practice/demo/", allow_redirects=False)).status == 303


async def test_login_is_throttled_per_account_and_per_address(env: Env) -> None:
    async with env.client() as client:
        for _ in range(3):
            assert (await login(client, password="falsch-falsch")).status == 401
        throttled = await login(client)  # even the right password waits now
        assert throttled.status == 429
        assert "Zu viele Fehlversuche" in await throttled.text()
        assert int(throttled.headers["Retry-After"]) > 0
        # The address limit: more wrong users from the same address lock out the others too.
        for name in ("x1", "x2", "x3"):
            await login(client, user=name, password="falsch-falsch")
        assert (await login(client, user="otto", practice="other")).status == 429
        env.clock.now += 61
        assert (await login(client)).status == 303


async def test_forms_without_the_csrf_token_are_refused(env: Env) -> None:
    env.desks["demo"].add(item("a1"))
    async with env.client() as client:
        await login(client)
        form = {"decision": "accept", "appointment_id": "a1", "etag": "e1", "request_id": "r1"}
        refused = await client.post("/practice/demo/decide", data=form)
        assert refused.status == 403
        wrong = await client.post("/practice/demo/decide", data={**form, "csrf_token": "x" * 43})
        assert wrong.status == 403
        assert env.desks["demo"].decisions == []
        # The login form has its own token too.
        async with env.client() as fresh:
            data = {"practice": "demo", "username": "anna", "password": PASSWORD}
            assert (await fresh.post("/practice/login", data=data, allow_redirects=False)).status == 403


async def test_another_practice_is_not_reachable(env: Env) -> None:
    env.desks["other"].add(item("o1", family="Geheim"))
    async with env.client() as client:
        await login(client)
        for path in ("/practice/other/", "/practice/other/events", "/practice/other/audit", "/practice/other/licences"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 403, path
            assert "Geheim" not in await response.text()
        page = await (await client.get("/practice/demo/")).text()
        form = {"csrf_token": csrf_of(page), "decision": "accept", "appointment_id": "o1", "etag": "e1"}
        assert (await client.post("/practice/other/decide", data=form)).status == 403
        assert env.desks["other"].decisions == []


async def test_a_patient_name_with_markup_is_shown_as_text(env: Env) -> None:
    env.desks["demo"].add(item("a1", family='<img src=x onerror="alert(1)">Kunz'))
    async with env.client() as client:
        await login(client)
        html = await (await client.get("/practice/demo/")).text()
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;Kunz" in html


async def test_sessions_expire_when_idle_and_absolutely(env: Env) -> None:
    async with env.client() as client:
        await login(client)
        env.clock.now += 599
        assert (await client.get("/practice/demo/", allow_redirects=False)).status == 200
        env.clock.now += 601
        expired = await client.get("/practice/demo/", allow_redirects=False)
        assert expired.status == 303
        assert expired.headers["Location"] == "/practice/"
        await login(client)
        for _ in range(8):  # active all along, still ends after the absolute hour
            env.clock.now += 500
            await client.get("/practice/demo/", allow_redirects=False)
        assert (await client.get("/practice/demo/", allow_redirects=False)).status == 303


async def test_logout_ends_the_session(env: Env) -> None:
    async with env.client() as client:
        await login(client)
        page = await (await client.get("/practice/demo/")).text()
        stolen = {c.key: c.value for c in client.cookie_jar}
        logout = await client.post("/practice/logout", data={"csrf_token": csrf_of(page)}, allow_redirects=False)
        assert logout.status == 303
        assert (await client.get("/practice/demo/", allow_redirects=False)).status == 303
    async with aiohttp.ClientSession(env.base, cookies=stolen) as replay:  # the old cookie is dead too
        assert (await replay.get("/practice/demo/", allow_redirects=False)).status == 303


async def test_decisions_reach_the_desk_and_errors_are_german(env: Env) -> None:
    desk = env.desks["demo"]
    desk.add(item("a1"))
    desk.add(item("a2"))
    desk.add(item("m1", kind="transfer"))
    async with env.client() as client:
        await login(client)
        token = csrf_of(await (await client.get("/practice/demo/")).text())
        base = {"csrf_token": token, "etag": "e1", "request_id": "r"}
        accepted = await client.post(
            "/practice/demo/decide", data={**base, "decision": "accept", "appointment_id": "a1"}
        )
        assert "Angenommen." in await accepted.text()
        no_reason = {**base, "decision": "reject", "appointment_id": "a2", "reason": " "}
        assert "Grund" in await (await client.post("/practice/demo/decide", data=no_reason)).text()
        await client.post("/practice/demo/decide", data={**no_reason, "reason": "Praxis geschlossen"})
        transfer = {**base, "decision": "transferred", "appointment_id": "m1", "pvs_id": "PVS-77"}
        await client.post("/practice/demo/decide", data=transfer)
        twice = await client.post("/practice/demo/decide", data={**base, "decision": "accept", "appointment_id": "a1"})
        assert twice.status == 409
        assert "bereits entschieden" in await twice.text()
    assert desk.decisions == [
        ("accept", "staff:anna", "a1"),
        ("reject", "staff:anna", "a2", "Praxis geschlossen"),
        ("transferred", "staff:anna", "m1", "PVS-77"),
        ("accept", "staff:anna", "a1"),
    ]


async def test_licences_are_listed_and_changed(env: Env) -> None:
    async with env.client() as client:
        await login(client)
        page = await (await client.get("/practice/demo/licences")).text()
        assert "Termine buchen und absagen" in page
        form = aiohttp.FormData({"csrf_token": csrf_of(page), "partner_id": "alpha"})
        form.add_field("service", "reader")
        form.add_field("service", "snapshot")  # not a partner service: ignored
        assert "gespeichert" in await (await client.post("/practice/demo/licences", data=form)).text()
        assert env.desks["demo"].licence["alpha"] == frozenset({"reader"})


async def test_the_inbox_streams_live_as_server_sent_events(env: Env) -> None:
    desk = env.desks["demo"]
    desk.add(item("a1"))
    async with env.client() as client:
        await login(client)
        async with client.get("/practice/demo/events") as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")

            async def next_event() -> tuple[str, str]:
                name = data = ""
                while True:
                    line = (await asyncio.wait_for(stream.content.readline(), 5)).decode().rstrip("\n")
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and name:
                        return name, data

            name, data = await next_event()
            assert name == "sync"
            assert "item-a1" in data
            desk.add(item("a2", family="<b>Neu</b>"))
            name, data = await next_event()
            assert name == "item"
            assert "&lt;b&gt;Neu" in data
            assert "<b>Neu" not in data
            await desk.accept("x", "a1", "e1", "r")
            assert await next_event() == ("removed", '{"id": "a1"}')
            env.clock.now += 601  # idle: the stream notices at its next heartbeat
            assert (await next_event())[0] == "expired"


def test_unknown_users_cost_a_hash_too_and_passwords_are_argon2(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    web = PracticeWeb(store, cast(Any, None), ["demo"])
    web.accounts.add("demo", "anna", PASSWORD)
    stored = store.run_sync(lambda tx: tx.one("SELECT password_hash FROM staff_accounts"))
    assert stored is not None
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in stored["password_hash"]
    with pytest.raises(ValueError, match="at least"):
        web.accounts.add("demo", "bob", "kurz")
    assert replace(item("a"), etag="x").etag == "x"
    store.close()
