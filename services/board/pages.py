"""The board's pages: the board itself and its live fragment (server-sent events), a session's
timeline, the day view, the link a pager carries back, and the small JSON endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from .site import Site


class Pages:
    def __init__(self, site: Site, refresh_s: float, keepalive_s: float) -> None:
        self.site, self.refresh_s, self.keepalive_s = site, refresh_s, keepalive_s

    async def board(self, request: Request) -> Response:
        """``GET /``"""
        site = self.site
        if (who := site.identify(request)) is None:
            return site.unauthorised(request)
        user, identity = who
        fragment = site.board_fragment(user, site.auth.csrf_token(identity))
        return site.render("board.html", **site.page_context(user, identity, fragment=fragment, page="board"))

    async def fragment(self, request: Request) -> Response:
        """``GET /board/fragment``"""
        if (who := self.site.identify(request)) is None:
            return self.site.unauthorised(request)
        return HTMLResponse(self.site.board_fragment(who[0], self.site.auth.csrf_token(who[1])))

    async def events(self, request: Request) -> Response:
        """``GET /events``: the fragment at connect and after every change, a keep-alive comment
        when quiet."""
        site, hub = self.site, self.site.hub
        if (who := site.identify(request)) is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        viewer, token = who[0], site.auth.csrf_token(who[1])

        async def stream() -> AsyncIterator[str]:
            loop = asyncio.get_running_loop()
            yield "retry: 1500\n\n"
            sent, last_write = "", loop.time()
            while True:
                html = site.board_fragment(viewer, token)
                version = hub.version
                if html != sent:
                    sent = html
                    data = "".join(f"data: {line}\n" for line in html.splitlines())
                    yield f"event: board\nid: {version}\n{data}\n"
                    last_write = loop.time()
                elif loop.time() - last_write >= self.keepalive_s:
                    yield ": keepalive\n\n"
                    last_write = loop.time()
                if hub.closing or await request.is_disconnected():
                    return
                await hub.wait_change(version, self.refresh_s)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def timeline(self, request: Request) -> Response:
        """``GET /sessions/{patient}/{session}`` (audited)"""
        site = self.site
        if (who := site.identify(request)) is None:
            return site.unauthorised(request)
        user, identity = who
        patient_id, session_id = request.path_params["patient"], request.path_params["session"]
        view = site.hub.timeline(patient_id, session_id)
        if view is None:
            return site.render("notfound.html", status=404,
                               **site.page_context(user, identity, page="timeline", what="No such session on the board."))
        await site.audit("timeline_open", user.username, {"patient_id": patient_id, "session_id": session_id})
        return site.render("timeline.html", **site.page_context(user, identity, view=view, page="timeline",
                                                                 now=site.hub.now()))

    async def day(self, request: Request) -> Response:
        """``GET /day?date=YYYY-MM-DD`` (audited; a bad date is today)"""
        site = self.site
        if (who := site.identify(request)) is None:
            return site.unauthorised(request)
        user, identity = who
        chosen: date | None = None
        if text := request.query_params.get("date"):
            try:
                chosen = date.fromisoformat(text)
            except ValueError:
                chosen = None
        view = site.hub.day(chosen)
        await site.audit("day_view", user.username, {"date": view.day.isoformat()})
        return site.render("day.html", **site.page_context(user, identity, view=view, page="day", now=site.hub.now()))

    async def alert_link(self, request: Request) -> Response:
        """``GET /alerts/{alert_id}``: where a pager's link leads, the alert's session timeline."""
        site = self.site
        if (who := site.identify(request)) is None:
            return site.unauthorised(request)
        found = site.hub.locate(request.path_params["alert_id"])
        if found is None or found[1].session_id is None:
            return site.render("notfound.html", status=404,
                               **site.page_context(*who, page="timeline", what="No such alert on the board."))
        patient_id, alert = found
        return RedirectResponse(f"/sessions/{quote(patient_id, safe='')}/{quote(alert.session_id, safe='')}",
                                status_code=303)

    async def health(self, _: Request) -> Response:
        """``GET /healthz`` (no sign-in)"""
        hub = self.site.hub
        return JSONResponse({"ok": True, "ready": hub.ready, "version": hub.version})

    async def whoami(self, request: Request) -> Response:
        if (who := self.site.identify(request)) is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return JSONResponse({"user": who[0].username})
