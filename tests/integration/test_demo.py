"""``infusion-monitor demo`` as a newcomer runs it (issue 17, point 2): the board stays up after
the replay and says so; Ctrl-C (SIGINT) or SIGTERM ends it at once and cleanly, during the replay
too; no process survives it, the embedded nats-server above all, even when the demo is SIGKILLed."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.processes import HAS_PROC, command_of, descendants, wait_gone

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not HAS_PROC, reason="process checks use Linux /proc")]
ROOT = Path(__file__).resolve().parents[2]
BOARD_LINE = re.compile(r"The live board: (http://127\.0\.0\.1:\d+)")


class Demo:
    """The demo in a child process; its standard output read line by line (bounded waits)."""

    def __init__(self, tmp_path: Path, *args: str, command: tuple[str, ...] = (sys.executable, "-m", "infusion_monitor.cli.main")) -> None:
        env = {**os.environ, "TMPDIR": str(tmp_path)}
        env.pop("NATS_URL", None)
        self.proc = subprocess.Popen([*command, "demo", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"the demo exited ({self.proc.returncode}):\n{''.join(self.seen)}"
                continue
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{''.join(self.seen)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _answers(url: str) -> int | None:
    """The HTTP status of ``url`` (redirects followed), ``None`` when nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _nats_server_of(pid: int) -> list[int]:
    return [p for p in descendants(pid) if "nats-server" in command_of(p)]


def _assert_up_s_layout(server: int, tmp_path: Path) -> None:
    """The demo's server has up's authenticated layout (issue 17, point 7): no anonymous client
    gets in; one credentials file per user, only its owner may read it."""
    import asyncio

    import nats

    port = int(re.search(r" -p (\d+)", command_of(server)).group(1))

    async def anonymous() -> None:
        nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False, max_reconnect_attempts=0,
                                connect_timeout=3)
        await nc.close()

    with pytest.raises(Exception, match="(?i)authorization"):
        asyncio.run(anonymous())
    creds = sorted(p.name for p in tmp_path.glob("im-demo-*/credentials/*.creds"))
    assert {"admin.creds", "board.creds", "monitor.creds", "producer.creds"} <= set(creds), creds
    for path in tmp_path.glob("im-demo-*/credentials/*.creds"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_the_board_stays_up_after_the_replay_and_sigint_ends_the_demo_cleanly(tmp_path):
    demo = Demo(tmp_path, "--speedup", "100000")
    try:
        url = demo.wait_for(BOARD_LINE.pattern).group(1)
        demo.wait_for(r"^Events replayed: 277")
        demo.wait_for(r"The replay is over\. The board stays up at " + re.escape(url) + r" .*Ctrl-C ends the demo")
        time.sleep(1.0)  # still up a moment later, not just at the instant the replay ended
        assert demo.proc.poll() is None, "the demo ended after the replay instead of keeping the board up"
        assert _answers(url + "/login") == 200
        children = descendants(demo.proc.pid)
        servers = _nats_server_of(demo.proc.pid)
        assert servers, "the demo runs its own nats-server"
        _assert_up_s_layout(servers[0], tmp_path)
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(30) == 0
        assert wait_gone(children, timeout=10) == [], [command_of(p) for p in children]
        assert _answers(url + "/login") is None
        assert not list(tmp_path.glob("im-*")), "the demo's temporary store was not removed"
    finally:
        demo.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_replay_stops_the_demo_at_once(tmp_path, sig):
    demo = Demo(tmp_path, "--speedup", "200")  # the clinic day would take about 4 minutes
    try:
        demo.wait_for(BOARD_LINE.pattern)
        demo.wait_for(r"MEDIUM\s+R6")  # the replay is under way
        children = descendants(demo.proc.pid)
        assert _nats_server_of(demo.proc.pid)
        demo.proc.send_signal(sig)
        assert demo.proc.wait(30) == 128 + sig
        assert wait_gone(children, timeout=10) == []
        assert not list(tmp_path.glob("im-*"))
    finally:
        demo.stop()


def test_sigkill_of_the_demo_takes_its_nats_server_with_it(tmp_path):
    demo = Demo(tmp_path, "--speedup", "10")
    try:
        demo.wait_for(BOARD_LINE.pattern)
        servers = _nats_server_of(demo.proc.pid)
        assert servers
        demo.proc.kill()
        demo.proc.wait(10)
        assert wait_gone(servers, timeout=15) == [], "an orphaned nats-server outlived the demo"
    finally:
        demo.stop()


def test_without_the_board_the_demo_ends_after_its_summary(tmp_path):
    demo = Demo(tmp_path, "--speedup", "0", "--no-board")
    try:
        demo.wait_for(r"^Events replayed: 277")
        assert demo.proc.wait(60) == 0
        assert not any("The live board" in line for line in demo.seen)
    finally:
        demo.stop()


def test_run_py_becomes_the_demo_so_a_signal_reaches_it_alone(tmp_path):
    """``python3 run.py demo`` (the README's quick start) replaces itself with the command: no
    launcher in between that a signal would stop while the demo and its server run on."""
    import hashlib

    stamp = ROOT / ".venv" / ".installed"
    if not stamp.exists() or stamp.read_text() != hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest():
        pytest.skip("run.py's .venv is absent or stale here (it would install the project first)")
    demo = Demo(tmp_path, "--speedup", "200", command=("python3", str(ROOT / "run.py")))
    try:
        demo.wait_for(BOARD_LINE.pattern)
        assert "infusion-monitor demo" in command_of(demo.proc.pid)  # the same PID is now the demo
        children = descendants(demo.proc.pid)
        assert any("nats-server" in command_of(p) for p in children)
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(30) == 128 + signal.SIGTERM
        assert wait_gone(children, timeout=10) == []
    finally:
        demo.stop()
