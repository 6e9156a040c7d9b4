"""A newcomer's first hour (issue 17): a fresh ``git clone`` of the repository (its committed HEAD)
into a temporary folder, then the README's commands as written, from the clone's folder, with a
clean environment: ``python3 run.py demo`` (it creates the clone's own ``.venv`` and installs the
project from the package index: no code of this checkout is used) with a short speed-up, then
``python3 run.py up``. Checked: exit codes; every address they print answers (the demo's board and
its sign-in; up's NATS, board, pager ack endpoint, gateway MLLP and FHIR); the commands up prints
work as printed (the producer example, ``board add-user``, ``alerts``); after Ctrl-C (SIGINT) no
process whose command line holds the clone's path is left.

The default ports (NATS 4222, board 8090, pager ack 8089, MLLP 2575, FHIR 8088) are used when they
are free; another engineer's process on this shared machine may hold one, so a taken HTTP/MLLP port
is configured to 0 through its documented variable (the commands stay as written), and NATS shows
what up does when 4222 is taken: it says so."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import nats
import pytest

from tests.processes import HAS_PROC, alive, command_of, wait_gone

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not HAS_PROC, reason="process checks use Linux /proc")]
ROOT = Path(__file__).resolve().parents[2]
INSTALL_S = 600  # the clone's first command creates .venv and installs from the package index
PASSWORD = "first-hour-pw-1"


def _readme_commands(after: str) -> list[str]:
    """The commands of the README's first shell block after ``after``, as written (comments cut)."""
    text = (ROOT / "README.md").read_text()
    block = text.split(after, 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _quick_start() -> list[str]:
    return _readme_commands("## Quick start")


def _newcomer_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A shell of someone who just cloned: none of this checkout's settings or virtualenv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFUSION_MONITOR_", "NATS_", "PYTEST", "VIRTUAL_ENV", "PYTHON"))}
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return {**env, "TMPDIR": str(tmp), **extra}


def _processes_of(clone: Path) -> list[int]:
    """Every live process whose command line holds the clone's path (its python, its nats-server)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and str(clone) in command_of(int(entry)) and alive(int(entry)):
            found.append(int(entry))
    return found


class Running:
    """A command of the clone in a child process; its standard output read line by line."""

    def __init__(self, clone: Path, line: str, env: dict[str, str], stderr_to: Path) -> None:
        self.errors = stderr_to.open("wb")
        self.proc = subprocess.Popen(shlex.split(line), cwd=clone, env=env, stdout=subprocess.PIPE,
                                     stderr=self.errors, stdin=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.stderr_path = stderr_to
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s (exit {self.proc.poll()}):\n"
                             f"{''.join(self.seen)}\nstderr:\n{self.stderr_path.read_text(errors='replace')[-3000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.errors.close()


def _status(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int | None:
    """The HTTP status of ``url`` (no redirect followed), ``None`` when nothing answers."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _sign_in(board: str, username: str, password: str) -> int | None:
    body = f"username={username}&password={password}".encode()
    return _status(f"{board}/login", body, {"Origin": board, "Content-Type": "application/x-www-form-urlencoded"})


def _taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run(clone: Path, line: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(shlex.split(line), cwd=clone, env=env, input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository as a newcomer gets it: a clone of the committed HEAD, nothing else."""
    where = tmp_path_factory.mktemp("newcomer") / "infusion-monitor"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(where)], check=True, timeout=120)
    assert not (where / ".venv").exists() and not (where / "var").exists()
    yield where
    left = _processes_of(where)
    for pid in left:  # never leave one behind, even when an assertion failed half-way
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_quick_start_demo_from_a_fresh_clone(clone, tmp_path):
    commands = _quick_start()
    assert "python3 run.py demo" in commands, commands
    demo = Running(clone, "python3 run.py demo --speedup 100000", _newcomer_env(tmp_path), tmp_path / "demo.err")
    try:
        board, user, password = demo.wait_for(
            r"The live board: (http://127\.0\.0\.1:\d+)  \(sign in as (\S+) / (\S+)\)", INSTALL_S).groups()
        demo.wait_for(r"^Events replayed: 277", 180)
        demo.wait_for(r"The replay is over\. The board stays up", 30)
        assert (clone / ".venv" / "bin" / "python").exists(), "run.py made the clone its own environment"
        assert _status(f"{board}/login") == 200
        assert _sign_in(board, user, password) == 303  # the printed password signs in
        assert _sign_in(board, user, password + "x") != 303
        assert any("CRITICAL R7" in line for line in demo.seen)
        assert _processes_of(clone), "the demo and its nats-server run from the clone's environment"
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(30) == 0
        assert wait_gone(_processes_of(clone), timeout=15) == [], [command_of(p) for p in _processes_of(clone)]
        assert _status(f"{board}/login") is None
    finally:
        demo.close()


BANNER_LINE = re.compile(r"^  (NATS|board|pager ack|gateway MLLP|gateway FHIR)\s+(\S+)(.*)$")


def _read_banner(up: Running) -> dict[str, tuple[str, str]]:
    up.wait_for(r"^infusion-monitor is up\.", INSTALL_S)
    addresses: dict[str, tuple[str, str]] = {}
    while True:
        line = up.wait_for(r".*", 30).group(0)
        if m := BANNER_LINE.match(line):
            addresses[m.group(1)] = (m.group(2), m.group(3))
        if line.startswith("Ctrl-C stops everything"):
            return addresses


def test_up_from_a_fresh_clone_serves_what_it_prints_and_leaves_nothing_behind(clone, tmp_path):
    defaults = {"INFUSION_MONITOR_BOARD_BIND": 8090, "INFUSION_MONITOR_PAGER_ACK_BIND": 8089,
                "INFUSION_MONITOR_MLLP_PORT": 2575, "INFUSION_MONITOR_HTTP_PORT": 8088}
    moved = {name: ("127.0.0.1:0" if name.endswith("_BIND") else "0") for name, port in defaults.items() if _taken(port)}
    env = _newcomer_env(tmp_path, INFUSION_MONITOR_PATIENT_KEY_SECRET="a" * 64, **moved)  # the README's walkthrough
    up = Running(clone, "python3 run.py up", env, tmp_path / "up.err")
    try:
        addresses = _read_banner(up)
        assert set(addresses) == {"NATS", "board", "pager ack", "gateway MLLP", "gateway FHIR"}, addresses
        text = "".join(up.seen)
        nats_url, note = addresses["NATS"]
        port = int(nats_url.rsplit(":", 1)[1])
        if port != 4222:  # taken by someone else: up says so, and it is really taken
            assert "port 4222 was taken" in note and _taken(4222), note
        assert (clone / "var" / "nats.url").read_text().strip() == nats_url
        for name, setting in (("board", "INFUSION_MONITOR_BOARD_BIND"), ("pager ack", "INFUSION_MONITOR_PAGER_ACK_BIND"),
                              ("gateway MLLP", "INFUSION_MONITOR_MLLP_PORT"), ("gateway FHIR", "INFUSION_MONITOR_HTTP_PORT")):
            if setting not in moved:  # the documented default address
                assert addresses[name][0].rstrip("/").split(":")[-1].split("/")[0] == str(defaults[setting]), addresses

        # NATS: no anonymous client; the producer's printed credentials get in
        credentials = Path(re.search(r"NATS credentials: (\S+)/<user>\.creds", text).group(1))
        assert credentials == (clone / "var" / "credentials").resolve()
        asyncio.run(_nats_checks(nats_url, credentials))

        # the producer example, run as up prints it: a session and its critical alert
        try_it = re.search(r"Try it: (.+?)   then: (.+)$", text, re.M)
        assert try_it, text
        readme = _readme_commands("The producer example is")  # the README's producer example is what up says
        assert readme == ["python3 run.py up", try_it.group(1), try_it.group(2)], (readme, try_it.groups())
        producer = _run(clone, try_it.group(1), env)
        assert producer.returncode == 0, producer.stdout + producer.stderr
        assert re.search(r"ALERT CRITICAL R7 ", producer.stdout), producer.stdout
        alerts = _run(clone, try_it.group(2), env)
        assert alerts.returncode == 0 and "R7" in alerts.stdout, alerts.stdout + alerts.stderr

        # the board: nobody signs in until a user is added with the printed command; then at once
        board = addresses["board"][0]
        assert _status(f"{board}/login") == 200
        add_user = re.search(r"Board sign-in: no user yet\. Add one \(it asks for a password\): (.+)$", text, re.M)
        assert add_user, text
        assert _sign_in(board, "anna", PASSWORD) != 303
        added = _run(clone, add_user.group(1).replace("NAME", "anna"), env, stdin=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
        assert _sign_in(board, "anna", PASSWORD) == 303

        # the pager's ack endpoint answers, and refuses a caller without a token
        assert _status(addresses["pager ack"][0], b"{}", {"Content-Type": "application/json"}) in (401, 403)
        # the gateway: FHIR answers (no bearer token: refused), MLLP acknowledges an HL7 message
        assert _status(addresses["gateway FHIR"][0] + "/Patient", b"{}", {"Content-Type": "application/fhir+json"}) \
            in (401, 403)
        host, mllp_port = addresses["gateway MLLP"][0].split("://", 1)[1].rsplit(":", 1)
        sent = _run(clone, f"python3 run.py hl7 send examples/hl7/01-adt-a04-registration.hl7 --host {host} "
                           f"--port {mllp_port}", env)
        assert sent.returncode == 0 and "MSA|AA" in sent.stdout, sent.stdout + sent.stderr

        before = _processes_of(clone)
        assert len(before) >= 6, [command_of(p) for p in before]  # up, nats-server, monitor, pager, board, gateway
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(30) == 0
        assert wait_gone(before, timeout=15) == [], [command_of(p) for p in before]
        assert _processes_of(clone) == []
        assert not (clone / "var" / "nats.url").exists()
        for name in ("board", "pager ack", "gateway FHIR"):
            assert _status(addresses[name][0]) is None, name
    finally:
        up.close()


async def _nats_checks(url: str, credentials: Path) -> None:
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5)
    creds = tomllib.loads((credentials / "producer.creds").read_text())
    nc = await nats.connect(url, user=creds["user"], password=creds["password"], allow_reconnect=False,
                            max_reconnect_attempts=0, connect_timeout=5)
    try:
        assert nc.is_connected
    finally:
        await nc.close()
