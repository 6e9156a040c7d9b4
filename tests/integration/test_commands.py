"""The command line as a user runs it: `up` (embedded server, clean shutdown), `demo`,
`deadletter list/show/redrive`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from infusion_monitor.runtime.access import Credentials, NatsAccess
from tests.integration.live import alerts, connect, now_minus, publish, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infusion_monitor.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen, object]:
    """``up`` with its embedded server in ``tmp_path/var``, JSON logs in ``tmp_path/up.log``, the
    board and the ack endpoint on free ports."""
    env = {**os.environ, "INFUSION_MONITOR_DATA_DIR": str(tmp_path / "var"), "INFUSION_MONITOR_LOG_FORMAT": "json",
           "INFUSION_MONITOR_BOARD_BIND": "127.0.0.1:0", "INFUSION_MONITOR_PAGER_ACK_BIND": "127.0.0.1:0"}
    env.pop("NATS_URL", None)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "infusion_monitor.cli.main", "up"], cwd=ROOT, env=env,
                          stdout=log, stderr=subprocess.STDOUT)
    return up, log


def test_demo_prints_alerts_and_summary():
    proc = _cli("demo", "--speedup", "0", "--no-board")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "CRITICAL R7" in out and "HIGH     R12" in out and "HIGH     P1" in out and "MEDIUM   M1" in out
    assert "discontinue.hypersensitivity" in out and "Alerts by severity: critical 2" in out
    assert "Events replayed: 277" in out


async def test_up_runs_embedded_server_and_services_and_stops_cleanly(tmp_path):
    up, log = _start_up(tmp_path)
    url_file = tmp_path / "var" / "nats.url"
    try:
        deadline = time.monotonic() + 30
        while not url_file.exists():
            assert time.monotonic() < deadline and up.poll() is None, "up did not start the embedded server"
            await asyncio.sleep(0.1)
        url = url_file.read_text().strip()
        assert "@" not in url  # no credential in the URL it writes down (or prints)
        credentials = tmp_path / "var" / "credentials"
        with pytest.raises(Exception):  # no anonymous access
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
        operator = await NatsAccess(url, Credentials.read(credentials / "admin.creds")).connect("admin")  # inspects
        producer = await NatsAccess(url, Credentials.read(credentials / "producer.creds")).connect("producer")
        js, producer_js = operator.jetstream(), producer.jetstream()
        try:
            base = {"patient_id": "pk-up"}  # the streams are provisioned before the services start
            await publish(producer_js, {"type": "infusion.started", "event_id": "u1", "occurred_at": now_minus(3), "session_id": "ses-up", **base})
            await publish(producer_js, {"type": "vitals.recorded", "event_id": "u2", "occurred_at": now_minus(0.1), "spo2_pct": 88, **base})

            async def critical():
                return [a for a in await alerts(js) if a["rule"] == "R8"]

            assert (await wait_for(critical, timeout=30))[0]["session_id"] == "ses-up"
            # the command-line verbs find the operator's credentials of the running `up`
            listed = _cli("alerts", env={"INFUSION_MONITOR_DATA_DIR": str(tmp_path / "var"), "NATS_URL": ""})
            assert listed.returncode == 0 and "R8" in listed.stdout, listed.stderr
        finally:
            await operator.close()
            await producer.close()
        for path in credentials.iterdir():  # files only their owner can read, in a private directory
            assert path.stat().st_mode & 0o077 == 0, path
        assert credentials.stat().st_mode & 0o077 == 0
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        assert not url_file.exists()
        assert (tmp_path / "var" / "nats" / "jetstream").is_dir()  # the store stays for the next start
        server_log = (tmp_path / "var" / "nats" / "nats-server.log").read_text()
        assert "Server Exiting" in server_log or "Exiting" in server_log
        out = (tmp_path / "up.log").read_bytes().decode(errors="replace")
        for path in credentials.glob("*.creds"):  # no password in the banner or any log line
            secret = Credentials.read(path).password
            assert secret not in out and secret not in server_log
    finally:
        if up.poll() is None:
            up.kill()
        log.close()


async def test_deadletter_list_show_and_redrive(nats_server, tmp_path):
    from tests.integration.live import MonitorProcess

    monitor = MonitorProcess(nats_server.url, tmp_path / "m.log").start()
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: _ready(js))
        bad = {"type": "infusion.started", "event_id": "pump-r1", "occurred_at": "2025-03-03T09:00:00",
               "patient_id": "pk-dl", "session_id": "ses-dl"}
        await js.publish("im.in.pk-dl.infusion.started", json.dumps(bad).encode())

        async def one_letter():
            info = await js.stream_info("IM_DLQ")
            return info.state.messages >= 1

        await wait_for(one_letter)
        env = {"NATS_URL": nats_server.url}
        listing = _cli("deadletter", "list", env=env)
        assert listing.returncode == 0 and "occurred_at" in listing.stdout and "RFC 3339" in listing.stdout
        shown = _cli("deadletter", "show", "1", env=env)
        assert "Im-Reason: expected an RFC 3339 timestamp with offset" in shown.stdout and '"pump-r1"' in shown.stdout
        fixed = tmp_path / "fixed.json"
        fixed.write_text(json.dumps({**bad, "occurred_at": "2025-03-03T09:00:00Z", "pump_id": "pump-7"}))
        redriven = _cli("deadletter", "redrive", "1", "--file", str(fixed), env=env)
        assert redriven.returncode == 0 and "im.in.pk-dl.infusion.started" in redriven.stdout

        async def no_baseline():  # the fixed event opened a session: R6 fires on the wall clock
            return [a for a in await alerts(js) if a["patient_id"] == "pk-dl" and a["rule"] == "R6"]

        assert (await wait_for(no_baseline))[0]["session_id"] == "ses-dl"
    finally:
        await nc.close()
        monitor.stop()


async def _ready(js):
    try:
        await js.consumer_info("IM_IN", "monitor")
        return True
    except Exception:
        return False


async def test_deadletter_lists_and_shows_the_gateways_raw_messages(nats_server):
    from infusion_monitor.runtime.names import Names
    from infusion_monitor.runtime.streams import ensure_gateway_streams

    names = Names()
    nc, js = await connect(nats_server.url)
    try:
        await ensure_gateway_streams(js, names)
        raw = b"MSH|^~\\&|LAB|HOSP|MONSVC|HOSP|20250301101500||ORU^R01|LAB77|P|2.6\rPID|||MRN1^^^HOSP^MR"
        await js.publish(names.gateway_dlq("hl7"), raw, headers={
            "Im-Service": "gateway", "Im-Kind": "AE", "Im-Field": "OBR-7", "Im-Reason": "no collection time",
            "Im-Control-Id": "LAB77", "Im-Sender": "LAB"})
    finally:
        await nc.close()
    env = {"NATS_URL": nats_server.url}
    listing = _cli("deadletter", "list", "--stream", "gateway", env=env)
    assert listing.returncode == 0 and "no collection time" in listing.stdout and "LAB LAB77" in listing.stdout
    shown = _cli("deadletter", "show", "1", "--stream", "gateway", env=env)
    assert "Im-Field: OBR-7" in shown.stdout and "ORU^R01" in shown.stdout
    refused = _cli("deadletter", "redrive", "1", "--stream", "gateway", env=env)
    assert refused.returncode == 2 and "hl7 send" in refused.stderr


async def test_up_restarts_a_killed_embedded_server_and_alerts_flow_again(tmp_path):
    up, log = _start_up(tmp_path)
    pid_file, credentials = tmp_path / "var" / "nats.pid", tmp_path / "var" / "credentials"

    async def as_user(user: str):
        url = (tmp_path / "var" / "nats.url").read_text().strip()
        return await NatsAccess(url, Credentials.read(credentials / f"{user}.creds")).connect(user)

    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert time.monotonic() < deadline and up.poll() is None, "up did not start the embedded server"
            await asyncio.sleep(0.1)
        admin = await as_user("admin")
        try:
            await wait_for(lambda: _monitor_ready(admin.jetstream()), timeout=30)
        finally:
            await admin.close()
        first = int(pid_file.read_text())
        os.kill(first, signal.SIGKILL)  # the broker dies
        deadline = time.monotonic() + 30
        while int(pid_file.read_text() or 0) == first:
            assert time.monotonic() < deadline and up.poll() is None, "up did not restart the embedded server"
            await asyncio.sleep(0.1)
        admin, producer = await as_user("admin"), await as_user("producer")  # the same address and users
        try:
            js = admin.jetstream()
            await wait_for(lambda: _monitor_ready(js), timeout=30)
            base = {"patient_id": "pk-up2"}
            await publish(producer.jetstream(), {"type": "infusion.started", "event_id": "r1", "occurred_at": now_minus(3),
                                                 "session_id": "ses-up2", **base})
            await publish(producer.jetstream(), {"type": "vitals.recorded", "event_id": "r2",
                                                 "occurred_at": now_minus(0.1), "systolic_mmhg": 70, **base})

            async def critical():
                return [a for a in await alerts(js) if a["patient_id"] == "pk-up2" and a["severity"] == "critical"]

            assert (await wait_for(critical, timeout=60))[0]["rule"] == "R7"  # the monitor reconnected
        finally:
            await admin.close()
            await producer.close()
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        assert b"embedded nats-server restarted" in (tmp_path / "up.log").read_bytes()
    finally:
        if up.poll() is None:
            up.kill()
        log.close()


async def _monitor_ready(js) -> bool:
    try:
        await js.consumer_info("IM_IN", "monitor")
        return True
    except Exception:
        return False
