"""The board's web app (Starlette + Jinja2; served by uvicorn inside the board service).

| route | what |
|---|---|
| ``GET /login``, ``POST /login``, ``POST /logout`` | sign in with the users file (not in SSO proxy mode); sign-out ends the server-side session |
| ``GET /`` | the board: every open session as a tile, grouped by site |
| ``GET /board/fragment`` | the board's tiles as an HTML fragment (what the page swaps in) |
| ``GET /events`` | server-sent events: ``board`` with the fragment at connect and after every change |
| ``GET /sessions/{patient}/{session}`` | a session's timeline (audited) |
| ``GET /alerts/{alert_id}`` | the alert's session timeline (the link pagers carry back) |
| ``POST /alerts/{alert_id}/ack`` | acknowledge (CSRF token; role ``nurse``, a ``viewer`` gets 403; publishes ``alert.acknowledged`` ``via: board``; audited) |
| ``GET /day?date=YYYY-MM-DD`` | the day view: sessions, outcomes and alert counts per site |
| ``GET /healthz`` | liveness, no sign-in |
| ``/static/…`` | the page's CSS and script: the product serves every asset itself (no CDN) |

Every request must name an allowed ``Host`` (403 otherwise: DNS rebinding); every response carries
a strict Content-Security-Policy (``'self'`` only). A POST from another origin is refused;
actions need the CSRF token bound to the signed-in identity; sign-in is throttled (429).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schemas.base import format_time
from schemas.outbound import AlertAcknowledged
from schemas.vocab import AckVia

from ..engine.ids import stable_id
from .auth import COOKIE, Authenticator, User
from .hub import BoardHub
from .labels import SEVERITIES, format_span

HERE = Path(__file__).resolve().parent
MAX_FORM = 16 * 1024
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

Publish = Callable[[AlertAcknowledged], Awaitable[None]]
Audit = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (action, user, details)


def _environment(hub: BoardHub) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    tz = hub.config.tz
    env.filters["hhmm"] = lambda d: d.astimezone(tz).strftime("%H:%M") if d else "—"
    env.filters["hhmmss"] = lambda d: d.astimezone(tz).strftime("%H:%M:%S") if d else "—"
    env.filters["iso"] = lambda d: format_time(d) if d else ""
    env.filters["span"] = format_span
    env.globals["SEVERITIES"] = SEVERITIES
    return env


def host_name(header: str) -> str:
    """The host of a ``Host`` header, lower case, without the port (``[::1]:8090`` -> ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _SecurityHeaders:
    """Plain ASGI (a BaseHTTPMiddleware would buffer the event stream): the allowed-hosts check on
    every request, headers on every response."""

    def __init__(self, app: Any, allowed_hosts: frozenset[str] = frozenset()) -> None:
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        if "*" not in self.allowed_hosts and host_name(host) not in self.allowed_hosts:
            await PlainTextResponse("host not allowed", status_code=403)(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def board_app(hub: BoardHub, auth: Authenticator, publish: Publish, audit: Audit, *,
              refresh_s: float = 5.0, keepalive_s: float = 15.0,
              allowed_hosts: frozenset[str] = LOOPBACK_HOSTS | {"board"}) -> Starlette:
    """The app. ``publish`` sends an acknowledgement to NATS; ``audit`` records an action;
    ``allowed_hosts``: the names the board is reached by (``*``: any)."""
    env = _environment(hub)

    def render(name: str, request: Request | None, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status)

    def identify(request: Request) -> tuple[User, str] | None:
        client = request.client.host if request.client else None
        return auth.identify(request.headers, request.cookies, client)

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return origin != "null"
        return urlsplit(origin).netloc == request.headers.get("host", "")

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM:
            return {}
        return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}

    def page_context(user: User, identity: str, **extra: Any) -> dict[str, Any]:
        return {"user": user, "csrf": auth.csrf_token(identity), "proxy_mode": bool(auth.trusted_header),
                "clock_mode": hub.clock_mode, "can_acknowledge": user.can_acknowledge, **extra}

    def unauthorised(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", "") and request.method == "GET":
            if auth.trusted_header:
                return PlainTextResponse("sign-in is through the site's SSO proxy", status_code=401)
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": "sign in first"}, status_code=401)

    caches: dict[bool, dict[str, Any]] = {True: {"key": None, "html": ""}, False: {"key": None, "html": ""}}

    def board_fragment(user: User) -> str:
        """Rendered once per (version, second) for all pages of a kind (with Acknowledge buttons or,
        for viewers, without); each page's CSRF token goes in later."""
        now = hub.now()
        key = (hub.version, hub.ready, int(now.timestamp()))
        cache = caches[user.can_acknowledge]
        if cache["key"] != key:
            cache["key"] = key
            cache["html"] = env.get_template("_board.html").render(
                board=hub.board(), version=hub.version, ready=hub.ready, clock_mode=hub.clock_mode, csrf="{{csrf}}",
                can_acknowledge=user.can_acknowledge)
        return cache["html"]

    # -- sign-in ----------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        if auth.trusted_header:
            return PlainTextResponse("sign-in is through the site's SSO proxy", status_code=404)
        return render("login.html", request, error=None, username="")

    async def login(request: Request) -> Response:
        if auth.trusted_header:
            return PlainTextResponse("sign-in is through the site's SSO proxy", status_code=404)
        if not same_origin(request):
            return PlainTextResponse("cross-origin request refused", status_code=403)
        data = await form(request)
        username, password = data.get("username", "").strip()[:64], data.get("password", "")
        client = request.client.host if request.client else None
        result = await auth.sign_in(username, password, auth.source(request.headers, client))
        if result.retry_after > 0:
            wait = max(1, math.ceil(result.retry_after))
            await audit("login_throttled", username or "-", {"retry_after_s": wait})
            response = render("login.html", request, status=429, username=username,
                              error=f"Too many attempts: try again in {wait} s.")
            response.headers["retry-after"] = str(wait)
            return response
        if not result.ok:
            await audit("login_failed", username or "-", {})
            return render("login.html", request, status=401, username=username,
                          error="Sign-in failed: check the user name and password.")
        assert result.user is not None and result.session_id is not None
        await audit("login", result.user.username, {})
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, result.session_id, max_age=int(auth.session_hours * 3600),
                            httponly=True, samesite="strict", secure=auth.cookie_secure, path="/")
        return response

    async def logout(request: Request) -> Response:
        who = identify(request)
        data = await form(request)
        if who is not None and auth.csrf_ok(who[1], data.get("csrf")):
            auth.sign_out(request.cookies.get(COOKIE))  # the session ends on the server: the cookie is dead
            await audit("logout", who[0].username, {})
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", secure=auth.cookie_secure, httponly=True, samesite="strict")
        return response

    # -- pages ------------------------------------------------------------------------------

    async def board_page(request: Request) -> Response:
        who = identify(request)
        if who is None:
            return unauthorised(request)
        user, identity = who
        return render("board.html", request, **page_context(user, identity, fragment=_with_csrf(board_fragment(user), auth.csrf_token(identity)), page="board"))

    async def fragment(request: Request) -> Response:
        who = identify(request)
        if who is None:
            return unauthorised(request)
        return HTMLResponse(_with_csrf(board_fragment(who[0]), auth.csrf_token(who[1])))

    async def events(request: Request) -> Response:
        who = identify(request)
        if who is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        token, viewer = auth.csrf_token(who[1]), who[0]

        async def stream() -> AsyncIterator[str]:
            yield "retry: 1500\n\n"
            version, sent, last_write = -1, "", asyncio.get_running_loop().time()
            while True:
                html = _with_csrf(board_fragment(viewer), token)
                version = hub.version
                if html != sent:
                    sent = html
                    data = "".join(f"data: {line}\n" for line in html.splitlines())
                    yield f"event: board\nid: {version}\n{data}\n"
                    last_write = asyncio.get_running_loop().time()
                elif asyncio.get_running_loop().time() - last_write >= keepalive_s:
                    yield ": keepalive\n\n"
                    last_write = asyncio.get_running_loop().time()
                if hub.closing or await request.is_disconnected():
                    return
                await hub.wait_change(version, refresh_s)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def timeline(request: Request) -> Response:
        who = identify(request)
        if who is None:
            return unauthorised(request)
        user, identity = who
        patient_id, session_id = request.path_params["patient"], request.path_params["session"]
        view = hub.timeline(patient_id, session_id)
        if view is None:
            return render("notfound.html", request, status=404, **page_context(user, identity, page="timeline",
                                                                              what="No such session on the board."))
        await audit("timeline_open", user.username, {"patient_id": patient_id, "session_id": session_id})
        return render("timeline.html", request, **page_context(user, identity, view=view, page="timeline",
                                                                   now=hub.now()))

    async def day(request: Request) -> Response:
        who = identify(request)
        if who is None:
            return unauthorised(request)
        user, identity = who
        chosen: date | None = None
        if text := request.query_params.get("date"):
            try:
                chosen = date.fromisoformat(text)
            except ValueError:
                chosen = None
        view = hub.day(chosen)
        await audit("day_view", user.username, {"date": view.day.isoformat()})
        return render("day.html", request, **page_context(user, identity, view=view, page="day", now=hub.now()))

    # -- actions ----------------------------------------------------------------------------

    async def acknowledge(request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        who = identify(request)
        if who is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        user, identity = who
        if not same_origin(request):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        data = await form(request)
        if not auth.csrf_ok(identity, request.headers.get("x-csrf-token") or data.get("csrf")):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        if not user.can_acknowledge:
            await audit("acknowledge_refused", user.username, {"alert_id": request.path_params["alert_id"],
                                                               "role": user.role})
            return JSONResponse({"error": f"the role {user.role} may not acknowledge"}, status_code=403)
        alert_id = request.path_params["alert_id"]
        found = hub.locate(alert_id)
        if found is None:
            return JSONResponse({"error": "unknown alert"}, status_code=404)
        patient_id, alert = found
        details = {"patient_id": patient_id, "session_id": alert.session_id, "alert_id": alert_id, "rule": alert.rule}
        if alert.acknowledged_at is not None or alert.resolved_at is not None:
            await audit("acknowledge_noop", user.username, details)
            result: dict[str, Any] = {"alert_id": alert_id, "already": True, "by": alert.acknowledged_by}
            return JSONResponse(result) if wants_json else RedirectResponse(_back(request), status_code=303)
        note = (data.get("note") or "").strip()[:500] or None
        try:
            event = AlertAcknowledged(
                type="alert.acknowledged",
                event_id=stable_id("ev", "alert.acknowledged", alert_id, AckVia.BOARD.value, user.username),
                occurred_at=hub.now(), patient_id=patient_id, alert_id=alert_id, by=user.name,
                via=AckVia.BOARD, note=note,
            )
        except ValidationError:
            return JSONResponse({"error": "acknowledgement not valid"}, status_code=400)
        await publish(event)
        await audit("acknowledge", user.username, {**details, "event_id": event.event_id})
        if wants_json:
            return JSONResponse({"alert_id": alert_id, "event_id": event.event_id}, status_code=202)
        return RedirectResponse(_back(request), status_code=303)

    async def alert_link(request: Request) -> Response:
        """Where a pager's link leads: the alert's session timeline (sign-in first)."""
        who = identify(request)
        if who is None:
            return unauthorised(request)
        found = hub.locate(request.path_params["alert_id"])
        if found is None or found[1].session_id is None:
            return render("notfound.html", request, status=404, **page_context(*who, page="timeline",
                                                                              what="No such alert on the board."))
        patient_id, alert = found
        return RedirectResponse(f"/sessions/{quote(patient_id, safe='')}/{quote(alert.session_id, safe='')}",
                                status_code=303)

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True, "ready": hub.ready, "version": hub.version})

    async def whoami(request: Request) -> Response:
        who = identify(request)
        if who is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return JSONResponse({"user": who[0].username})

    return Starlette(
        routes=[
            Route("/", board_page),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/board/fragment", fragment),
            Route("/events", events),
            Route("/sessions/{patient}/{session}", timeline),
            Route("/day", day),
            Route("/alerts/{alert_id}", alert_link),
            Route("/alerts/{alert_id}/ack", acknowledge, methods=["POST"]),
            Route("/healthz", health),
            Route("/whoami", whoami),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(_SecurityHeaders, allowed_hosts=allowed_hosts)],
    )


def _with_csrf(html: str, token: str) -> str:
    """The fragment is rendered once per version for every page; each page's token goes in here."""
    return html.replace("{{csrf}}", token)


def _back(request: Request) -> str:
    """Where a form post returns to: the page it came from (same origin only), else the board."""
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.headers.get("host", "") and parts.path.startswith("/"):
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"


def sse_board_html(payload: str) -> str:
    """Test helper: the HTML carried by one ``event: board`` message."""
    return "\n".join(line[6:] for line in payload.splitlines() if line.startswith("data: "))

