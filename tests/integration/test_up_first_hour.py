"""``up`` for a producer's first five minutes (issue 17, points 1-4 of part B), with real
processes on loopback: the port it takes and says, the addresses it prints, the producer example
against it, ``board add-user`` signing in on its running board, the verbs that find it by
``--data-dir`` alone, and no child left whatever stops it (SIGTERM, SIGKILL)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.integration.test_newcomer import Running, _sign_in, _status
from tests.processes import HAS_PROC, command_of, descendants, wait_gone

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not HAS_PROC, reason="process checks use Linux /proc")]
ROOT = Path(__file__).resolve().parents[2]
CLI = f"{sys.executable} -m infusion_monitor.cli.main"
BANNER_NATS = re.compile(r"^  NATS\s+(nats://127\.0\.0\.1:(\d+))(.*)$")


def _env(**extra: str) -> dict[str, str]:
    """No NATS_URL and no data dir in the environment: the verbs must find up by --data-dir alone;
    every HTTP listener on a free port (other tests may hold the defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFUSION_MONITOR_", "NATS_"))}
    return {**env, "INFUSION_MONITOR_BOARD_BIND": "127.0.0.1:0", "INFUSION_MONITOR_PAGER_ACK_BIND": "127.0.0.1:0",
            "INFUSION_MONITOR_LOG_FORMAT": "json", **extra}


def _cli(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infusion_monitor.cli.main", *args], cwd=cwd, env=_env(), input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def _up(tmp_path: Path, data: Path, *args: str) -> Running:
    return Running(ROOT, f"{CLI} up --data-dir {data} {' '.join(args)}", _env(), tmp_path / "up.err")


def _banner(up: Running) -> str:
    up.wait_for(r"^infusion-monitor is up\.", 120)
    up.wait_for(r"^Ctrl-C stops everything", 30)
    return "".join(up.seen)


def test_up_on_a_taken_port_says_which_it_took_and_the_verbs_find_it_by_data_dir(tmp_path):
    data, elsewhere = tmp_path / "somewhere" / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    with socket.socket() as holder:  # the port up is asked for is taken
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        wanted = holder.getsockname()[1]
        up = _up(tmp_path, data, "--nats-port", str(wanted))
        try:
            text = _banner(up)
            url, port, note = next(m.groups() for line in up.seen if (m := BANNER_NATS.match(line)))
            assert int(port) != wanted and f"port {wanted} was taken" in note, text
            assert (data / "nats.url").read_text().strip() == url
            board = re.search(r"^  board\s+(http://\S+)", text, re.M).group(1)
            assert re.search(r"^  pager ack\s+http://127\.0\.0\.1:\d+/pager/ack", text, re.M), text
            assert "gateway        not running: set INFUSION_MONITOR_PATIENT_KEY_SECRET" in text
            assert f"NATS credentials: {data.resolve()}/credentials/<user>.creds" in text
            for path in (data / "credentials").glob("*.creds"):  # paths only, never a secret
                assert tomllib.loads(path.read_text())["password"] not in text

            # point 2: the producer example against this up, found by its data dir
            producer = subprocess.run([sys.executable, str(ROOT / "examples" / "producer.py"), "--data-dir", str(data)],
                                      cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=120)
            assert producer.returncode == 0, producer.stdout + producer.stderr
            patient = re.search(r"patient (pk-example-\w+)", producer.stdout).group(1)
            assert re.search(r"^ALERT CRITICAL R7 discontinue\.hypersensitivity", producer.stdout, re.M), producer.stdout

            # point 4: alerts, status and deadletter find this up by --data-dir alone (no NATS_URL, another cwd)
            missing = _cli(elsewhere, "alerts")
            assert missing.returncode != 0 and "no running up in var" in missing.stderr, missing.stderr
            listed = _cli(elsewhere, "alerts", "--data-dir", str(data))
            assert listed.returncode == 0 and patient in listed.stdout and "R7" in listed.stdout, listed.stderr
            status = _cli(elsewhere, "status", "--data-dir", str(data), "--seconds", "6")
            assert status.returncode == 0 and "monitor" in status.stdout, status.stdout + status.stderr
            letters = _cli(elsewhere, "deadletter", "list", "--data-dir", str(data))
            assert letters.returncode == 0, letters.stderr
            via_nats = _cli(elsewhere, "alerts", "--nats", url)  # a URL alone carries no credential: refused at once
            assert via_nats.returncode == 1 and "Authorization Violation" in via_nats.stderr, via_nats.stderr
            assert "Traceback" not in via_nats.stderr, via_nats.stderr

            # point 3: board add-user, as up says it, lets the user sign in on the running board at once
            assert re.search(rf"Board sign-in: no user yet\. Add one \(it asks for a password\): .+ board add-user "
                             rf"NAME --data-dir {re.escape(str(data.resolve()))}$", text, re.M), text
            assert _sign_in(board, "anna", "correct horse 1") != 303
            short = _cli(elsewhere, "board", "add-user", "anna", "--data-dir", str(data), stdin="short\n")
            assert short.returncode == 2 and "at least 8" in short.stderr
            added = _cli(elsewhere, "board", "add-user", "anna", "--role", "viewer", "--data-dir", str(data),
                         stdin="correct horse 1\n")
            assert added.returncode == 0 and "role viewer" in added.stdout, added.stderr
            users = data / "board" / "users.toml"
            assert users.stat().st_mode & 0o777 == 0o600 and "correct horse" not in users.read_text()
            assert _sign_in(board, "anna", "correct horse 1") == 303
            assert _sign_in(board, "anna", "wrong horse 1") != 303

            # point 1: SIGTERM stops up at once and cleanly, with every child
            children = descendants(up.proc.pid)
            assert any("nats-server" in command_of(p) for p in children)
            assert len(children) >= 4, [command_of(p) for p in children]  # nats-server, monitor, pager, board
            up.proc.send_signal(signal.SIGTERM)
            assert up.proc.wait(30) == 0
            assert wait_gone(children, timeout=10) == [], [command_of(p) for p in children]
            assert _status(board + "/login") is None and not (data / "nats.url").exists()
        finally:
            up.close()


def test_sigkill_of_up_takes_every_child_with_it(tmp_path):
    up = _up(tmp_path, tmp_path / "var", "--nats-port", "0")
    try:
        _banner(up)
        children = descendants(up.proc.pid)
        assert any("nats-server" in command_of(p) for p in children)
        assert sum("infusion_monitor.cli.main service" in command_of(p) or "infusion-monitor service" in command_of(p)
                   for p in children) >= 3, [command_of(p) for p in children]
        up.proc.kill()  # no handler runs: only the kernel's parent-death signal can stop them
        up.proc.wait(10)
        assert wait_gone(children, timeout=20) == [], [command_of(p) for p in children]
    finally:
        up.close()
