"""Nothing silences alerting (architecture.md rule 9; issue: poison messages, runaway clocks):
the live monitor worker on a real nats-server meets defects, hostile input, oversized bodies,
conflicting duplicates and future-dated events, and the critical alert beside them still arrives."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js.errors import BadRequestError

from infusion_monitor.cores import all_cores
from infusion_monitor.runtime.embedded import EmbeddedNats
from infusion_monitor.runtime.limits import INBOUND_MAX_BYTES
from infusion_monitor.runtime.names import Names
from infusion_monitor.runtime.settings import Settings
from infusion_monitor.worker import app as worker_app
from infusion_monitor.worker.app import run_worker
from tests.defects import Defect
from tests.hostile import encode, hostile_event
from tests.integration.live import now_minus, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_server):
    """A JetStream context on the test's server, closed after the test."""
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


def _ev(type_: str, event_id: str, minutes_ago: float, patient: str = "pk-live", **fields: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": event_id, "occurred_at": now_minus(minutes_ago), "patient_id": patient, **fields}


def _session(patient: str) -> list[dict[str, Any]]:
    """A baseline, a start and a reading that meets R7 (systolic 78), all just now."""
    return [_ev("vitals.recorded", f"{patient}-b", 6, patient, systolic_mmhg=128, spo2_pct=98),
            _ev("infusion.started", f"{patient}-s", 5, patient, session_id=f"ses-{patient}"),
            _ev("vitals.recorded", f"{patient}-r", 0.1, patient, systolic_mmhg=78, spo2_pct=95)]


async def _publish(js: Any, names: Names, event: dict[str, Any] | bytes, subject_patient: str = "pk-live",
                   msg_id: str | None = None) -> None:
    data = event if isinstance(event, bytes) else json.dumps(event).encode()
    kind = event.get("type", "x") if isinstance(event, dict) else "vitals.recorded"
    patient = event.get("patient_id", subject_patient) if isinstance(event, dict) else subject_patient
    await js.publish(names.inbound(kind, patient), data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)


async def _stream(js: Any, stream: str) -> list[Any]:
    info = await js.stream_info(stream)
    found = []
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        found.append(await js.get_msg(stream, seq))
    return found


async def _alerts(js: Any, names: Names) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in await _stream(js, names.stream_alerts)]


async def _critical(js: Any, names: Names, patient: str) -> list[dict[str, Any]]:
    return [a for a in await _alerts(js, names) if a["patient_id"] == patient and a["severity"] == "critical"]


async def _drained(js: Any, names: Names, worker: Any) -> bool:
    """Every stored inbound message taken in and no batch being handled."""
    last = (await js.stream_info(names.stream_in)).state.last_seq
    return worker.runner.stream_seq >= last and not worker.runner.lock.locked()


async def test_a_message_a_core_fails_on_is_retried_then_set_aside_and_alerting_goes_on(nats_server, js, monkeypatch, capsys):
    monkeypatch.setattr(worker_app, "all_cores", lambda: [*all_cores(), Defect()])
    names = Names()
    async with run_worker(Settings(), nats_server.url, names) as worker:
        first, start, critical = _session("pk-live")
        for event in (first, start, _ev("vitals.recorded", "boom", 1, spo2_pct=97, symptoms=["name: Anna"]), critical):
            await _publish(js, names, event)
        found = await wait_for(lambda: _critical(js, names, "pk-live"), timeout=20)
        await wait_for(lambda: _drained(js, names, worker), timeout=20)
        assert not worker.failed.done()  # no restart: the worker recovered in place
        assert worker.runner.attempts[3] == 3 and worker.runner.counts["quarantined"] == 1
        letters = [m for m in await _stream(js, names.stream_dlq) if m.headers["Im-Kind"] == "quarantined"]
    assert [a["rule"] for a in found] == ["R7"]
    assert len(letters) == 1 and json.loads(letters[0].data)["event_id"] == "boom"
    assert letters[0].headers["Im-Reason"] == "set aside: the monitor failed on it (ZeroDivisionError) 3 times"
    assert "Anna" not in capsys.readouterr().out  # the error's type in the log, never the message


async def test_a_patient_state_too_large_to_store_is_kept_in_memory_and_reported_not_a_stop(nats_server, js, monkeypatch):
    from infusion_monitor.worker import runner as worker_runner

    monkeypatch.setattr(worker_runner, "RECORD_MAX_BYTES", 600)  # (the bounds keep real records far below)
    names = Names()
    async with run_worker(Settings(), nats_server.url, names) as worker:
        for event in _session("pk-big"):
            await _publish(js, names, event)
        await wait_for(lambda: _critical(js, names, "pk-big"), timeout=20)
        await worker.runner.checkpoint(wait=True)
        assert worker.runner.counts["oversized"] >= 1 and not worker.failed.done()
        assert worker.runner.last_error == "a patient's state grew too large to store"


async def test_an_inbound_body_over_the_cap_is_refused_at_publish_and_one_below_is_dead_lettered_whole(nats_server, js):
    names = Names()
    async with run_worker(Settings(), nats_server.url, names) as worker:
        with pytest.raises(BadRequestError):  # the producer learns it at once
            await _publish(js, names, b"x" * (INBOUND_MAX_BYTES + 1))
        near = b'{"type": "vitals.recorded", "oops": "' + b"y" * (INBOUND_MAX_BYTES - 100) + b'"'
        await _publish(js, names, near)
        for event in _session("pk-live"):
            await _publish(js, names, event)
        await wait_for(lambda: _critical(js, names, "pk-live"), timeout=20)
        (letter,) = await wait_for(lambda: _stream(js, names.stream_dlq), timeout=20)
        assert not worker.failed.done()
    assert letter.data == near and letter.headers["Im-Size"] == str(len(near))
    assert "Im-Truncated" not in letter.headers and len(letter.headers["Im-Sha256"]) == 64


async def test_a_conflicting_duplicate_beyond_the_old_memory_is_dead_lettered_with_both_digests(nats_server, js):
    names = Names()
    async with run_worker(Settings(), nats_server.url, names) as worker:
        original = _ev("vitals.recorded", "mon-dup", 50, spo2_pct=97)
        await _publish(js, names, original)
        for i in range(40):  # more than the 16 ids the monitor used to remember per patient
            await _publish(js, names, _ev("vitals.recorded", f"mon-{i}", 49 - i, heart_rate_bpm=70 + i % 5))
        await _publish(js, names, {**original, "spo2_pct": 84})  # same id, other content, no Nats-Msg-Id
        letters = await wait_for(lambda: _stream(js, names.stream_dlq), timeout=20)
        assert worker.runner.counts["duplicate"] == 1
    (letter,) = letters
    assert letter.headers["Im-Kind"] == "duplicate"
    assert letter.headers["Im-Digest-Earlier"] != letter.headers["Im-Digest-Received"]
    assert not [a for a in await _alerts(js, names) if a["rule"] == "R8"]  # the copy was not judged


async def test_a_clock_tick_on_another_types_subject_is_refused(nats_server, js):
    names = Names()
    async with run_worker(Settings(), nats_server.url, names) as worker:
        tick = {"type": "clock.tick", "event_id": "sneaky", "occurred_at": now_minus(-60)}
        await js.publish(names.inbound("vitals.recorded", "pk-live"), json.dumps(tick).encode())
        (letter,) = await wait_for(lambda: _stream(js, names.stream_dlq), timeout=20)
        assert letter.headers["Im-Field"] == "type"
        assert worker.runner.engine.clock < datetime.now(UTC) + timedelta(minutes=1)  # the tick said +60 min


async def test_future_events_never_move_the_clock_past_the_wall_clock_and_a_future_tick_is_ignored(nats_server, js,
                                                                                                   monkeypatch):
    from infusion_monitor.cli.status import collect, render

    monkeypatch.setenv("INFUSION_MONITOR_HEARTBEAT_S", "0.5")
    names = Names()
    async with run_worker(Settings(), nats_server.url, names) as worker:
        for event in _session("pk-now")[:2]:  # a session started 5 minutes ago: M1 due in 25 min
            await _publish(js, names, event)
        await _publish(js, names, _ev("vitals.recorded", "far-1", -600, "pk-far", spo2_pct=97))  # 10 h ahead
        await _publish(js, names, {"type": "clock.tick", "event_id": "tick-far",
                                   "occurred_at": now_minus(-24 * 60)})
        await _publish(js, names, _ev("vitals.recorded", "now-1", 0.1, "pk-now", spo2_pct=97))
        await wait_for(lambda: _drained(js, names, worker), timeout=20)
        await asyncio.sleep(1.5)  # wall ticks
        clock = worker.runner.engine.clock
        assert clock <= datetime.now(UTC) + timedelta(minutes=5)
        assert worker.runner.counts["future"] == 2
        assert not [a for a in await _alerts(js, names) if a["rule"] in ("M1", "M2")]  # no timer jumped
        heard = await collect(nats_server.url, 1.5)  # what `infusion-monitor status` shows an operator
        assert heard["monitor/0"].counters["future"] == 2 and heard["monitor/0"].lag == 0
        assert "monitor/0" in render(heard, datetime.now(UTC))


# -- the drill: schema-valid hostile events through the real worker -----------------------------

@pytest.fixture(scope="module")
def drill_server(tmp_path_factory):
    server = EmbeddedNats(tmp_path_factory.mktemp("drill") / "nats").start()
    yield server
    server.stop()


DRILL = {"runs": 0, "sent": 0, "refused": 0, "dead_lettered": 0, "judged": 0}


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hostile=st.lists(hostile_event(), min_size=40, max_size=80))
def test_hostile_drill_the_critical_alert_arrives_every_event_is_judged_or_dead_lettered(drill_server, hostile):
    DRILL["runs"] += 1
    asyncio.run(_drill(drill_server.url, Names(f"dr{DRILL['runs']}"), hostile))


async def _drill(url: str, names: Names, hostile: list[dict[str, Any]]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        async with run_worker(Settings(), url, names) as worker:
            session = _session("pk-drill")
            lines = [*[encode(e) for e in hostile[:20]], *[json.dumps(e).encode() for e in session],
                     *[encode(e) for e in hostile[20:]]]
            accepted = 0
            for line in lines:
                try:  # on the subject a producer would use for it (its type; ticks only as the product)
                    event = json.loads(line)
                    await js.publish(names.inbound(str(event.get("type")), event.get("patient_id")), line)
                    accepted += 1
                except BadRequestError:  # over the size cap: refused to the producer
                    DRILL["refused"] += 1
            await wait_for(lambda: _critical(js, names, "pk-drill"), timeout=30)
            runner = worker.runner

            async def handled() -> bool:  # every accepted message handled (judged or dead-lettered)
                return runner.processed >= accepted

            await wait_for(handled, timeout=30)
            assert not worker.failed.done() and runner.counts["quarantined"] == 0 and runner.last_error is None
            assert runner.engine.clock <= datetime.now(UTC) + timedelta(minutes=5)  # no clock jump
            letters = await _stream(js, names.stream_dlq)
            rejected = {m.headers["Im-Source-Seq"] for m in letters if m.headers["Im-Kind"] == "rejected"}
            DRILL["sent"] += len(lines)
            DRILL["dead_lettered"] += len(rejected)
            DRILL["judged"] += accepted - len(rejected)  # (some with a reading dropped or a warning)
            print(f"drill so far: {DRILL}")
    finally:
        await nc.close()
