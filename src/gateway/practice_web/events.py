"""The live inbox: server-sent events fed by the desk's watch.

Each event carries the item already rendered (autoescaped) by the server; the page's script only
puts it in place. The first event is `sync`, the whole inbox read after the watch started, so an
item that arrived between the page load and the stream is not missed. A comment line every
`heartbeat_seconds` keeps proxies from closing the stream and notices a session that ended
(logout, expiry): then an `expired` event and the stream closes. Watching does not count as
activity, so an unattended page still reaches its idle expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.practice_web.desk import Desk
from gateway.practice_web.sessions import Session

if TYPE_CHECKING:
    from gateway.practice_web.routes import PracticeWeb

__all__ = ["inbox_events"]

log = logging.getLogger("otv.gateway.practice_web")


def _event(name: str, data: object, event_id: str = "") -> bytes:
    lines = [f"event: {name}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, ensure_ascii=False)}")
    return ("\n".join(lines) + "\n\n").encode()


async def inbox_events(request: web.Request, desk: Desk, web_page: PracticeWeb, session: Session) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    lock = asyncio.Lock()

    async def send(chunk: bytes) -> None:
        async with lock:
            await response.write(chunk)

    started = asyncio.Event()

    async def pump() -> None:
        watch = desk.watch()  # from the current items on: a reconnect is reconciled by `sync` anyway
        try:
            first = asyncio.ensure_future(anext(watch))
            started.set()
            event: Any = await first
            while True:
                chunk = _item_event(event, web_page, session)
                if chunk:
                    await send(chunk)
                event = await anext(watch)
        except StopAsyncIteration:
            pass
        finally:
            with contextlib.suppress(Exception):
                await watch.aclose()  # type: ignore[attr-defined]

    task = asyncio.create_task(pump())
    try:
        await started.wait()
        await asyncio.sleep(0)  # let the watch subscribe before the inbox is read
        items = sorted(await desk.inbox(), key=lambda item: item.start)
        await send(_event("sync", [{"id": i.appointment_id, "html": web_page.render_item(i, session)} for i in items]))
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=web_page.heartbeat_seconds)
            if done:
                break
            if not await web_page.session_alive(request):
                await send(_event("expired", {}))
                break
            await send(b": ping\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser left, or the gateway is stopping
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.info("inbox stream of %s ended: %s", session.practice, type(task.exception()).__name__)
    return response


def _item_event(event: Any, web_page: PracticeWeb, session: Session) -> bytes:
    """The event for one change; nothing for the desk's own heartbeats (neither item nor removal)."""
    if event.item is not None:
        item = event.item
        return _event("item", {"id": item.appointment_id, "html": web_page.render_item(item, session)}, event.cursor)
    if event.removed_id is not None:
        return _event("removed", {"id": event.removed_id}, event.cursor)
    return b""
