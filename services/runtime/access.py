"""Who a process is on NATS, and the one place every connection is made.

A ``NatsAccess`` is a server URL plus, when the server asks for them, the user and password
(read from a credentials file only its owner may read) and a TLS context. Services build their
FastStream broker with ``access.broker(service)``; command-line verbs connect with
``await access.connect(role)``. Credentials are never put in a URL, a log line or a banner:
``repr`` hides the password and the URL never carries it.

| variable | meaning |
|---|---|
| ``INFUSION_MONITOR_NATS_CREDENTIALS`` | this process's credentials file (TOML: ``user``, ``password``; mode 0600) |
| ``NATS_TLS_CA`` | CA that signs the server certificate (default: the system's) |
| ``NATS_TLS_CERT``, ``NATS_TLS_KEY`` | client certificate and key (servers with ``verify: true``) |

``infusion-monitor up`` writes one credentials file per user of the embedded server into
``DATA_DIR/credentials/`` and gives each service its own (``embedded.py``).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .private import NotPrivate, read_private, write_private
from .settings import nats_servers

CREDENTIALS_ENV = "INFUSION_MONITOR_NATS_CREDENTIALS"
SERVICE_ROLES = frozenset({"monitor", "pager", "gateway", "board"})


class CredentialsError(ValueError):
    """A credentials file that is missing, malformed, or readable by others."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> Credentials:
        """A credentials file; refused when group or others may read it (it holds a password)."""
        path = Path(path)
        try:
            data = tomllib.loads(read_private(path))
        except NotPrivate as exc:
            raise CredentialsError(str(exc)) from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CredentialsError(f"credentials file {path}: {exc.__class__.__name__}") from None
        user, password = data.get("user"), data.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
            raise CredentialsError(f"credentials file {path}: needs user and password")
        return cls(user, password)

    def write(self, path: str | Path) -> Path:
        """Write (or replace) the file with mode 0600, never readable by others in between."""
        return write_private(path, f'# NATS credentials of user "{self.user}" (infusion-monitor); keep mode 0600\n'
                                   f'user = "{self.user}"\npassword = "{self.password}"\n')


def tls_from_env(env: dict[str, str] | None = None) -> ssl.SSLContext | None:
    """A client TLS context when ``NATS_TLS_CA`` or a client certificate is configured (mutual
    TLS); ``None`` otherwise (nats-py then uses Python's default context for ``tls://`` URLs or
    a server that requires TLS, which honours ``SSL_CERT_FILE``)."""
    env = dict(os.environ if env is None else env)
    ca, cert, key = env.get("NATS_TLS_CA"), env.get("NATS_TLS_CERT"), env.get("NATS_TLS_KEY")
    if not (ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca or None)
    if cert:
        context.load_cert_chain(cert, key or None)
    return context


def inbox_prefix(role: str | None) -> str:
    """A service's own reply-subject prefix (``_INBOX_<service>``): with the per-service NATS
    permissions no service can read another's replies (fetched messages, KV reads). Operators'
    tools and producers keep the default ``_INBOX``."""
    return f"_INBOX_{role}" if role in SERVICE_ROLES else "_INBOX"


@dataclass(frozen=True)
class NatsAccess:
    url: str
    credentials: Credentials | None = None
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def servers(self) -> list[str]:
        return nats_servers(self.url)

    def options(self, role: str | None) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        options: dict[str, Any] = {"servers": self.servers, "inbox_prefix": inbox_prefix(role)}
        if self.credentials is not None:
            options.update(user=self.credentials.user, password=self.credentials.password)
        if self.tls is not None:
            options["tls"] = self.tls
        return options

    def broker(self, role: str, **kwargs: Any) -> Any:
        """The service's FastStream broker (not connected yet). It reconnects for as long as it
        takes: a broker restarted by ``up`` or failing over must not leave a service closed for
        good (the pager's watchdog says when the broker stays away)."""
        kwargs.setdefault("max_reconnect_attempts", -1)
        kwargs.setdefault("reconnect_time_wait", 0.5)
        from faststream.nats import NatsBroker

        from .logs import quiet_stdlib_logger

        options = self.options(role)
        servers = options.pop("servers")
        security = None
        if self.credentials is not None or self.tls is not None:
            from faststream.nats.security import NatsSecurity, NatsUserPassword

            options.pop("user", None), options.pop("password", None), options.pop("tls", None)
            if self.credentials is not None:
                security = NatsUserPassword(self.credentials.user, self.credentials.password, ssl_context=self.tls)
            else:
                security = NatsSecurity(ssl_context=self.tls)
        return NatsBroker(servers, logger=quiet_stdlib_logger("faststream"), security=security, **options, **kwargs)

    async def connect(self, role: str | None = None, **kwargs: Any) -> Any:
        import nats

        return await nats.connect(**self.options(role), **kwargs)

    async def connect_once(self, role: str | None = None) -> Any:
        """A command-line verb's connection (``alerts``, ``status``, ``deadletter``): one attempt,
        so that a wrong URL or credential fails at once with the server's reason (``CannotConnect``)
        instead of retrying for two minutes with a traceback per attempt."""
        import nats

        connected = asyncio.Event()

        async def errors(exc: Exception) -> None:  # quiet while connecting (the exception says why)
            if connected.is_set():  # then a refused subscription or publication is said, not swallowed
                print(f"nats: {str(exc).removeprefix('nats: ')}", file=sys.stderr, flush=True)

        try:
            nc = await nats.connect(**self.options(role), allow_reconnect=False, connect_timeout=5, error_cb=errors)
            connected.set()
            return nc
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            reason = str(exc).removeprefix("nats: ").strip("'") or type(exc).__name__
            raise CannotConnect(f"cannot connect to {self.url} as {role or 'the configured user'}: {reason}") from exc


class CannotConnect(Exception):
    """A command-line verb could not reach or sign in to its NATS server (the message says why)."""


def access_for(target: str | NatsAccess, env: dict[str, str] | None = None) -> NatsAccess:
    """``target`` as is when it is already a ``NatsAccess``; a URL gets the credentials file and
    TLS settings of this process's environment."""
    if isinstance(target, NatsAccess):
        return target
    env = dict(os.environ if env is None else env)
    path = env.get(CREDENTIALS_ENV)
    return NatsAccess(target, Credentials.read(path) if path else None, tls_from_env(env))
