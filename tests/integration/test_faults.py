"""Crash safety and scale-out (issue: reliability): monitor processes SIGKILLed at random points,
and three partitioned instances with one killed, must end with exactly the offline golden's
alerts, due events and session closes, by id: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio

import pytest

from infusion_monitor.runtime.embedded import EmbeddedNats, free_port
from infusion_monitor.worker.partition import Partition
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


async def _drill(urls: list[str], tmp_path, instances: int, faults: int, seed: int,
                 fault=None, env: dict | None = None) -> tuple[int, dict, dict, object]:
    """Stream the drill log in chunks, injecting ``faults`` faults at random points between them
    (default: SIGKILL a random monitor instance and restart it); then compare with the golden."""
    lines, tick = drill_log(EVENTS)
    expected = golden_ids(lines, tick)
    url = ",".join(urls)
    monitors = [m for m in _monitors(url, tmp_path, instances)]
    for m in monitors:
        m.env.update(env or {})
        m.start()
    rng = seeded(seed)
    nc = await connect(urls)
    js = nc.jetstream()

    async def keep_alive() -> None:  # what `up` does: restart an instance that exited
        for m in monitors:
            if not m.running():
                m.start()

    async def kill_a_monitor() -> None:
        victim = rng.choice(monitors)
        victim.kill()
        victim.start()

    fault = fault or kill_a_monitor
    try:
        await asyncio.sleep(3.0)  # the first instance declares the streams
        done = 0
        for number, part in enumerate(chunks(lines, faults + 4)):
            await publish(js, part)
            await keep_alive()
            if done < faults and number >= 1:
                await asyncio.sleep(rng.uniform(0.05, 0.8))  # mid-stream, at a random point
                await fault()
                done += 1
        await publish(js, [tick])
        await wait_processed(js, _durables(instances), keep_alive)
        got, counts = await live_ids(js)
    finally:
        await nc.close()
        for m in monitors:
            m.stop()
    return done, expected, got, counts


def _assert_golden(expected, got, counts) -> None:
    for kind in expected:
        missing, extra = expected[kind] - got[kind], got[kind] - expected[kind]
        assert not missing and not extra, f"{kind}: missing {len(missing)}, extra {len(extra)}"
    assert max(counts.values()) == 1  # each id stored once


async def test_sigkill_at_random_points_loses_and_doubles_nothing(nats_server, tmp_path):
    kills, expected, got, counts = await _drill([nats_server.url], tmp_path, instances=1, faults=KILLS, seed=5)
    assert kills >= 10
    assert sum(len(v) for v in expected.values()) > 200  # a drill worth the name
    assert len(expected["session.closed"]) > 100 and expected["antibody_test.due"]
    _assert_golden(expected, got, counts)


async def test_three_partitioned_instances_one_killed_repeatedly_match_the_golden(nats_server, tmp_path):
    kills, expected, got, counts = await _drill([nats_server.url], tmp_path, instances=3, faults=6, seed=9)
    assert kills == 6
    _assert_golden(expected, got, counts)


async def test_broker_restarted_mid_stream(tmp_path):
    server = EmbeddedNats(tmp_path / "nats").start()
    restarts = 0

    async def restart_the_server() -> None:  # file storage survives a restart of the server
        nonlocal restarts
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        restarts += 1

    try:
        done, expected, got, counts = await _drill([server.url], tmp_path, instances=1, faults=3, seed=3,
                                                   fault=restart_the_server)
    finally:
        server.stop()
    assert restarts == 3
    _assert_golden(expected, got, counts)


async def test_three_node_cluster_one_node_killed_and_brought_back(tmp_path):
    ports = [free_port() for _ in range(6)]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in ports[3:])
    nodes = [EmbeddedNats(tmp_path / f"n{i}", port=ports[i], extra_args=[
        "--server_name", f"im-n{i}", "--cluster_name", "im-test", "--cluster", f"nats://127.0.0.1:{ports[3 + i]}",
        "--routes", routes]) for i in range(3)]
    for node in nodes:
        node.start()
    urls = [n.url for n in nodes]
    steps: list[str] = []

    async def fail_then_recover() -> None:  # kill node 1 at the first fault, bring it back at the third
        steps.append("fault")
        if len(steps) == 1:
            await asyncio.to_thread(nodes[1].kill)
        elif len(steps) == 3:
            await asyncio.to_thread(nodes[1].start)

    try:
        await _wait_for_jetstream(urls)
        done, expected, got, counts = await _drill(urls, tmp_path, instances=1, faults=4, seed=7,
                                                   fault=fail_then_recover, env={"INFUSION_MONITOR_REPLICAS": "3"})
        nc = await connect(urls)
        try:
            info = await nc.jetstream().stream_info("IM_ALERTS")
            assert info.config.num_replicas == 3
        finally:
            await nc.close()
    finally:
        for node in nodes:
            node.stop()
    _assert_golden(expected, got, counts)


async def _wait_for_jetstream(urls: list[str], timeout: float = 60) -> None:
    """A new cluster elects its JetStream meta leader first (bounded wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    nc = await connect(urls)
    try:
        while True:
            try:
                await nc.jetstream().account_info()
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()
