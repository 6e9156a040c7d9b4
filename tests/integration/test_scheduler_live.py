"""The antibody-test scheduler and the lab side on a real nats-server, on the wall clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from infusion_monitor.schemas.base import format_time

from tests.integration.live import (
    MonitorProcess, alerts, connect, consumer_caught_up, monitor_ready, now_minus, outputs, publish, wait_for,
)

pytestmark = pytest.mark.integration
FAST_TICK = {"INFUSION_MONITOR_TICK_SECONDS": "0.2"}


def ev(type_, event_id, minutes_ago, patient, **fields):
    return {"type": type_, "event_id": event_id, "occurred_at": now_minus(minutes_ago), "patient_id": patient, **fields}


async def test_due_event_published_once_after_a_stop_across_its_due_time(nats_server, tmp_path):
    monitor = MonitorProcess(nats_server.url, tmp_path / "m1.log", FAST_TICK).start()
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: monitor_ready(js))
        p = "pk-sched"
        await publish(js, ev("vitals.recorded", "s-1", 12, p, systolic_mmhg=120, spo2_pct=98))
        await publish(js, ev("infusion.started", "s-2", 10, p, session_id="ses-sched"))
        # a reaction charted 8 s in the future: R14 makes a test due then (the R13 alert comes now)
        reaction = ev("vitals.recorded", "s-3", -8 / 60, p, session_id="ses-sched", temperature_c=38.3)
        due_at = datetime.fromisoformat(reaction["occurred_at"])
        await publish(js, reaction)
        await wait_for(lambda: _rule(js, "R13"))
        await wait_for(lambda: consumer_caught_up(js))
        assert await outputs(js, "antibody_test.due") == []  # not due yet
        monitor.kill()  # the scheduler is down while the due time passes
        await asyncio.sleep(max(0.0, (due_at - datetime.now(UTC)).total_seconds()) + 1.5)
        assert await outputs(js, "antibody_test.due") == []
        monitor = MonitorProcess(nats_server.url, tmp_path / "m2.log", FAST_TICK).start()
        due = await wait_for(lambda: outputs(js, "antibody_test.due"), timeout=20)
        assert [(d["reason"], d["patient_id"], d["occurred_at"]) for d in due] == [
            ("after_reaction", p, format_time(due_at))]  # dated at its due time, not when published
        monitor.kill()  # and once more: a restart does not publish it again
        monitor = MonitorProcess(nats_server.url, tmp_path / "m3.log", FAST_TICK).start()
        await publish(js, ev("vitals.recorded", "s-4", 0, "pk-other", heart_rate_bpm=70))
        await wait_for(lambda: consumer_caught_up(js))
        await asyncio.sleep(1)
        assert len(await outputs(js, "antibody_test.due")) == 1
    finally:
        await nc.close()
        monitor.stop()


async def test_session_monitor_sees_persistent_antibodies_from_the_lab_side(nats_server, tmp_path):
    monitor = MonitorProcess(nats_server.url, tmp_path / "m.log", FAST_TICK).start()
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: monitor_ready(js))
        p = "pk-ada"
        day = 24 * 60
        await publish(js, ev("lab.resulted", "l-1", 70 * day, p, code="58012-6", value="positive"))
        await publish(js, ev("lab.resulted", "l-2", 20 * day, p, code="58012-6", value="positive"))
        await wait_for(lambda: _rule(js, "R16"))
        persistence = await wait_for(lambda: outputs(js, "antibody.persistence"))
        assert persistence[0]["persistent"] is True
        await publish(js, ev("vitals.recorded", "v-1", 22, p, systolic_mmhg=121))
        await publish(js, ev("infusion.started", "i-1", 20, p, session_id="ses-ada"))
        p5 = await wait_for(lambda: _rule(js, "P5"))
        assert p5[0]["session_id"] == "ses-ada"
        gap = await wait_for(lambda: _rule(js, "M1"))  # due at t0 + 15 min = 5 min ago
        assert gap[0]["evidence"]["gap_limit_minutes"] == 15 and gap[0]["evidence"]["enhanced_monitoring"] is True
    finally:
        await nc.close()
        monitor.stop()


async def _rule(js, rule):
    return [a for a in await alerts(js) if a["rule"] == rule]
