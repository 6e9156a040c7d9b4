"""The paging bridge against a real nats-server and a real loopback HTTP receiver: the monitor's
critical alert reaches the webhook quickly, acknowledgement through the HTTP endpoint, a receiver
that refuses connections and answers 500s gets everything afterwards in order and once, and a
bridge killed mid-delivery loses and doubles nothing (issue #4)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from schemas.vocab import AlertKind, Rule, Severity
from services.engine.alerts import make_alert
from services.pager import load_routes
from services.pager.app import PagerSettings, run_pager
from services.pager.audit import recent_alerts
from services.runtime.settings import Settings
from services.worker.app import run_worker
from tests.integration.live import connect, now_minus, publish, stop_process, stream_messages, wait_for
from tests.pager.receiver import Receiver

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
#: functional deadline for "a critical alert reaches the webhook within a second" (generous
#: bound for a loaded 2-core machine; the measured latency is printed)
DELIVERY_DEADLINE_S = 5.0

ROUTES = """
[destinations.clinician]
adapter = "webhook"
url = "{base}/clinician"
max_attempts = 1000
backoff_initial_s = 0.05
backoff_max_s = 0.2
timeout_s = 2
[destinations.nurse]
adapter = "webhook"
url = "{base}/nurse"
max_attempts = 1000
backoff_initial_s = 0.05
backoff_max_s = 0.2

[[routes]]
name = "emergency"
severities = ["critical", "high"]
  [[routes.tiers]]
  destinations = ["clinician"]
  escalate_after = "2h"
[[routes]]
name = "nurse"
severities = ["medium"]
  [[routes.tiers]]
  destinations = ["nurse"]
[[routes]]
name = "record"
severities = ["low", "info"]
"""


def _routes_file(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES.replace("{base}", base))
    return path


def _pager_settings(**changes) -> PagerSettings:
    return replace(PagerSettings(ack_bind=None, env={}), **changes)


def _alert(patient: str, condition: str = "c"):
    return make_alert(patient_id=patient, at=datetime.now(UTC), kind=AlertKind.DISCONTINUE_HYPERSENSITIVITY,
                      severity=Severity.CRITICAL, rule=Rule.R7, condition=condition, summary=f"R7 for {patient}",
                      action="Stop the infusion", evidence={"systolic_mmhg": 80}, session_id=f"ses-{patient}")


async def _publish_alert(js, alert) -> None:
    await js.publish(f"im.alert.{alert.patient_id}.alert.raised", alert.model_dump_json(exclude_none=True).encode(),
                     headers={"Nats-Msg-Id": alert.event_id})


async def _consumer_exists(js, stream: str, durable: str) -> bool:
    try:
        await js.consumer_info(stream, durable)
        return True
    except Exception:
        return False


async def _all_acked(js, stream: str, durable: str) -> bool:
    info = await js.consumer_info(stream, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_critical_alert_from_the_monitor_reaches_the_webhook_and_is_acknowledged(nats_server, tmp_path):
    receiver = await Receiver().start()
    routes = load_routes(_routes_file(tmp_path, receiver.base))
    settings = Settings()
    nc, js = await connect(nats_server.url)
    try:
        async with run_worker(settings, nats_server.url), \
                run_pager(settings, nats_server.url, routes, pager=_pager_settings(ack_bind="127.0.0.1:0")) as pager:
            await wait_for(lambda: _consumer_exists(js, "IM_ALERTS", "pager"))
            p = "pk-e2e"
            await publish(js, {"type": "vitals.recorded", "event_id": "m-1", "occurred_at": now_minus(6),
                               "patient_id": p, "systolic_mmhg": 130, "spo2_pct": 98})
            await publish(js, {"type": "infusion.started", "event_id": "p-1", "occurred_at": now_minus(4),
                               "patient_id": p, "session_id": "ses-e2e"})
            sent = time.monotonic()
            await publish(js, {"type": "vitals.recorded", "event_id": "m-2", "occurred_at": now_minus(0),
                               "patient_id": p, "systolic_mmhg": 84, "spo2_pct": 97})
            (got,) = await receiver.wait_for(1, timeout=DELIVERY_DEADLINE_S)
            latency = time.monotonic() - sent
            print(f"\nraised -> received at the webhook: {latency * 1000:.0f} ms")
            assert got.path == "/clinician" and got.body["type"] == "alert.raised"
            assert got.body["rule"] == "R7" and got.body["severity"] == "critical"
            assert got.headers["x-im-event-action"] == "trigger"

            # acknowledged through the HTTP endpoint: relayed to the webhook, escalation stops
            async with httpx.AsyncClient() as client:
                answer = await client.post(f"{pager.ack_url}/pager/ack",
                                           json={"alert_id": got.body["alert_id"], "by": "dr-live"})
            assert answer.status_code == 202
            ack_got = (await receiver.wait_for(2))[1]
            assert ack_got.body["type"] == "alert.acknowledged" and ack_got.body["by"] == "dr-live"
            assert ack_got.headers["x-im-dedup-key"] == got.headers["x-im-dedup-key"]
            await wait_for(lambda: _all_acked(js, "IM_ALERTS", "pager"))
            statuses = await wait_for(lambda: _acknowledged(js, got.body["alert_id"]))
            assert statuses.destinations == ["clinician"] and statuses.acknowledged_by == "dr-live"
            assert not pager.failed.done()
    finally:
        await nc.close()
        await receiver.stop()


async def _acknowledged(js, alert_id):
    for status in await recent_alerts(js, limit=50):
        if status.alert_id == alert_id and status.state == "acknowledged":
            return status
    return None


async def test_receiver_down_then_failing_gets_every_alert_afterwards_in_order_once(nats_server, tmp_path):
    receiver = Receiver(script=[500, 500, 503])  # not listening yet: connections refused
    routes = load_routes(_routes_file(tmp_path, receiver.base))
    nc, js = await connect(nats_server.url)
    try:
        async with run_pager(Settings(), nats_server.url, routes, pager=_pager_settings()) as pager:
            await wait_for(lambda: _consumer_exists(js, "IM_ALERTS", "pager"))
            alerts = [_alert(f"pk-down-{i}") for i in range(4)]
            for a in alerts:
                await _publish_alert(js, a)
            await _publish_alert(js, alerts[0])  # a duplicate publish: dropped by the stream
            await wait_for(lambda: _failed_attempts(js, 3))  # refused a few times
            await receiver.start()  # then three 5xx, then accepted
            got = await receiver.wait_for(4, timeout=30)
            await wait_for(lambda: _all_acked(js, "IM_ALERTS", "pager"))
            assert not pager.failed.done()
        assert [r.body["dedup_key"] for r in got] == [a.dedup_key for a in alerts]  # in order
        assert len(receiver.accepted()) == 4  # nothing doubled
        assert [r.status for r in receiver.requests] == [500, 500, 503, 202, 202, 202, 202]
        attempts = [json.loads(m.data) for m in await stream_messages(js, "IM_AUDIT")
                    if m.subject.endswith(".page.attempted")]
        assert sum(a["delivered"] for a in attempts) == 4
        assert {a.get("error") for a in attempts if not a["delivered"] and "status_code" not in a} == {"connect"}
    finally:
        await nc.close()
        await receiver.stop()


async def _failed_attempts(js, n: int) -> bool:
    msgs = await stream_messages(js, "IM_AUDIT")
    return sum(1 for m in msgs if m.subject.endswith(".page.attempted") and not json.loads(m.data)["delivered"]) >= n


class PagerProcess:
    """The bridge as a real process (``python -m services.pager``), killable with SIGKILL."""

    def __init__(self, url: str, routes: Path, log: Path) -> None:
        self.url, self.routes, self.log_path = url, routes, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PagerProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "INFUSION_MONITOR_LOG_FORMAT": "json",
               "INFUSION_MONITOR_PAGER_ACK_BIND": "off", "INFUSION_MONITOR_PAGER_ACK_WAIT_S": "2"}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.pager", "--nats", self.url,
                                      "--routes", str(self.routes)], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc)
        self.log.close()
        return self.proc.returncode


async def test_bridge_killed_mid_delivery_loses_and_doubles_nothing(nats_server, tmp_path):
    receiver = Receiver()
    receiver.hold = asyncio.Event()  # the first request is held: the bridge is mid-delivery
    await receiver.start()
    routes_path = _routes_file(tmp_path, receiver.base)
    nc, js = await connect(nats_server.url)
    first = PagerProcess(nats_server.url, routes_path, tmp_path / "pager1.log").start()
    second = None
    try:
        await wait_for(lambda: _consumer_exists(js, "IM_ALERTS", "pager"))
        alerts = [_alert(f"pk-kill-{i}") for i in range(3)]
        for a in alerts:
            await _publish_alert(js, a)
        await asyncio.wait_for(receiver.held.wait(), 20)
        first.kill()  # SIGKILL while the receiver holds the request
        receiver.hold.set()
        receiver.hold = None
        await asyncio.sleep(0.2)
        second = PagerProcess(nats_server.url, routes_path, tmp_path / "pager2.log").start()
        got = await receiver.wait_for(3, timeout=30)
        await wait_for(lambda: _all_acked(js, "IM_ALERTS", "pager"), timeout=30)
        assert second.stop() == 0
        assert [r.body["dedup_key"] for r in got] == [a.dedup_key for a in alerts]  # in order, none lost
        keys = [r.headers["idempotency-key"] for r in receiver.accepted()]
        assert len(set(keys)) == 3  # exactly once per key; a re-send (if any) repeats the same key
        assert all(keys.count(k) <= 2 for k in keys) and keys.count(keys[0]) >= 1
        ids = [json.loads(m.data)["event_id"] for m in await stream_messages(js, "IM_ALERTS")]
        assert len(ids) == len(set(ids))
        audit = [json.loads(m.data) for m in await stream_messages(js, "IM_AUDIT")]
        page_ids = [e["event_id"] for e in audit if e["type"] == "page.requested"]
        assert len(page_ids) == len(set(page_ids)) == 3
    finally:
        if second is not None and second.proc is not None and second.proc.poll() is None:
            second.stop()
        if first.proc is not None and first.proc.poll() is None:
            first.stop()
        await nc.close()
        await receiver.stop()
