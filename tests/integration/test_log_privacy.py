"""No free text and no birth date ever reaches a service's log (issue #5, log privacy).

The monitor and the pager run as real processes (JSON logs, ``INFUSION_MONITOR_LOG_FORMAT=json``)
on events that carry free text (``note`` on adverse events and ``contraindication.cleared``,
``concomitant_therapies``, unknown extra fields, an unknown adverse-event category), birth dates,
and bad input that is rejected or partly dropped (invalid JSON, a wrong type, an impossible date,
readings of the wrong type, unknown symptom codes, a second start for a known session). Every
line of both logs (stdout and stderr) is searched for each of those strings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.live import ROOT, MonitorProcess, connect, now_minus, wait_for

pytestmark = pytest.mark.integration

P = "pk-priv"
SECRETS = {
    "birth date": "1961-07-23",
    "birth date (rejected, impossible)": "1958-02-30",
    "birth date (other patient)": "2009-11-04",
    "therapy": "Zyxofimab weekly per Dr Quillfeather",
    "therapy 2": "fingolimod 0.5 mg (started by Dr Quillfeather)",
    "adverse note": "Patient Jane Roe reports dizziness after the school run",
    "clearance note": "Cleared by Prof Okonkwo-Brandt after MRI 2025-01-09",
    "extra field": "Lives at 12 Hawthorn Lane, call her daughter",
    "extra nested": "MRN 88-44-1234",
    "unknown category": "wandering-thoughts-of-Grimsby",
    "bad reading": "ninety over sixty per nurse Alvarez",
    "unknown symptom": "tingling-like-Aunt-Mabel",
    "broken json": "Mr Featherstonehaugh-Smythe",
    "wrong type": "Ms Thistlewood note in a number field",
    "unknown type": "free text in an unknown event type: Mrs Pennywhistle",
}


def ev(type_: str, event_id: str, minutes_ago: float, patient: str = P, **fields):
    return {"type": type_, "event_id": event_id, "occurred_at": now_minus(minutes_ago), "patient_id": patient, **fields}


def lines() -> list[tuple[str, bytes]]:
    s = SECRETS
    events = [
        ev("patient.profile", "ehr-p1", 40, birth_date=s["birth date"], sex="F", treatment_start="2024-01-02",
           concomitant_therapies=[s["therapy"], s["therapy 2"]], comment=s["extra field"],
           extra={"chart": s["extra nested"]}),
        ev("patient.profile", "ehr-p2", 40, "pk-priv-child", birth_date=s["birth date (other patient)"],
           concomitant_therapies=[s["therapy"]]),
        ev("vitals.recorded", "mon-p1", 12, systolic_mmhg=124, spo2_pct=98, free_text=s["extra field"]),
        ev("infusion.started", "pump-p1", 10, session_id="ses-priv-1", pump_id="p-7", note=s["extra field"]),
        ev("infusion.started", "pump-p2", 9, "pk-priv-child", session_id="ses-priv-2"),
        ev("vitals.recorded", "mon-p2", 6, systolic_mmhg=s["bad reading"], heart_rate_bpm=80,
           symptoms=["urticaria", s["unknown symptom"]]),
        ev("adverse_event.reported", "ae-p1", 5, category="depression", session_id="ses-priv-1",
           note=s["adverse note"]),
        ev("adverse_event.reported", "ae-p2", 5, category=s["unknown category"], note=s["adverse note"]),
        ev("adverse_event.reported", "ae-p3", 4, category="hypersensitivity", note=s["adverse note"]),
        ev("contraindication.cleared", "cc-p1", 3, reason="hypersensitivity", clinician="dr-7",
           note=s["clearance note"]),
        ev("contraindication.cleared", "cc-p2", 3, reason="liver_injury", note=s["clearance note"]),
        # rejected: an impossible birth date, a wrong type, a second start of a known session
        ev("patient.profile", "ehr-p3", 2, birth_date=s["birth date (rejected, impossible)"],
           concomitant_therapies=[s["therapy"]]),
        ev("adverse_event.reported", "ae-p4", 2, category="infection", note=12, session_id=s["wrong type"]),
        ev("infusion.started", "pump-p3", 2, session_id="ses-priv-1", note=s["clearance note"]),
        ev("lab.resulted", "lab-p1", 2, code="1742-6", value=s["wrong type"]),
        ev("patient.unknown_kind", "x-p1", 1, note=s["unknown type"]),
    ]
    out = [(f"im.in.{e['patient_id']}.{e['type']}", json.dumps(e).encode()) for e in events]
    out.append((f"im.in.{P}.adverse_event.reported",
                b'{"type": "adverse_event.reported", "note": "' + s["broken json"].encode() + b'", "patient_id": '))
    out.append((f"im.in.{P}.patient.profile", json.dumps([s["birth date"], s["therapy"]]).encode()))
    return out


class PagerProcess:
    def __init__(self, url: str, log_path: Path) -> None:
        self.url, self.log_path = url, log_path

    def start(self) -> PagerProcess:
        env = {**os.environ, "INFUSION_MONITOR_LOG_FORMAT": "json", "INFUSION_MONITOR_PAGER_ACK_BIND": "off",
               "INFUSION_MONITOR_PAGER_LOOKBACK_MINUTES": "120"}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "infusion_monitor.cli.main", "service", "pager", "--nats", self.url],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


async def test_no_free_text_or_birth_date_in_any_service_log(nats_server, tmp_path):
    monitor = MonitorProcess(nats_server.url, tmp_path / "monitor.log").start()
    pager = PagerProcess(nats_server.url, tmp_path / "pager.log").start()
    nc, js = await connect(nats_server.url)
    try:
        async def ready() -> bool:
            try:
                await js.consumer_info("IM_IN", "monitor")
                await js.consumer_info("IM_ALERTS", "pager")
                return True
            except Exception:
                return False

        await wait_for(ready, timeout=30)
        sent = lines()
        for subject, data in sent:
            await js.publish(subject, data)

        async def done() -> bool:
            info = await js.consumer_info("IM_IN", "monitor")
            alerts = await js.stream_info("IM_ALERTS")
            pager_info = await js.consumer_info("IM_ALERTS", "pager")
            return (info.ack_floor.stream_seq >= len(sent) and info.num_ack_pending == 0
                    and alerts.state.messages > 0 and pager_info.num_pending == 0 and pager_info.num_ack_pending == 0)

        await wait_for(done, timeout=40)
        dead = await js.stream_info("IM_DLQ")
        assert dead.state.messages >= 5  # the rejections did happen (and were logged: below)
    finally:
        await nc.close()
        # exit codes are not this test's subject (a shutdown traceback is searched like any line)
        monitor.stop()
        pager.stop()
    logs = {"monitor": (tmp_path / "monitor.log").read_text(), "pager": (tmp_path / "pager.log").read_text()}
    assert logs["monitor"].count('"event rejected"') >= 4, logs["monitor"][-3000:]
    assert '"reading dropped"' in logs["monitor"]
    assert '"alert raised"' in logs["monitor"]
    for service, text in logs.items():
        for number, line in enumerate(text.splitlines(), start=1):
            for what, secret in SECRETS.items():
                assert secret not in line, f"{service} log line {number} carries the {what}: {line}"
                # and not a recognisable piece of it (a log could quote part of a value)
                for word in (w for w in secret.replace("-", " ").split() if len(w) >= 9 and not w.isdigit()):
                    assert word not in line, f"{service} log line {number} carries part of the {what} ({word!r})"
