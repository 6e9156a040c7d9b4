"""What ``up`` does while it runs: keep its embedded nats-server and one child process per service
running, and stop them all at once on Ctrl-C or SIGTERM.

No child outlives ``up``, whatever signal kills it: every child is started from ``up``'s main
thread (the kernel ties ``PR_SET_PDEATHSIG`` to the thread that started the child) with
``children.die_with_parent`` (SIGTERM when ``up`` dies, SIGKILL included), in a session of its
own, so that the terminal's Ctrl-C reaches ``up`` alone and ``up`` stops them in order. A second
Ctrl-C while stopping exits at once (the children still follow ``up``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..runtime.access import CREDENTIALS_ENV
from ..runtime.children import die_with_parent
from ..runtime.embedded import EmbeddedNats
from ..runtime.listening import LISTENING_DIR_ENV

RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)
SERVER_RESTARTS = 5  # the embedded server restarted this many times in a row without staying up: give up
STOP_WAIT_S = 15.0  # a service that has not exited this long after SIGTERM is killed


class StopRequest:
    """SIGINT and SIGTERM set ``event`` (and wake whoever waits on it); a second one exits now."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._received)

    def _received(self, sig: int, _frame: object) -> None:
        if self.event.is_set():
            os._exit(128 + sig)  # asked twice: the children follow up (die_with_parent)
        self.signal = sig
        self.event.set()
        os.write(2, b"\nStopping ...\n")  # not print: a signal landing inside a log line's write would re-enter it

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


class ServerSupervision:
    """``up`` keeps its embedded nats-server running like the services (architecture.md rule 9):
    a server that dies is started again (same port, same store) with backoff; one that cannot be
    started ``SERVER_RESTARTS`` times in a row makes ``up`` exit non-zero, so that systemd or
    Docker, which supervise ``up``, notice and act."""

    def __init__(self, server: EmbeddedNats, pid_file: Path, log) -> None:
        self.server, self.pid_file, self.log = server, pid_file, log
        self.failures = 0
        self.restarts = 0
        self.next_try = 0.0
        self.write_pid()

    def write_pid(self) -> None:
        self.pid_file.write_text(f"{self.server.pid}\n")

    def check(self) -> bool:
        """False: the server cannot be kept running."""
        if self.server.running():
            if self.failures and time.monotonic() > self.next_try + 30:
                self.failures = 0  # up for a while again
            return True
        if time.monotonic() < self.next_try:
            return True
        code = self.server.process.returncode if self.server.process else None
        if self.failures >= SERVER_RESTARTS:  # started each time, and each time it died again at once
            self.log.critical("embedded nats-server keeps exiting; giving up", code=code, restarts=self.restarts)
            return False
        self.log.critical("embedded nats-server exited; restarting it", code=code, attempt=self.failures + 1)
        try:
            self.server.start()
        except (RuntimeError, TimeoutError, OSError) as exc:
            self.failures += 1
            self.log.critical("embedded nats-server did not start", error=str(exc), attempt=self.failures)
            if self.failures >= SERVER_RESTARTS:
                return False
            self.next_try = time.monotonic() + RESTART_BACKOFF_S[min(self.failures, len(RESTART_BACKOFF_S) - 1)]
            return True
        self.restarts += 1
        self.failures += 1  # until it stays up 30 s
        self.next_try = time.monotonic() + RESTART_BACKOFF_S[min(self.failures, len(RESTART_BACKOFF_S) - 1)]
        self.write_pid()
        self.log.warning("embedded nats-server restarted", pid=self.server.pid, restarts=self.restarts)
        return True


class Supervisor:
    """Keeps one child process per service running until told to stop; a service that exits is
    started again after a backoff, without holding up anything else (a stop request included)."""

    def __init__(self, envs: dict[str, dict[str, str]], log) -> None:
        self.envs, self.log = envs, log
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {name: 0 for name in envs}
        self.due: dict[str, float] = {}  # service -> when to start it again

    def spawn(self, name: str) -> None:
        service, _, part = name.partition("#")  # "monitor#1/3": instance 1 of 3
        # where to connect and the credentials file go in the environment, never on a command line
        command = [sys.executable, "-m", "infusion_monitor.cli.main", "service", service]
        if part:
            command += ["--partition", part]
        self.children[name] = subprocess.Popen(command, env=self.envs[name], stdin=subprocess.DEVNULL,
                                               start_new_session=True, preexec_fn=die_with_parent())
        self.log.info("service started", name=name, pid=self.children[name].pid)

    def check(self) -> None:
        now = time.monotonic()
        for name, child in list(self.children.items()):
            if name in self.due:
                if now >= self.due[name]:
                    del self.due[name]
                    self.restarts[name] += 1
                    self.spawn(name)
                continue
            code = child.poll()
            if code is None:
                continue
            delay = RESTART_BACKOFF_S[min(self.restarts[name], len(RESTART_BACKOFF_S) - 1)]
            self.log.warning("service exited; restarting", name=name, code=code, in_s=delay)
            self.due[name] = now + delay

    def stop(self) -> None:
        """SIGTERM to every service at once, then wait for them together (bounded); SIGKILL after."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for name, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.error("service did not stop; killing it", name=name, pid=child.pid)
                child.kill()
                child.wait(5)


def child_environments(services: list[str], url: str, data_dir: Path, credentials: Path | None,
                       env: dict[str, str] | None = None, listening_dir: Path | None = None
                       ) -> dict[str, dict[str, str]]:
    """Each child's environment: the server, the data directory, where to say what it listens on,
    and its own credentials file (``credentials``: a directory of ``<service>.creds``; none: the
    inherited environment's)."""
    base = {**(os.environ if env is None else env), "NATS_URL": url, "INFUSION_MONITOR_DATA_DIR": str(data_dir)}
    if listening_dir is not None:
        base[LISTENING_DIR_ENV] = str(listening_dir)
    envs = {}
    for name in services:
        child = dict(base)
        if credentials is not None:
            child[CREDENTIALS_ENV] = str(credentials / f"{name.partition('#')[0]}.creds")
        envs[name] = child
    return envs
