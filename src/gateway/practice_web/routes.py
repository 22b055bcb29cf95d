"""The practice web page's routes, mounted by the gateway's HTTP server under /practice/.

    GET  /practice/                      login form (or on to the inbox when logged in)
    POST /practice/login                 practice, user, password
    POST /practice/logout
    GET  /practice/{practice}/           the inbox; live through /practice/{practice}/events (SSE)
    POST /practice/{practice}/decide     accept, reject (with reason) or mark transferred
    GET  /practice/{practice}/recent     recent online bookings and cancellations
    GET  /practice/{practice}/audit      what partners did (filters, pages)
    GET  /practice/{practice}/licences   partner licences; POST to change one

A session reaches only its own practice (403 otherwise). Every POST needs the session's CSRF token.
No patient data goes into a URL (decisions are POSTed) or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy

from gateway.partners import SERVICES
from gateway.practice_web import csrf
from gateway.practice_web.accounts import StaffAccounts
from gateway.practice_web.desk import DeskProvider
from gateway.practice_web.events import inbox_events
from gateway.practice_web.rendering import Renderer, german_error
from gateway.practice_web.sessions import COOKIE, Session, Sessions
from gateway.practice_web.throttle import LoginThrottle
from gateway.state_store import StateStore
from otv_sdk.errors import OtvError

__all__ = ["PracticeWeb"]

log = logging.getLogger("otv.gateway.practice_web")

STATIC = Path(__file__).parent / "static"
PREFIX = "/practice"
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PracticeWeb:
    """The page's state: accounts, sessions, throttle, templates, and the practices' desks."""

    def __init__(
        self,
        store: StateStore,
        desk_for: DeskProvider,
        practice_ids: Collection[str],
        *,
        secure: bool = False,
        sessions: Sessions | None = None,
        throttle: LoginThrottle | None = None,
        time_zone: str = "Europe/Berlin",
        heartbeat_seconds: float = 15.0,
    ) -> None:
        self.accounts = StaffAccounts(store)
        self.sessions = sessions or Sessions(store)
        self.throttle = throttle or LoginThrottle()
        self.renderer = Renderer(time_zone)
        self._desk_for = desk_for
        self._practices = frozenset(practice_ids)
        self._secure = secure
        self.heartbeat_seconds = heartbeat_seconds
        self._streams: set[asyncio.Task[Any]] = set()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        app.router.add_static("/static/", STATIC, name="static")
        app.router.add_get("/", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/{practice}/", self._inbox)
        app.router.add_get("/{practice}/events", self._events)
        app.router.add_post("/{practice}/decide", self._decide)
        app.router.add_get("/{practice}/recent", self._recent)
        app.router.add_get("/{practice}/audit", self._audit)
        app.router.add_get("/{practice}/licences", self._licences)
        app.router.add_post("/{practice}/licences", self._set_licence)
        app.on_response_prepare.append(_security_headers)
        app.on_shutdown.append(self._close_streams)
        return app

    # --- login and logout -------------------------------------------------------------------

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        session = await self.sessions.get(request.cookies.get(COOKIE))
        if session is not None:
            raise web.HTTPSeeOther(f"{PREFIX}/{session.practice}/")
        return self._login_form(request, status=200)

    def _login_form(self, request: web.Request, *, status: int, error: str = "", practice: str = "") -> web.Response:
        token = request.cookies.get(csrf.LOGIN_COOKIE) or csrf.new_token()
        html = self.renderer.render("login.html", csrf_token=token, error=error, practice=practice, session=None)
        response = _html(html, status)
        self._cookie(request, response, csrf.LOGIN_COOKIE, token, max_age=3600)
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not csrf.matches(request.cookies.get(csrf.LOGIN_COOKIE), form.get(csrf.FIELD)):
            return self._login_form(request, status=403, error="Das Formular ist abgelaufen. Bitte erneut anmelden.")
        practice, username = _text(form, "practice").strip(), _text(form, "username").strip().lower()
        password = _text(form, "password")
        address = request.remote or "unknown"
        account = f"{practice}/{username}"
        wait = self.throttle.retry_after(account, address)
        if wait:
            log.warning("practice login throttled for an account or address (retry in %d s)", wait)
            message = f"Zu viele Fehlversuche. Bitte in {max(1, (wait + 59) // 60)} Minute(n) erneut versuchen."
            response = self._login_form(request, status=429, error=message, practice=practice)
            response.headers["Retry-After"] = str(wait)
            return response
        if practice not in self._practices or not await self.accounts.verify(practice, username, password):
            self.throttle.failed(account, address)
            error = "Praxis, Benutzername oder Passwort ist falsch."
            return self._login_form(request, status=401, error=error, practice=practice)
        self.throttle.succeeded(account)
        token, _ = await self.sessions.create(practice, username)
        log.info("practice staff %s of %s logged in", username, practice)
        response = web.HTTPSeeOther(f"{PREFIX}/{practice}/")
        self._cookie(request, response, COOKIE, token, max_age=int(self.sessions.absolute_seconds))
        response.del_cookie(csrf.LOGIN_COOKIE, path=f"{PREFIX}/")
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(COOKIE)
        session = await self.sessions.get(token)
        form = await request.post()
        if session is not None and not csrf.matches(session.csrf, form.get(csrf.FIELD)):
            raise _refused(403, "Das Formular ist ungültig (Sicherheitsmerkmal fehlt).")
        await self.sessions.end(token)
        response = web.HTTPSeeOther(f"{PREFIX}/")
        response.del_cookie(COOKIE, path=f"{PREFIX}/")
        raise response

    def _cookie(self, request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            path=f"{PREFIX}/",
            max_age=max_age,
            httponly=True,
            samesite="Strict",
            secure=self._secure or request.secure,
        )

    # --- who is asking --------------------------------------------------------------------

    async def _session(self, request: web.Request, *, touch: bool = True) -> Session:
        """The caller's session for the practice in the path; 401/403 (or to the login) when none."""
        session = await self.sessions.get(request.cookies.get(COOKIE), touch=touch)
        if session is None:
            if request.method == "GET" and not request.path.endswith("/events"):
                raise web.HTTPSeeOther(f"{PREFIX}/")
            raise _refused(401, "Bitte melden Sie sich an (die Sitzung ist abgelaufen).")
        if session.practice != request.match_info["practice"]:
            raise _refused(403, "Kein Zugriff auf diese Praxis.")
        return session

    async def _checked_form(self, request: web.Request) -> tuple[Session, MultiDictProxy[Any]]:
        session = await self._session(request)
        form = await request.post()
        if not csrf.matches(session.csrf, form.get(csrf.FIELD)):
            raise _refused(403, "Das Formular ist ungültig (Sicherheitsmerkmal fehlt). Bitte die Seite neu laden.")
        return session, form

    def _page(self, template: str, session: Session, status: int = 200, **context: Any) -> web.Response:
        html = self.renderer.render(
            template, session=session, practice=session.practice, csrf_token=session.csrf, **context
        )
        return _html(html, status)

    # --- the inbox ------------------------------------------------------------------------

    async def _inbox(self, request: web.Request, *, message: str = "", error: str = "") -> web.StreamResponse:
        session = await self._session(request)
        desk = await self._desk_for(session.practice)
        items = sorted(await desk.inbox(), key=lambda item: item.start)
        done = {"accepted": "Angenommen.", "rejected": "Abgelehnt.", "transferred": "Als übertragen markiert."}
        message = message or done.get(request.query.get("done", ""), "")
        status = 409 if error else 200
        return self._page("inbox.html", session, status, items=items, message=message, error=error)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request, touch=False)
        desk = await self._desk_for(session.practice)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            return await inbox_events(request, desk, self, session)
        finally:
            self._streams.discard(task)

    def render_item(self, item: Any, session: Session) -> str:
        return self.renderer.render("item.html", item=item, practice=session.practice, csrf_token=session.csrf)

    async def session_alive(self, request: web.Request) -> bool:
        return await self.sessions.get(request.cookies.get(COOKIE), touch=False) is not None

    async def _close_streams(self, _app: web.Application) -> None:
        for task in list(self._streams):
            task.cancel()

    async def _decide(self, request: web.Request) -> web.StreamResponse:
        session, form = await self._checked_form(request)
        desk = await self._desk_for(session.practice)
        actor = f"staff:{session.username}"
        decision = _text(form, "decision")
        appointment_id, etag = _text(form, "appointment_id"), _text(form, "etag")
        request_id = _text(form, "request_id") or secrets.token_hex(16)
        try:
            if decision == "accept":
                await desk.accept(actor, appointment_id, etag, request_id)
                done = "accepted"
            elif decision == "reject":
                reason = _text(form, "reason").strip()
                if not reason:
                    return await self._inbox(request, error="Bitte einen Grund für die Ablehnung angeben.")
                await desk.reject(actor, appointment_id, etag, reason, request_id)
                done = "rejected"
            elif decision == "transferred":
                pvs_id = _text(form, "pvs_id").strip() or None
                await desk.mark_transferred(actor, appointment_id, etag, pvs_id, request_id)
                done = "transferred"
            else:
                raise _refused(400, "Unbekannte Aktion.")
        except OtvError as error:
            log.info("practice %s: %s refused: %s", session.practice, decision, error.code.value)
            return await self._inbox(request, error=german_error(error))
        raise web.HTTPSeeOther(f"{PREFIX}/{session.practice}/?done={done}")

    # --- recent bookings, audit, licences -------------------------------------------------

    async def _recent(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        bookings = await (await self._desk_for(session.practice)).recent(100)
        return self._page("recent.html", session, bookings=bookings)

    async def _audit(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        query = request.query
        partner, action = query.get("partner", "").strip(), query.get("action", "").strip()
        since, until = _day(query.get("since", "")), _day(query.get("until", ""))
        entries: list[Any] = []
        error, next_token = "", ""
        try:
            entries, next_token = await (await self._desk_for(session.practice)).audit(
                partner_id=partner or None,
                action=action or None,
                since=since,
                until=until + timedelta(days=1) if until else None,
                page_size=50,
                page_token=query.get("page", ""),
            )
        except OtvError as failure:
            error = german_error(failure)
        filters = {
            "partner": partner,
            "action": action,
            "since": query.get("since", ""),
            "until": query.get("until", ""),
        }
        next_url = f"?{urlencode({**filters, 'page': next_token})}" if next_token else ""
        status = 400 if error else 200
        return self._page(
            "audit.html", session, status, entries=entries, filters=filters, next_url=next_url, error=error
        )

    async def _licences(self, request: web.Request, *, message: str = "", error: str = "") -> web.StreamResponse:
        session = await self._session(request)
        licences = sorted(await (await self._desk_for(session.practice)).licences(), key=lambda lic: lic.partner_id)
        status = 409 if error else 200
        return self._page(
            "licences.html", session, status, licences=licences, services=SERVICES, message=message, error=error
        )

    async def _set_licence(self, request: web.Request) -> web.StreamResponse:
        session, form = await self._checked_form(request)
        partner = _text(form, "partner_id")
        services = frozenset(s for s in form.getall("service", []) if isinstance(s, str) and s in SERVICES)
        try:
            await (await self._desk_for(session.practice)).set_licence(f"staff:{session.username}", partner, services)
        except OtvError as error:
            return await self._licences(request, error=german_error(error))
        return await self._licences(request, message="Die Lizenz wurde gespeichert.")


def _text(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _day(value: str) -> datetime | None:
    try:
        return datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time(), UTC) if value else None
    except ValueError:
        return None


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _refused(status: int, message: str) -> web.HTTPException:
    """A refusal as a small German page (kept out of the gateway's JSON error middleware)."""
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
    }
    return kinds.get(status, web.HTTPServiceUnavailable)(text=message, content_type="text/plain")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """OtvErrors that escape a handler (an unknown practice's desk, an unavailable PVS) as German text."""
    try:
        return await handler(request)
    except OtvError as error:
        status = 404 if error.code.value == "NOT_FOUND" else 503
        raise _refused(status, german_error(error)) from None


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
