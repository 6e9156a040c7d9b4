"""Late starts live (architecture.md rule 9, "Live equals replay, out of order too"): a clinic log
whose pump start events are overtaken by their readings, anaphylaxis among them, through a real
nats-server: online replay equals offline replay, and the monitor SIGKILLed between a reaction
reading and its late start loses nothing (pending readings are part of the checkpointed state)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pytest

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.replay.offline import replay_lines
from infusion_monitor.replay.online import replay_online_async
from infusion_monitor.runtime.settings import Settings
from tests.integration.faults import connect, golden_ids, live_ids, publish, wait_processed
from tests.integration.live import MonitorProcess, wait_for
from tests.reordering import clinic_log, critical_readings, late_starts

pytestmark = pytest.mark.integration


def _late_log(seed: int) -> tuple[list[dict], list[dict], int]:
    """A late-start log with a critical reading that overtakes its start; the start-first log;
    the index of the last line before that start."""
    for attempt in range(seed, seed + 200):
        rng = random.Random(attempt)
        first = clinic_log(rng, patients=4)
        late = late_starts(first, rng)
        critical = {e["event_id"] for e, _ in critical_readings(first)}
        for i, event in enumerate(late):
            if event["type"] != "infusion.started":
                continue
            overtaking = [e for e in late[:i] if e["event_id"] in critical and e["patient_id"] == event["patient_id"]
                          and e["occurred_at"] >= event["occurred_at"]]
            if overtaking:
                return late, first, i
    raise AssertionError("no generated log has a critical reading that overtakes its start")


def _lines(log: list[dict]) -> list[bytes]:
    return [json.dumps(e, separators=(",", ":")).encode() for e in log]


def _checked(result) -> list[str]:
    return sorted(e.model_dump_json() for e in result.outputs if e.type in ("alert.raised", "antibody_test.due",
                                                                             "session.closed"))


@pytest.mark.parametrize("seed", [1, 2])
async def test_online_replay_of_late_starts_equals_offline_and_the_start_first_log(nats_server, seed):
    late, first, _ = _late_log(seed)
    offline = replay_lines(_lines(late), MonitorConfig())
    online = await replay_online_async(_lines(late), Settings(), nats_url=nats_server.url)
    assert "".join(online.jsonl()) == "".join(offline.jsonl())
    assert _checked(online) == _checked(replay_lines(_lines(first), MonitorConfig()))


async def test_monitor_killed_between_a_reaction_reading_and_its_late_start_loses_nothing(nats_server, tmp_path):
    late, first, split = _late_log(7)
    latest = max(datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) for e in late)
    tick = json.dumps({"type": "clock.tick", "event_id": "horizon", "inclusive": True,
                       "occurred_at": (latest + timedelta(hours=24)).isoformat().replace("+00:00", "Z")}).encode()
    lines = _lines(late)
    expected = golden_ids([*_lines(first)], tick)  # what the start-first log gives
    assert golden_ids(lines, tick) == expected  # and offline, the late log gives the same
    monitor = MonitorProcess(nats_server.url, tmp_path / "m1.log", args=["--clock", "event"]).start()
    nc = await connect([nats_server.url])
    js = nc.jetstream()
    try:
        await wait_for(lambda: _stream_ready(js), timeout=30)
        await publish(js, lines[:split])  # up to the reaction reading that overtook its start
        await wait_processed(js, ["monitor"], _nothing)  # acked: only in the stored state now
        monitor.kill()  # SIGKILL before the late start arrives
        await publish(js, [*lines[split:], tick])
        monitor = MonitorProcess(nats_server.url, tmp_path / "m2.log", args=["--clock", "event"]).start()
        await wait_processed(js, ["monitor"], _nothing)
        got, counts = await live_ids(js)
    finally:
        await nc.close()
        monitor.stop()
    assert got == expected
    assert max(counts.values()) == 1  # nothing doubled


async def _nothing() -> None:
    return None


async def _stream_ready(js) -> bool:
    try:
        await js.consumer_info("IM_IN", "monitor")
        return True
    except Exception:
        return False



@pytest.mark.parametrize("via", ["a later event", "the wall-clock advance"])
async def test_R8_critical_reading_that_matched_no_session_is_dead_lettered_with_the_event(nats_server, via):
    from infusion_monitor.runtime.names import Names
    from infusion_monitor.worker.app import run_worker
    from tests.integration.live import stream_messages

    reading = {"type": "vitals.recorded", "event_id": "mon-lost-1", "occurred_at": "2025-03-03T10:00:00Z",
               "patient_id": "pk-lost", "spo2_pct": 84, "symptoms": ["cyanosis"]}
    nc = await connect([nats_server.url])
    js = nc.jetstream()
    try:
        async with run_worker(Settings(), nats_server.url, Names(), clock="event") as worker:
            await publish(js, _lines([reading]))
            await wait_for(lambda: _handled(worker, 1), timeout=20)
            if via == "a later event":
                later = {"type": "clock.tick", "event_id": "tick-25h", "occurred_at": "2025-03-04T10:00:01Z"}
                await publish(js, _lines([later]))
            else:
                await worker.runner.advance(datetime.fromisoformat("2025-03-04T10:00:01+00:00"))
            letters = await wait_for(lambda: _letters(js, stream_messages), timeout=20)
        assert worker.runner.counts["unmatched"] == 1
    finally:
        await nc.close()
    [letter] = letters
    assert letter.headers["Im-Kind"] == "unmatched"
    assert letter.headers["Im-Reason"] == "critical reading matched no infusion session within 24 h"
    assert letter.headers["Im-Source-Subject"] == "im.in.pk-lost.vitals.recorded"
    assert json.loads(letter.data) == {**reading, "spo2_pct": 84.0}  # the event, as the monitor kept it


async def _handled(worker, count: int) -> bool:
    return worker.runner.processed >= count


async def _letters(js, stream_messages):
    return [m for m in await stream_messages(js, "IM_DLQ")] or None
