"""The monitor against a real nats-server: plain nats-py producers on the documented subjects,
alerts on the alert stream, restarts, duplicates and garbage (issue: the pipeline)."""

from __future__ import annotations

import json

import pytest

from tests.integration.live import MonitorProcess, alerts, connect, now_minus, publish, stream_messages, wait_for

pytestmark = pytest.mark.integration


def ev(type_: str, event_id: str, minutes_ago: float, patient: str = "pk-live", **fields):
    return {"type": type_, "event_id": event_id, "occurred_at": now_minus(minutes_ago), "patient_id": patient, **fields}


@pytest.fixture
def monitor(nats_server, tmp_path):
    proc = MonitorProcess(nats_server.url, tmp_path / "monitor.log").start()
    yield proc
    proc.stop()


async def _rules(js, patient="pk-live"):
    return [(a["rule"], a["severity"], a.get("session_id")) for a in await alerts(js) if a["patient_id"] == patient]


async def test_discontinuation_alert_reaches_the_alert_stream(nats_server, monitor):
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: _stream_exists(js, "IM_IN"))
        await publish(js, ev("vitals.recorded", "mon-a1", 6, systolic_mmhg=132, spo2_pct=98))
        await publish(js, ev("infusion.started", "pump-a1", 4, session_id="ses-live-1", pump_id="pump-9"))
        await publish(js, ev("vitals.recorded", "mon-a2", 0.1, systolic_mmhg=84, spo2_pct=91, symptoms=["wheeze"]))
        found = await wait_for(lambda: _critical(js))
        assert found["rule"] == "R7" and found["session_id"] == "ses-live-1"
        assert set(found["evidence"]["rules_met"]) >= {"R7", "R8", "R11"}
        assert found["outside_window"] is False
    finally:
        await nc.close()


async def test_restart_mid_window_keeps_the_session(nats_server, monitor, tmp_path):
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: _stream_exists(js, "IM_IN"))
        await publish(js, ev("patient.profile", "ehr-b1", 30, birth_date="1990-01-01", pregnant=True))
        await publish(js, ev("vitals.recorded", "mon-b1", 12, systolic_mmhg=120))
        await publish(js, ev("infusion.started", "pump-b1", 10, session_id="ses-live-2"))
        await wait_for(lambda: _has_rule(js, "P3"))
        monitor.kill()  # SIGKILL mid-window
        await publish(js, ev("vitals.recorded", "mon-b2", 0.1, symptoms=["stridor"]))  # while it is down
        restarted = MonitorProcess(nats_server.url, tmp_path / "monitor2.log").start()
        try:
            await wait_for(lambda: _has_rule(js, "R11"))
            rules = await _rules(js)
            assert ("R11", "critical", "ses-live-2") in rules  # the session survived the crash
            assert [r for r in rules if r[0] == "P3"] == [("P3", "medium", "ses-live-2")]  # not raised twice
        finally:
            assert restarted.stop() == 0
    finally:
        await nc.close()


async def test_same_event_twice_gives_one_alert(nats_server, monitor):
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: _stream_exists(js, "IM_IN"))
        await publish(js, ev("vitals.recorded", "mon-c1", 6, systolic_mmhg=125))
        await publish(js, ev("infusion.started", "pump-c1", 4, session_id="ses-live-3"))
        reading = ev("vitals.recorded", "mon-c2", 0.2, symptoms=["urticaria"])
        await publish(js, reading)
        await publish(js, reading)  # same Nats-Msg-Id: the stream drops it
        await publish(js, reading, msg_id=False)  # no header: lands in the stream, the monitor drops it
        await wait_for(lambda: _has_rule(js, "R12"))
        await publish(js, ev("vitals.recorded", "mon-c3", 0.1, heart_rate_bpm=80))  # a marker behind them
        await wait_for(lambda: _consumer_done(js))
        assert [r for r in await _rules(js) if r[0] == "R12"] == [("R12", "high", "ses-live-3")]
    finally:
        await nc.close()


async def test_garbage_goes_to_dead_letters_and_valid_events_keep_flowing(nats_server, monitor):
    nc, js = await connect(nats_server.url)
    try:
        await wait_for(lambda: _stream_exists(js, "IM_IN"))
        await js.publish("im.in.pk-live.vitals.recorded", b"\xff\xfe not json")
        await js.publish("im.in.pk-live.vitals.recorded", json.dumps(
            {"type": "vitals.recorded", "event_id": "mon-d0", "patient_id": "pk-live"}).encode())
        await publish(js, ev("vitals.recorded", "mon-d1", 6, systolic_mmhg=125))
        await publish(js, ev("infusion.started", "pump-d1", 4, session_id="ses-live-4"))
        await publish(js, ev("vitals.recorded", "mon-d2", 0.1, systolic_mmhg=80, spo2_pct=250))
        found = await wait_for(lambda: _critical(js))
        assert found["rule"] == "R7"
        letters = await wait_for(lambda: _dead_letters(js, 3))
        reasons = [(m.headers["Im-Kind"], m.headers["Im-Field"], m.headers["Im-Reason"]) for m in letters]
        assert reasons[0][0] == "rejected" and reasons[0][2].startswith("invalid JSON")
        assert reasons[1] == ("rejected", "occurred_at", "Field required")
        assert reasons[2] == ("dropped", "spo2_pct", "physically impossible: outside 0-100")
        assert letters[0].data == b"\xff\xfe not json"  # original bytes kept
        assert letters[0].headers["Im-Source-Subject"] == "im.in.pk-live.vitals.recorded"
    finally:
        await nc.close()


async def _stream_exists(js, name):
    try:
        await js.stream_info(name)
        return True
    except Exception:
        return False


async def _critical(js):
    found = [a for a in await alerts(js) if a["severity"] == "critical"]
    return found[0] if found else None


async def _has_rule(js, rule):
    return any(a["rule"] == rule for a in await alerts(js))


async def _dead_letters(js, count):
    letters = await stream_messages(js, "IM_DLQ")
    return letters if len(letters) >= count else None


async def _consumer_done(js):
    info = await js.consumer_info("IM_IN", "monitor")
    last = (await js.stream_info("IM_IN")).state.last_seq
    return info.ack_floor.stream_seq >= last and info.num_ack_pending == 0
