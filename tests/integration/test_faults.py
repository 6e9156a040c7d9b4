"""Crash safety and scale-out (issue: reliability): monitor processes SIGKILLed at random points,
and three partitioned instances with one killed, must end with exactly the offline golden's
alerts, due events and session closes, by id: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio

import pytest

from services.worker.partition import Partition
from tests.integration.faults import (
    chunks, connect, drill_log, golden_ids, live_ids, publish, seeded, wait_processed,
)
from tests.integration.live import MonitorProcess

pytestmark = pytest.mark.integration
EVENTS = 15_000  # ~250 sessions over a week of a clinic, reactions, labs, antibody results
KILLS = 12


def _monitors(url, tmp_path, count: int) -> list[MonitorProcess]:
    if count == 1:
        return [MonitorProcess(url, tmp_path / "m.log", args=["--clock", "event"])]
    return [MonitorProcess(url, tmp_path / f"m{i}.log", args=["--clock", "event", "--partition", f"{i}/{count}"])
            for i in range(count)]


def _durables(count: int) -> list[str]:
    return ["monitor" + Partition(i, count).suffix for i in range(count)]


async def _drill(nats_server, tmp_path, instances: int, kills: int, seed: int) -> tuple[int, dict, dict, object]:
    lines, tick = drill_log(EVENTS)
    expected = golden_ids(lines, tick)
    monitors = [m.start() for m in _monitors(nats_server.url, tmp_path, instances)]
    rng = seeded(seed)
    nc = await connect([nats_server.url])
    js = nc.jetstream()

    async def keep_alive() -> None:  # what `up` does: restart an instance that exited
        for m in monitors:
            if not m.running():
                m.start()

    try:
        await asyncio.sleep(2.0)  # the first instance declares the streams
        done_kills = 0
        parts = chunks(lines, kills + 4)
        for number, part in enumerate(parts):
            await publish(js, part)
            if done_kills < kills and number >= 1:
                await asyncio.sleep(rng.uniform(0.05, 0.8))  # mid-stream, at a random point
                victim = rng.choice(monitors)
                victim.kill()
                done_kills += 1
                victim.start()
        await publish(js, [tick])
        await wait_processed(js, _durables(instances), keep_alive)
        got, counts = await live_ids(js)
    finally:
        await nc.close()
        for m in monitors:
            m.stop()
    return done_kills, expected, got, counts


async def test_sigkill_at_random_points_loses_and_doubles_nothing(nats_server, tmp_path):
    kills, expected, got, counts = await _drill(nats_server, tmp_path, instances=1, kills=KILLS, seed=5)
    assert kills >= 10
    assert sum(len(v) for v in expected.values()) > 200  # a drill worth the name
    assert len(expected["session.closed"]) > 100 and expected["antibody_test.due"]
    for kind in expected:
        assert got[kind] == expected[kind], f"{kind}: missing {len(expected[kind] - got[kind])}, extra {len(got[kind] - expected[kind])}"
    assert max(counts.values()) == 1  # each id stored once


async def test_three_partitioned_instances_one_killed_repeatedly_match_the_golden(nats_server, tmp_path):
    kills, expected, got, counts = await _drill(nats_server, tmp_path, instances=3, kills=6, seed=9)
    assert kills == 6
    for kind in expected:
        assert got[kind] == expected[kind], f"{kind}: missing {len(expected[kind] - got[kind])}, extra {len(got[kind] - expected[kind])}"
    assert max(counts.values()) == 1
