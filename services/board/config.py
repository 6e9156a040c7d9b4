"""The board's settings (environment variables; ``docs/board.md``) and the CLI options for them.

| variable | meaning | default |
|---|---|---|
| ``INFUSION_MONITOR_BOARD_BIND`` | host:port of the web server (``off``: none) | ``127.0.0.1:8090`` |
| ``INFUSION_MONITOR_BOARD_USERS`` | users file (TOML, scrypt hashes; ``infusion-monitor board add-user`` writes it) | ``DATA_DIR/board/users.toml`` |
| ``INFUSION_MONITOR_BOARD_SECRET`` | CSRF signing key | a random key kept in ``DATA_DIR/board/secret`` |
| ``INFUSION_MONITOR_BOARD_ALLOWED_HOSTS`` | host names the board answers to (``Host`` header; ``*``: any) | ``localhost,127.0.0.1,[::1]`` and the bind host |
| ``INFUSION_MONITOR_BOARD_TRUSTED_HEADER`` | SSO proxy mode: the header naming the signed-in user | unset (off) |
| ``INFUSION_MONITOR_BOARD_TRUSTED_PROXIES`` | comma-separated addresses/networks the header is accepted from (required in proxy mode) | none |
| ``INFUSION_MONITOR_BOARD_PROXY_SECRET`` | a value the proxy sends as ``X-Board-Proxy-Secret`` (for a proxy on the same host) | unset |
| ``INFUSION_MONITOR_BOARD_COOKIE_SECURE`` | mark the session cookie ``Secure`` (``false`` only for plain HTTP off loopback: insecure) | ``true`` |
| ``INFUSION_MONITOR_BOARD_TLS_CERT`` / ``_KEY`` | serve HTTPS with this certificate and key | unset (HTTP) |
| ``INFUSION_MONITOR_BOARD_SESSION_HOURS`` | how long a sign-in lasts | ``12`` |
| ``INFUSION_MONITOR_BOARD_LOOKBACK_HOURS`` | history read from the streams at start | ``24`` |
| ``INFUSION_MONITOR_BOARD_VITALS_WARNING_MINUTES`` | "vitals due" shows this long before M1 would fire | ``5`` |
| ``INFUSION_MONITOR_BOARD_CLOSED_TILE_MINUTES`` | a closed session's tile stays this long | ``30`` |
| ``INFUSION_MONITOR_BOARD_CLOCK`` | ``wall`` (live) or ``event`` (the latest event time: replays, the demo) | ``wall`` |
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..runtime.tls import ServerTls
from .view import ViewOptions

DEFAULT_BIND = "127.0.0.1:8090"
USERS_ENV = "INFUSION_MONITOR_BOARD_USERS"


def users_path(data_dir: Path, env: dict[str, str] | None = None) -> Path:
    """The users file: ``INFUSION_MONITOR_BOARD_USERS``, else ``DATA_DIR/board/users.toml`` (what
    the board under ``up`` reads and ``board add-user`` writes)."""
    configured = (os.environ if env is None else env).get(USERS_ENV)
    return Path(configured) if configured else data_dir / "board" / "users.toml"


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class BoardConfig:
    bind: str | None = DEFAULT_BIND
    users_path: str | None = None
    secret: str | None = None
    secret_path: Path = Path("var/board/secret")
    trusted_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    proxy_secret: str | None = field(default=None, repr=False)
    allowed_hosts: frozenset[str] = frozenset()  # empty: loopback names and the bind host
    cookie_secure: bool = True
    tls: ServerTls | None = None
    session_hours: float = 12.0
    lookback_hours: float = 24.0
    clock: str = "wall"
    view: ViewOptions = field(default_factory=ViewOptions)
    sse_refresh_s: float = 5.0  # the server re-renders at least this often (phase changes, vitals due)
    sse_keepalive_s: float = 15.0

    @classmethod
    def load(cls, env: dict[str, str] | None = None, data_dir: Path | None = None) -> BoardConfig:
        env = dict(os.environ if env is None else env)
        bind = env.get("INFUSION_MONITOR_BOARD_BIND", DEFAULT_BIND)
        data = data_dir or Path(env.get("INFUSION_MONITOR_DATA_DIR", "var"))
        proxies = env.get("INFUSION_MONITOR_BOARD_TRUSTED_PROXIES", "")
        hosts = env.get("INFUSION_MONITOR_BOARD_ALLOWED_HOSTS", "")
        secure = env.get("INFUSION_MONITOR_BOARD_COOKIE_SECURE")
        return cls(
            bind=None if bind.lower() in ("", "off", "none") else bind,
            users_path=str(users_path(data, env)),
            secret=env.get("INFUSION_MONITOR_BOARD_SECRET") or None,
            secret_path=data / "board" / "secret",
            trusted_header=env.get("INFUSION_MONITOR_BOARD_TRUSTED_HEADER") or None,
            trusted_proxies=tuple(p.strip() for p in proxies.split(",") if p.strip()),
            proxy_secret=env.get("INFUSION_MONITOR_BOARD_PROXY_SECRET") or None,
            allowed_hosts=frozenset(h.strip().lower() for h in hosts.split(",") if h.strip()),
            cookie_secure=True if secure is None else _bool(secure),
            tls=ServerTls.from_env(env, "INFUSION_MONITOR_BOARD"),
            session_hours=float(env.get("INFUSION_MONITOR_BOARD_SESSION_HOURS", "12")),
            lookback_hours=float(env.get("INFUSION_MONITOR_BOARD_LOOKBACK_HOURS", "24")),
            clock=env.get("INFUSION_MONITOR_BOARD_CLOCK", "wall"),
            view=ViewOptions(
                vitals_due_warning_minutes=float(env.get("INFUSION_MONITOR_BOARD_VITALS_WARNING_MINUTES", "5")),
                closed_tile_minutes=float(env.get("INFUSION_MONITOR_BOARD_CLOSED_TILE_MINUTES", "30")),
            ),
        )


def allowed_hosts(config: BoardConfig) -> frozenset[str]:
    """The configured host names, else the loopback names plus the host the board is bound to."""
    if config.allowed_hosts:
        return config.allowed_hosts
    hosts = {"localhost", "127.0.0.1", "[::1]"}
    if config.bind:
        host = config.bind.rpartition(":")[0].strip("[]").lower()
        if host and host not in ("0.0.0.0", "::"):
            hosts.add(f"[{host}]" if ":" in host else host)
    return frozenset(hosts)


def add_board_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``infusion-monitor service board`` (each overrides its environment variable)."""
    parser.add_argument("--bind", help=f"host:port to serve on (default {DEFAULT_BIND}; 'off': no web server)")
    parser.add_argument("--users", help="users file (TOML with scrypt hashes)")
    parser.add_argument("--lookback-hours", type=float, help="history read from the streams at start (default 24)")
    parser.add_argument("--clock", choices=["wall", "event"], help="wall (live) or event (replays, demo)")


def apply_board_arguments(config: BoardConfig, args: argparse.Namespace) -> BoardConfig:
    changes: dict[str, object] = {}
    if getattr(args, "bind", None):
        changes["bind"] = None if args.bind.lower() in ("off", "none") else args.bind
    if getattr(args, "users", None):
        changes["users_path"] = args.users
    if getattr(args, "lookback_hours", None) is not None:
        changes["lookback_hours"] = args.lookback_hours
    if getattr(args, "clock", None):
        changes["clock"] = args.clock
    return replace(config, **changes)


def add_board_at_argument(parser: argparse.ArgumentParser, timestamp_type) -> None:  # type: ignore[no-untyped-def]
    """``replay LOG --board-at T``: print the board at T instead of the outputs."""
    parser.add_argument("--board-at", type=timestamp_type, metavar="TIMESTAMP",
                        help="print the live board as it stood at this event time (text) instead of the outputs "
                             "(default: the outputs)")
