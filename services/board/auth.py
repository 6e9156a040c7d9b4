"""Who may use the board: a configured user list with scrypt password hashes, signed session
cookies, CSRF tokens, and an explicit SSO-proxy mode (a trusted header from trusted addresses).

Users file (TOML, ``INFUSION_MONITOR_BOARD_USERS``)::

    [users.anna]
    name = "Anna K., RN"           # shown on the board and in the audit trail (staff identity)
    password = "scrypt$16384$8$1$<salt hex>$<hash hex>"   # python -m services.board hash-password

Standard library only: ``hashlib.scrypt`` (salted, memory-hard) and HMAC-SHA256 for the cookie
(``<user>.<expires>.<signature>``) and the CSRF token (bound to the cookie, or to the proxy user).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.private import write_private

USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
COOKIE = "im_board"
LOGIN_FAILURES_MAX = 5  # per user name within LOGIN_LOCK_S: further attempts are refused until it passes
LOGIN_LOCK_S = 15 * 60.0


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(bytes.fromhex(digest)), maxmem=2**26)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


@dataclass(frozen=True, slots=True)
class User:
    username: str
    name: str
    password: str = ""  # the scrypt hash ("" in proxy mode: never a password)


def load_users(path: str | Path) -> dict[str, User]:
    """The users file; a bad entry stops the board with the user named (never the hash)."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    users: dict[str, User] = {}
    for username, entry in (data.get("users") or {}).items():
        if not USERNAME.fullmatch(username):
            raise ValueError(f"users.{username}: user names use A-Z a-z 0-9 _ . @ - (64 at most)")
        if not isinstance(entry, dict) or not str(entry.get("password", "")).startswith("scrypt$"):
            raise ValueError(f"users.{username}.password: an scrypt hash is required (python -m services.board hash-password)")
        users[username] = User(username, str(entry.get("name") or username), str(entry["password"]))
    return users


def load_or_create_secret(path: Path) -> bytes:
    """The cookie-signing key: kept in a file (mode 0600) so sessions survive a restart."""
    try:
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    write_private(path, key)
    return key.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Authenticator:
    """Sign-in and identity for every request (``identify``); CSRF tokens for every action."""

    users: dict[str, User]
    secret: bytes
    session_hours: float = 12.0
    cookie_secure: bool = False
    trusted_header: str | None = None  # SSO proxy mode: e.g. "X-Forwarded-User"
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    clock: Callable[[], float] = time.time
    _failures: dict[str, list[float]] = field(default_factory=dict)

    # -- passwords ------------------------------------------------------------------------

    def locked(self, username: str) -> bool:
        recent = [t for t in self._failures.get(username, []) if self.clock() - t < LOGIN_LOCK_S]
        self._failures[username] = recent
        return len(recent) >= LOGIN_FAILURES_MAX

    def check_password(self, username: str, password: str) -> User | None:
        """The user, or None (unknown user, wrong password, or locked after repeated failures)."""
        if self.locked(username):
            return None
        user = self.users.get(username)
        # an unknown user costs the same scrypt as a known one (no user enumeration by timing)
        ok = verify_password(password, user.password if user else _dummy_hash())
        if user is not None and ok:
            self._failures.pop(username, None)
            return user
        self._failures.setdefault(username, []).append(self.clock())
        return None

    # -- cookies --------------------------------------------------------------------------

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def session_cookie(self, user: User) -> str:
        payload = f"{user.username}.{int(self.clock() + self.session_hours * 3600)}"
        return f"{payload}.{self._sign(payload)}"

    def user_from_cookie(self, value: str | None) -> User | None:
        if not value or value.count(".") < 2:
            return None
        payload, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        username, _, expires = payload.rpartition(".")
        try:
            if int(expires) < self.clock():
                return None
        except ValueError:
            return None
        return self.users.get(username)

    # -- requests -------------------------------------------------------------------------

    def from_trusted_proxy(self, client_host: str | None) -> bool:
        if not self.trusted_header or not client_host:
            return False
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        for entry in self.trusted_proxies:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def identify(self, headers: dict[str, str] | object, cookies: dict[str, str], client_host: str | None
                 ) -> tuple[User, str] | None:
        """(user, identity token) for a request, or None: the proxy's header when it comes from a
        trusted proxy (proxy mode), else the signed session cookie. The token binds CSRF tokens."""
        if self.trusted_header:
            if not self.from_trusted_proxy(client_host):
                return None  # proxy mode: nobody reaches the board around the proxy
            value = headers.get(self.trusted_header.lower())  # type: ignore[attr-defined]
            if not value or not USERNAME.fullmatch(value):
                return None
            known = self.users.get(value)
            return (known or User(value, value)), f"proxy:{value}"
        cookie = cookies.get(COOKIE)
        user = self.user_from_cookie(cookie)
        return (user, f"cookie:{cookie}") if user is not None else None

    def csrf_token(self, identity: str) -> str:
        return self._sign(f"csrf\x1f{identity}")[:32]

    def csrf_ok(self, identity: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(identity))  # type: ignore[arg-type]


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_hex(8)))
    return _DUMMY[0]


def users_from_pairs(pairs: Iterable[tuple[str, str, str]]) -> dict[str, User]:
    """(username, display name, password) -> users with fresh hashes (tests, first setup)."""
    return {u: User(u, n, hash_password(p)) for u, n, p in pairs}
