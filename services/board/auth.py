"""Who may use the board: a configured user list with scrypt password hashes, server-side
sessions that sign-out ends, throttled sign-in, CSRF tokens, and an explicit SSO-proxy mode (a
trusted header from configured proxy addresses only).

Users file (TOML, ``INFUSION_MONITOR_BOARD_USERS``, default ``DATA_DIR/board/users.toml``;
``infusion-monitor board add-user NAME`` writes it, ``users.py``)::

    [users.anna]
    name = "Anna K., RN"           # shown on the board and in the audit trail (staff identity)
    password = "scrypt$16384$8$1$<salt hex>$<hash hex>"
    role = "nurse"                 # nurse (default): sees and acknowledges; viewer: sees only
    [users."nurse.k"]              # SSO proxy mode: listed users only; no password needed
    name = "Nurse K."

- **Roles**: ``nurse`` sees the board and acknowledges alerts; ``viewer`` only sees it (a wall
  display signed in all day: nobody passing by can acknowledge from it). A viewer's pages carry
  no Acknowledge button and the server refuses its acknowledgements (403).

- **Sessions** live on the server (``Sessions``): the cookie holds a random 256-bit id; the
  server keeps its SHA-256 with the user and the expiry, in ``DATA_DIR/board/sessions.json``
  (mode 0600, so sign-ins survive a restart). Sign-out deletes it: the cookie is dead at once.
- **Sign-in throttling** (``LoginThrottle``) by source address and by account, with an
  exponential delay instead of a lock-out: after 5 failures from one address its next attempt
  waits 1 s, 2 s, 4 s … up to 15 min; after 5 failures on one account (from anywhere) 1 s, 2 s …
  up to 30 s, so nobody can lock a nurse out for longer than that. A refused attempt is not
  hashed. Success clears both.
- **Hashing off the event loop**: scrypt (~50 ms) runs in one worker thread (it releases the
  GIL), at most ``MAX_PENDING_HASHES`` queued; a flood gets 429 instead of a slower board.
- **SSO proxy mode**: the header is believed only on connections from ``trusted_proxies`` (no
  default: they must be configured), with ``proxy_secret`` when set (the proxy adds
  ``X-Board-Proxy-Secret``: for a proxy on the same host, where any local process could connect),
  and only for users listed in the users file.

Standard library only: ``hashlib.scrypt`` (salted, memory-hard), ``secrets``, HMAC-SHA256 for CSRF
tokens (bound to the session, or to the proxy user).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.addresses import address_in
from ..runtime.private import read_private, write_private

USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
COOKIE = "im_board"
PROXY_SECRET_HEADER = "x-board-proxy-secret"
MAX_PENDING_HASHES = 16  # sign-ins waiting for the hashing thread; more: 429


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


NURSE, VIEWER = "nurse", "viewer"
ROLES = {NURSE: "sees the board and acknowledges alerts", VIEWER: "sees the board only (a wall display)"}


@dataclass(frozen=True, slots=True)
class User:
    username: str
    name: str
    password: str = ""  # the scrypt hash ("": SSO only, never a password sign-in)
    role: str = NURSE

    @property
    def can_acknowledge(self) -> bool:
        return self.role == NURSE


def load_users(path: str | Path) -> dict[str, User]:
    """The users file; a bad entry stops the board with the user named (never the hash). An
    entry without a password can only come through the SSO proxy."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    users: dict[str, User] = {}
    for username, entry in (data.get("users") or {}).items():
        if not USERNAME.fullmatch(username):
            raise ValueError(f"users.{username}: user names use A-Z a-z 0-9 _ . @ - (64 at most)")
        if not isinstance(entry, dict):
            raise ValueError(f"users.{username}: a table with name and password")
        password = entry.get("password")
        if password is not None and not str(password).startswith("scrypt$"):
            raise ValueError(f"users.{username}.password: an scrypt hash is required "
                             "(infusion-monitor board add-user NAME writes one)")
        role = entry.get("role", NURSE)
        if role not in ROLES:
            raise ValueError(f"users.{username}.role: one of {', '.join(ROLES)}")
        users[username] = User(username, str(entry.get("name") or username), str(password or ""), role)
    return users


def load_or_create_secret(path: Path) -> bytes:
    """The CSRF signing key: kept in a file (mode 0600) so pages stay valid across a restart."""
    try:
        data = read_private(path).strip().encode()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    write_private(path, key)
    return key.encode()


# -- sessions -------------------------------------------------------------------------------------

@dataclass
class Sessions:
    """Server-side sessions: SHA-256 of the cookie's random id -> (user name, expiry). Persisted
    to ``path`` (0600) on every change when given; bounded to ``max_sessions``."""

    hours: float = 12.0
    path: Path | None = None
    clock: Callable[[], float] = time.time
    max_sessions: int = 10_000
    _by_digest: dict[str, tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            data = json.loads(read_private(self.path) or "{}")
            now = self.clock()
            self._by_digest = {k: (u, e) for k, (u, e) in data.items() if e > now}

    @staticmethod
    def _digest(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def start(self, username: str) -> str:
        """A new session for ``username``; returns the cookie value (never stored as such)."""
        session_id = secrets.token_urlsafe(32)
        self._prune()
        self._by_digest[self._digest(session_id)] = (username, self.clock() + self.hours * 3600)
        self._save()
        return session_id

    def user(self, session_id: str | None) -> str | None:
        if not session_id:
            return None
        entry = self._by_digest.get(self._digest(session_id))
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def end(self, session_id: str | None) -> bool:
        if session_id and self._by_digest.pop(self._digest(session_id), None) is not None:
            self._save()
            return True
        return False

    def _prune(self) -> None:
        now = self.clock()
        self._by_digest = {k: v for k, v in self._by_digest.items() if v[1] > now}
        while len(self._by_digest) >= self.max_sessions:  # the oldest sign-in goes first
            self._by_digest.pop(min(self._by_digest, key=lambda k: self._by_digest[k][1]))

    def _save(self) -> None:
        if self.path is not None:
            write_private(self.path, json.dumps(self._by_digest))


# -- sign-in throttling (pure: the clock is given) -----------------------------------------------

@dataclass(frozen=True)
class Backoff:
    free: int  # failures allowed before any delay
    first_s: float
    max_s: float
    forget_s: float = 15 * 60.0  # failures older than this no longer count

    def delay(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.max_s, self.first_s * 2 ** (failures - self.free))


BY_SOURCE = Backoff(free=5, first_s=1.0, max_s=15 * 60.0)
BY_ACCOUNT = Backoff(free=5, first_s=1.0, max_s=30.0)


@dataclass
class LoginThrottle:
    """Failures per source address and per account; an attempt before its delay has passed is
    refused (and never hashed). Bounded memory: the least recently failing keys are forgotten."""

    by_source: Backoff = BY_SOURCE
    by_account: Backoff = BY_ACCOUNT
    max_keys: int = 10_000
    _sources: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    _accounts: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)

    def wait(self, source: str, account: str, now: float) -> float:
        """Seconds until an attempt from ``source`` on ``account`` is allowed (0: now)."""
        return max(self._wait(self._sources, source, self.by_source, now),
                   self._wait(self._accounts, account, self.by_account, now))

    def failed(self, source: str, account: str, now: float) -> None:
        self._count(self._sources, source, self.by_source, now)
        self._count(self._accounts, account, self.by_account, now)

    def succeeded(self, source: str, account: str) -> None:
        self._sources.pop(source, None)
        self._accounts.pop(account, None)

    @staticmethod
    def _wait(table: OrderedDict[str, tuple[int, float]], key: str, policy: Backoff, now: float) -> float:
        entry = table.get(key)
        if entry is None or now - entry[1] > policy.forget_s:
            return 0.0
        failures, last = entry
        return max(0.0, last + policy.delay(failures) - now)

    def _count(self, table: OrderedDict[str, tuple[int, float]], key: str, policy: Backoff, now: float) -> None:
        failures, last = table.pop(key, (0, now))
        if now - last > policy.forget_s:
            failures = 0
        table[key] = (failures + 1, now)
        while len(table) > self.max_keys:
            table.popitem(last=False)


# -- the authenticator ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SignIn:
    user: User | None = None
    session_id: str | None = None
    retry_after: float = 0.0  # > 0: throttled or busy, try again then

    @property
    def ok(self) -> bool:
        return self.user is not None


_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="board-scrypt")


@dataclass
class Authenticator:
    """Sign-in and identity for every request (``identify``); CSRF tokens for every action."""

    users: dict[str, User]
    secret: bytes
    session_hours: float = 12.0
    cookie_secure: bool = True
    trusted_header: str | None = None  # SSO proxy mode: e.g. "X-Forwarded-User"
    trusted_proxies: tuple[str, ...] = ()
    proxy_secret: str | None = None
    clock: Callable[[], float] = time.time
    sessions: Sessions | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    reload: Callable[[], dict[str, User]] | None = None  # the users file as it is now (users.UsersFile)
    _pending: int = 0

    def __post_init__(self) -> None:
        if self.sessions is None:
            self.sessions = Sessions(self.session_hours, clock=self.clock)

    # -- passwords ------------------------------------------------------------------------

    async def sign_in(self, username: str, password: str, source: str) -> SignIn:
        """Check the password off the event loop, unless throttled or too many are waiting."""
        now = self.clock()
        wait = self.throttle.wait(source, username, now)
        if wait > 0:
            return SignIn(retry_after=wait)
        if self._pending >= MAX_PENDING_HASHES:
            return SignIn(retry_after=1.0)
        user = self.current_users().get(username)
        # an unknown user costs the same scrypt as a known one (no user enumeration by timing)
        stored = user.password if user is not None and user.password else _dummy_hash()
        self._pending += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(_HASHER, verify_password, password, stored)
        finally:
            self._pending -= 1
        if user is None or not user.password or not ok:
            self.throttle.failed(source, username, self.clock())
            return SignIn()
        self.throttle.succeeded(source, username)
        assert self.sessions is not None
        return SignIn(user, self.sessions.start(user.username))

    def current_users(self) -> dict[str, User]:
        """The users, re-read when the users file changed (a user added, removed, a new password)."""
        if self.reload is not None:
            self.users = self.reload()
        return self.users

    def sign_out(self, session_id: str | None) -> bool:
        assert self.sessions is not None
        return self.sessions.end(session_id)

    # -- requests -------------------------------------------------------------------------

    def from_trusted_proxy(self, client_host: str | None) -> bool:
        return address_in(client_host, self.trusted_proxies)

    def source(self, headers: Any, client_host: str | None) -> str:
        """The client's address: the peer, or the last hop a trusted proxy names."""
        forwarded = headers.get("x-forwarded-for") if self.from_trusted_proxy(client_host) else None
        if forwarded:
            return forwarded.split(",")[-1].strip()[:64]
        return client_host or "-"

    def identify(self, headers: Any, cookies: dict[str, str], client_host: str | None) -> tuple[User, str] | None:
        """(user, identity token) for a request, or None: in proxy mode the proxy's header (from a
        trusted proxy, with its secret when configured, naming a listed user), else the session
        cookie. The token binds CSRF tokens."""
        if self.trusted_header:
            if not self.from_trusted_proxy(client_host):
                return None  # proxy mode: nobody reaches the board around the proxy
            if self.proxy_secret and not hmac.compare_digest(
                    headers.get(PROXY_SECRET_HEADER, "").encode(), self.proxy_secret.encode()):
                return None
            value = headers.get(self.trusted_header.lower())
            known = self.current_users().get(value) if value and USERNAME.fullmatch(value) else None
            return (known, f"proxy:{value}") if known is not None else None
        cookie = cookies.get(COOKIE)
        assert self.sessions is not None
        username = self.sessions.user(cookie)
        user = self.current_users().get(username) if username else None
        if user is None:
            return None
        return user, f"session:{hashlib.sha256(cookie.encode()).hexdigest()}"  # type: ignore[union-attr]

    def csrf_token(self, identity: str) -> str:
        return hmac.new(self.secret, f"csrf\x1f{identity}".encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_ok(self, identity: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(identity))  # type: ignore[arg-type]


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_hex(8)))
    return _DUMMY[0]


def users_from_pairs(pairs: Iterable[tuple[str, str, str]], role: str = NURSE) -> dict[str, User]:
    """(username, display name, password) -> users with fresh hashes (tests, first setup)."""
    return {u: User(u, n, hash_password(p), role) for u, n, p in pairs}
