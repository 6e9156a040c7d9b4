"""What every board page and action shares: who is asking, whether the request is same-origin,
the form body, rendering, and the board fragment rendered once for all pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.outbound import AlertAcknowledged

from .auth import Authenticator, User
from .hub import BoardHub
from .labels import SEVERITIES, format_span

HERE = Path(__file__).resolve().parent
MAX_FORM = 16 * 1024
CSRF_SLOT = "{{csrf}}"  # where each page's token goes into the shared fragment

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


class Site:
    """The board's hub, authenticator, publisher and audit, and the helpers the routes share."""

    def __init__(self, hub: BoardHub, auth: Authenticator, publish: Publish, audit: Audit) -> None:
        self.hub, self.auth, self.publish, self.audit = hub, auth, publish, audit
        self.env = _environment(hub)
        self._fragments: dict[bool, tuple[Any, str]] = {}  # can acknowledge: (version, ready, second), html

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    def identify(self, request: Request) -> tuple[User, str] | None:
        """The signed-in user and the identity their CSRF tokens are bound to, or ``None``."""
        client = request.client.host if request.client else None
        return self.auth.identify(request.headers, request.cookies, client)

    def page_context(self, user: User, identity: str, **extra: Any) -> dict[str, Any]:
        return {"user": user, "csrf": self.auth.csrf_token(identity), "proxy_mode": bool(self.auth.trusted_header),
                "clock_mode": self.hub.clock_mode, "can_acknowledge": user.can_acknowledge, **extra}

    def unauthorised(self, request: Request) -> Response:
        if "text/html" in request.headers.get("accept", "") and request.method == "GET":
            if self.auth.trusted_header:
                return PlainTextResponse("sign-in is through the site's SSO proxy", status_code=401)
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": "sign in first"}, status_code=401)

    def board_fragment(self, user: User, csrf: str) -> str:
        """The board's tiles, rendered once per (version, second) for all pages of a kind (with
        Acknowledge buttons, or for viewers without); each page's CSRF token goes in afterwards."""
        hub = self.hub
        key = (hub.version, hub.ready, int(hub.now().timestamp()))
        kind = user.can_acknowledge
        if self._fragments.get(kind, (None, ""))[0] != key:
            html = self.env.get_template("_board.html").render(
                board=hub.board(), version=hub.version, ready=hub.ready, clock_mode=hub.clock_mode, csrf=CSRF_SLOT,
                can_acknowledge=kind)
            self._fragments[kind] = (key, html)
        return self._fragments[kind][1].replace(CSRF_SLOT, csrf)


def same_origin(request: Request) -> bool:
    """A request without ``Origin``/``Referer`` passes (a plain form post from an old browser);
    ``null`` or another host does not."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin != "null"
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def form(request: Request) -> dict[str, str]:
    """The urlencoded form, first value per field; empty when larger than ``MAX_FORM``."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


def back(request: Request) -> str:
    """Where a form post returns to: the page it came from (same origin only), else the board."""
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.headers.get("host", "") and parts.path.startswith("/"):
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"
