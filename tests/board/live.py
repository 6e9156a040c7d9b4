"""Running the real services for the board's browser and service tests: the board and the pager as
child processes (``python -m infusion_monitor.board`` / ``python -m infusion_monitor.pager``), and an asyncio loop
in a thread for the NATS client and the webhook receiver while Selenium drives the browser from
the test's own thread."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class LoopThread:
    """An event loop in a daemon thread: ``run(coro)`` waits for its result (bounded)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class ServiceProcess:
    """A service in a child process with its log in a file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.args, self.log_path, self.env = args, log_path, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "INFUSION_MONITOR_LOG_FORMAT": "json", **self.env}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", *self.args], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


def board_process(nats_url: str, port: int, users: Path, data_dir: Path, log: Path, env: dict[str, str] | None = None
                  ) -> ServiceProcess:
    return ServiceProcess(["infusion_monitor.board", "--nats", nats_url, "--bind", f"127.0.0.1:{port}", "--users", str(users)],
                          log, {"INFUSION_MONITOR_DATA_DIR": str(data_dir), **(env or {})})


def pager_process(nats_url: str, routes: Path, log: Path, env: dict[str, str] | None = None) -> ServiceProcess:
    return ServiceProcess(["infusion_monitor.pager", "--nats", nats_url, "--routes", str(routes)], log,
                          {"INFUSION_MONITOR_PAGER_ACK_BIND": "off", **(env or {})})


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers 200 (the board is listening and has read its history)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200 and b'"ready":true' in answer.read():
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.1)
