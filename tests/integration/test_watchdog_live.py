"""The watchdog live (architecture.md rule 9, "Its own death pages someone"): a real monitor
process and the paging bridge on a real nats-server, a real loopback receiver as the failsafe.
SIGSTOP the monitor, SIGKILL it, restart it again and again, kill the broker: each reaches the
failsafe as an operator alert within the configured time; the outbound heartbeat stops when the
bridge stops."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from infusion_monitor.pager.app import PagerSettings, run_pager
from infusion_monitor.runtime.settings import Settings
from tests.integration.live import MonitorProcess
from tests.pager.fixtures import routes
from tests.pager.receiver import Receiver

pytestmark = pytest.mark.integration

FAST = {"INFUSION_MONITOR_HEARTBEAT_S": "0.5"}
WATCHDOG = {"INFUSION_MONITOR_WATCHDOG_SILENT_S": "3", "INFUSION_MONITOR_WATCHDOG_BROKER_S": "2",
            "INFUSION_MONITOR_WATCHDOG_EXPECT": "monitor/0", "INFUSION_MONITOR_WATCHDOG_RESTARTS": "3",
            "INFUSION_MONITOR_WATCHDOG_HEARTBEAT_EVERY_S": "0.5",
            "INFUSION_MONITOR_PAGER_ACK_BIND": "off", "INFUSION_MONITOR_HEARTBEAT_S": "0.5"}


def _pager_settings(receiver: Receiver) -> PagerSettings:
    return PagerSettings.load({**WATCHDOG, "INFUSION_MONITOR_WATCHDOG_HEARTBEAT_URL": f"{receiver.base}/heartbeat"})


def _operator(receiver: Receiver, key: str, resolved: bool = False) -> list:
    """Pages at the failsafe for the operator condition ``kind/subject`` (triggers, or resolves)."""
    kind, _, subject = key.partition("/")
    return [r for r in receiver.accepted() if r.path == "/failsafe" and r.body.get("kind") == kind
            and (r.body.get("evidence") or {}).get("subject") == subject
            and (r.body.get("type") == "alert.resolved") == resolved]


async def _until(predicate, timeout: float) -> float:
    """Seconds until ``predicate()`` holds (bounded)."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)
    return time.monotonic() - began


def _heartbeats(receiver: Receiver) -> int:
    return len([r for r in receiver.accepted() if r.path == "/heartbeat"])


async def test_a_stopped_then_killed_monitor_pages_the_failsafe_and_the_outbound_heartbeat_follows(nats_server, tmp_path):
    receiver = await Receiver().start()
    monitor = MonitorProcess(nats_server.url, tmp_path / "m.log", env=FAST).start()
    try:
        async with run_pager(Settings(), nats_server.url, routes(receiver.base), pager=_pager_settings(receiver)):
            await _until(lambda: _heartbeats(receiver) >= 2, 30)  # connected and hearing the monitor
            os.kill(monitor.proc.pid, signal.SIGSTOP)  # stuck: alive, silent
            took = await _until(lambda: _operator(receiver, "system.service_silent/monitor/0"), 15)
            print(f"\nSIGSTOP -> system.service_silent at the failsafe: {took:.1f} s (limit 3 s + check)")
            beats = _heartbeats(receiver)
            await asyncio.sleep(1.5)
            assert _heartbeats(receiver) <= beats + 1  # the outbound heartbeat stops with the monitor's
            os.kill(monitor.proc.pid, signal.SIGCONT)
            await _until(lambda: _operator(receiver, "system.service_silent/monitor/0", resolved=True), 15)
            monitor.kill()  # dead
            took = await _until(lambda: len(_operator(receiver, "system.service_silent/monitor/0")) >= 2, 15)
            print(f"SIGKILL -> system.service_silent again: {took:.1f} s")
        beats = _heartbeats(receiver)
        await asyncio.sleep(1.5)
        assert _heartbeats(receiver) == beats  # the bridge stopped: nothing tells the outside it is alive
    finally:
        monitor.stop()
        await receiver.stop()


async def test_a_monitor_restarting_again_and_again_raises_a_restart_loop(nats_server, tmp_path):
    receiver = await Receiver().start()
    try:
        async with run_pager(Settings(), nats_server.url, routes(receiver.base), pager=_pager_settings(receiver)):
            for n in range(4):  # what a crash loop under `up` looks like to the watchdog
                monitor = MonitorProcess(nats_server.url, tmp_path / f"m{n}.log", env=FAST).start()
                await _until(lambda: _heartbeats(receiver) > 0, 30)
                await asyncio.sleep(1.0)  # (a heartbeat of this start)
                monitor.kill()
            took = await _until(lambda: _operator(receiver, "system.restart_loop/monitor/0"), 15)
            print(f"\nfourth start -> system.restart_loop: {took:.1f} s")
    finally:
        await receiver.stop()


async def test_a_killed_broker_is_paged_directly_and_resolved_when_it_returns(nats_server, tmp_path):
    receiver = await Receiver().start()
    try:
        async with run_pager(Settings(), nats_server.url, routes(receiver.base), pager=_pager_settings(receiver)) as pager:
            await asyncio.sleep(1.0)
            nats_server.kill()
            took = await _until(lambda: _operator(receiver, "system.broker_unreachable/nats"), 20)
            print(f"\nbroker SIGKILL -> system.broker_unreachable at the failsafe: {took:.1f} s (grace 2 s)")
            nats_server.start()  # the same port and store, as `up` restarts it
            await _until(lambda: _operator(receiver, "system.broker_unreachable/nats", resolved=True), 30)
            assert not pager.failed.done()  # the bridge rode out the outage
    finally:
        await receiver.stop()
