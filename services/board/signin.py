"""Sign-in and sign-out with the users file (not in SSO proxy mode, where the proxy signs in):
throttled, audited, a server-side session in a strict, HTTP-only cookie."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from .auth import COOKIE
from .site import Site, form, same_origin

SSO_ONLY = "sign-in is through the site's SSO proxy"


class SignIn:
    def __init__(self, site: Site) -> None:
        self.site = site

    async def page(self, request: Request) -> Response:
        """``GET /login``"""
        if self.site.auth.trusted_header:
            return PlainTextResponse(SSO_ONLY, status_code=404)
        return self.site.render("login.html", error=None, username="")

    async def sign_in(self, request: Request) -> Response:
        """``POST /login``"""
        site, auth = self.site, self.site.auth
        if auth.trusted_header:
            return PlainTextResponse(SSO_ONLY, status_code=404)
        if not same_origin(request):
            return PlainTextResponse("cross-origin request refused", status_code=403)
        data = await form(request)
        username, password = data.get("username", "").strip()[:64], data.get("password", "")
        client = request.client.host if request.client else None
        result = await auth.sign_in(username, password, auth.source(request.headers, client))
        if result.retry_after > 0:
            wait = max(1, math.ceil(result.retry_after))
            await site.audit("login_throttled", username or "-", {"retry_after_s": wait})
            response = site.render("login.html", status=429, username=username,
                                   error=f"Too many attempts: try again in {wait} s.")
            response.headers["retry-after"] = str(wait)
            return response
        if not result.ok:
            await site.audit("login_failed", username or "-", {})
            return site.render("login.html", status=401, username=username,
                               error="Sign-in failed: check the user name and password.")
        assert result.user is not None and result.session_id is not None
        await site.audit("login", result.user.username, {})
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, result.session_id, max_age=int(auth.session_hours * 3600),
                            httponly=True, samesite="strict", secure=auth.cookie_secure, path="/")
        return response

    async def sign_out(self, request: Request) -> Response:
        """``POST /logout``: the session ends on the server, so the cookie is dead wherever it is."""
        site, auth = self.site, self.site.auth
        who = site.identify(request)
        data = await form(request)
        if who is not None and auth.csrf_ok(who[1], data.get("csrf")):
            auth.sign_out(request.cookies.get(COOKIE))
            await site.audit("logout", who[0].username, {})
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", secure=auth.cookie_secure, httponly=True, samesite="strict")
        return response
