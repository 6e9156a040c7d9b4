"""The board's web app (Starlette + Jinja2; served by uvicorn inside the board service): the
routes, composed from ``signin.py``, ``pages.py`` and ``acknowledge.py`` over the shared
``site.py``, behind ``security.py``.

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

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .acknowledge import Acknowledge
from .auth import Authenticator
from .hub import BoardHub
from .pages import Pages
from .security import LOOPBACK_HOSTS, SecurityHeaders
from .signin import SignIn
from .site import HERE, Audit, Publish, Site


def board_app(hub: BoardHub, auth: Authenticator, publish: Publish, audit: Audit, *,
              refresh_s: float = 5.0, keepalive_s: float = 15.0,
              allowed_hosts: frozenset[str] = LOOPBACK_HOSTS | {"board"}) -> Starlette:
    """The app. ``publish`` sends an acknowledgement to NATS; ``audit`` records an action;
    ``refresh_s``: the longest the live board waits for a change; ``keepalive_s``: a comment on a
    quiet event stream; ``allowed_hosts``: the names the board is reached by (``*``: any)."""
    site = Site(hub, auth, publish, audit)
    sign_in, pages = SignIn(site), Pages(site, refresh_s, keepalive_s)
    return Starlette(
        routes=[
            Route("/", pages.board),
            Route("/login", sign_in.page, methods=["GET"]),
            Route("/login", sign_in.sign_in, methods=["POST"]),
            Route("/logout", sign_in.sign_out, methods=["POST"]),
            Route("/board/fragment", pages.fragment),
            Route("/events", pages.events),
            Route("/sessions/{patient}/{session}", pages.timeline),
            Route("/day", pages.day),
            Route("/alerts/{alert_id}", pages.alert_link),
            Route("/alerts/{alert_id}/ack", Acknowledge(site).post, methods=["POST"]),
            Route("/healthz", pages.health),
            Route("/whoami", pages.whoami),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders, allowed_hosts=allowed_hosts)],
    )
