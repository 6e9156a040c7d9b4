"""Issue 14, privacy by default: a raw record number used as ``patient_id`` and a name in a label
reached the logs, the alert stream (400 days), the audit stream (6 years) and the PagerDuty
payload. Now the key's format is enforced at the edge (the monitor dead-letters the event with
the reason), and third-party pagers get only kind, severity, site, chair, a link and the alert id.

The monitor runs as a real process (JSON logs), the bridge against a real PagerDuty-shaped
receiver and a webhook on loopback, on a real nats-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infusion_monitor.pager.app import PagerSettings, run_pager
from infusion_monitor.pager.routes import parse_routes
from infusion_monitor.runtime.settings import Settings
from tests.integration.live import MonitorProcess, connect, monitor_ready, now_minus, publish, stream_messages, wait_for
from tests.pager.receiver import Receiver

pytestmark = pytest.mark.integration
MRN = "MRN10004"
NAME = "Jane-Doe"
ROUTES = """
source = "infusion-monitor"
session_url = "https://board.example/sessions/{session_id}"
alert_url = "https://board.example/alerts/{alert_id}"
[destinations.pd]
adapter = "pagerduty"
url = "{base}/v2/enqueue"
routing_key_env = "PD_KEY"
[destinations.ward]
adapter = "webhook"
url = "{base}/ward"
[[routes]]
name = "all"
severities = ["critical", "high", "medium", "low", "info"]
  [[routes.tiers]]
  destinations = ["pd", "ward"]
"""


def _reaction(patient: str, tag: str, session: str, pump: str) -> list[dict]:
    def ev(type_, n, minutes, **fields):
        return {"type": type_, "event_id": f"{tag}-{n}", "occurred_at": now_minus(minutes), "patient_id": patient, **fields}

    return [ev("vitals.recorded", 1, 8, systolic_mmhg=131, spo2_pct=98),
            ev("infusion.started", 2, 6, session_id=session, pump_id=pump, site_id="site-north"),
            ev("vitals.recorded", 3, 0.1, systolic_mmhg=79, spo2_pct=88, symptoms=["stridor"])]


async def _everything(js, stream: str) -> str:
    return "\n".join(m.subject + " " + m.data.decode(errors="replace") for m in await stream_messages(js, stream))


async def test_raw_record_numbers_are_bad_input_and_pagers_get_only_what_they_need(nats_server, tmp_path):
    receiver = await Receiver().start()
    monitor = MonitorProcess(nats_server.url, tmp_path / "monitor.log").start()
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: monitor_ready(js), timeout=30)
        routes = parse_routes(ROUTES.replace("{base}", receiver.base))
        pager = PagerSettings(ack_bind=None, env={"PD_KEY": "rk-privacy-test"})
        async with run_pager(Settings(), nats_server.url, routes, pager=pager) as running:
            for event in _reaction(MRN, "raw", "ses-raw-1", "pump-3"):
                await publish(js, event)
            # a session id with a name in it (a label is a site's choice; the session never leaves
            # the product); the chair is shown to pagers by design, so it must be a chair's name
            for event in _reaction("pk-priv", "named", f"ses-{NAME}", "chair-7"):
                await publish(js, event)
            # the pseudonymous patient's critical alert is paged to both destinations
            await receiver.wait_for(2, timeout=30)

            async def rejected() -> int:
                return sum(1 for m in await stream_messages(js, "IM_DLQ") if MRN.encode() in m.data)

            assert await wait_for(rejected, timeout=30) == 3  # every event of the raw MRN, with the reason
            letter = (await stream_messages(js, "IM_DLQ"))[0]
            assert letter.headers["Im-Field"] == "patient_id" and "pseudonymous" in letter.headers["Im-Reason"]
            assert MRN not in letter.headers["Im-Reason"]  # the reason never echoes the value (the dead
            # letter itself keeps the original bytes and subject, for operators only: deploy/nats)
            assert not running.failed.done()
        for stream in ("IM_ALERTS", "IM_AUDIT", "IM_OUT"):
            assert MRN not in await _everything(js, stream), stream
        alerts = [json.loads(m.data) for m in await stream_messages(js, "IM_ALERTS") if m.subject.endswith("raised")]
        assert alerts and all(a["patient_id"] == "pk-priv" for a in alerts)
        for request in receiver.requests:  # PagerDuty and the webhook
            wire = json.dumps(request.body) + json.dumps(request.headers)
            for leaked in (MRN, NAME, "pk-priv", "ses-", "stridor", "systolic", "SpO2"):
                assert leaked not in wire, (request.path, leaked)
        pd = next(r.body for r in receiver.requests if r.path == "/v2/enqueue")
        assert set(pd["payload"]["custom_details"]) <= {"alert_id", "kind", "severity", "site_id", "chair", "tier", "page"}
        assert pd["payload"]["custom_details"]["chair"] == "chair-7"  # where to go: the alert carries its chair
        assert pd["dedup_key"] == alerts[0]["alert_id"] and pd["links"][0]["href"].endswith(alerts[0]["alert_id"])
    finally:
        await nc.close()
        monitor.stop()
        await receiver.stop()
    log = Path(tmp_path / "monitor.log").read_text()
    assert MRN not in log and "event rejected" in log
