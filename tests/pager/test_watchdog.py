"""The watchdog's core (architecture.md rule 9, "Its own death pages someone"): heartbeats and
time in, operator conditions out; and the direct pages for a broker that cannot store them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infusion_monitor.schemas.outbound import ServiceHeartbeat
from infusion_monitor.schemas.vocab import AlertKind
from infusion_monitor.pager.watchdog import Watchdog, WatchdogSettings, direct_pages
from tests.pager.fixtures import routes

T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SETTINGS = WatchdogSettings(silent_after_s=20, lag_limit=100, restart_limit=3, restart_window_s=300, broker_grace_s=10)


def hb(s: float, service: str = "monitor", started: float = -100, **fields) -> ServiceHeartbeat:
    return ServiceHeartbeat(service=service, instance="0", started_at=T + timedelta(seconds=started),
                            at=T + timedelta(seconds=s), every_s=5, **fields)


def at(s: float) -> datetime:
    return T + timedelta(seconds=s)


def changes(found) -> list[tuple[str, str, bool]]:
    return [(c.kind.value, c.subject, c.active) for c in found]


def test_silence_of_a_service_heard_before_begins_after_the_limit_and_ends_with_its_next_heartbeat():
    dog = Watchdog(SETTINGS, T)
    assert changes(dog.heartbeat(hb(0), at(0))) == []
    assert changes(dog.check(at(20))) == []  # 20 s: not more than the limit yet
    assert changes(dog.check(at(21))) == [("system.service_silent", "monitor/0", True)]
    assert changes(dog.check(at(40))) == []  # once
    assert changes(dog.heartbeat(hb(41), at(41))) == [("system.service_silent", "monitor/0", False)]


def test_an_expected_service_never_heard_is_silent_from_the_watchdogs_start():
    dog = Watchdog(WatchdogSettings(silent_after_s=20, expect=("monitor/0", "gateway/0")), T)
    assert changes(dog.check(at(21))) == [("system.service_silent", "gateway/0", True),
                                          ("system.service_silent", "monitor/0", True)]


@pytest.mark.parametrize("lags,expected", [
    ([50, 100], []),  # the limit itself is not past it
    ([101], [("system.service_lagging", "monitor/0", True)]),
    ([101, 150, 99], [("system.service_lagging", "monitor/0", True), ("system.service_lagging", "monitor/0", False)]),
])
def test_lag_past_the_limit(lags, expected):
    dog = Watchdog(SETTINGS, T)
    found = []
    for n, lag in enumerate(lags):
        found += dog.heartbeat(hb(n, lag=lag), at(n))
    assert changes(found) == expected


def test_restart_loop_is_three_restarts_within_the_window_and_ends_when_the_window_passes():
    dog = Watchdog(SETTINGS, T)
    found = []
    for n in range(4):  # four starts: three restarts
        found += dog.heartbeat(hb(n * 10, started=n * 10), at(n * 10))
    assert changes(found) == [("system.restart_loop", "monitor/0", True)]
    assert changes(dog.heartbeat(hb(100, started=30), at(100))) == []
    assert changes(dog.heartbeat(hb(311, started=30), at(311))) == [("system.restart_loop", "monitor/0", False)]


def test_every_message_set_aside_and_every_defect_opens_its_own_alert():
    dog = Watchdog(SETTINGS, T)
    assert changes(dog.heartbeat(hb(0, counters={"quarantined": 0}), at(0))) == []
    first = dog.heartbeat(hb(5, counters={"quarantined": 1}, last_error="ZeroDivisionError on stream seq 7"), at(5))
    assert [(c.kind, c.active) for c in first] == [(AlertKind.SYSTEM_MESSAGE_SET_ASIDE, True)]
    assert first[0].evidence["last_error"] == "ZeroDivisionError on stream seq 7"
    assert dog.heartbeat(hb(10, counters={"quarantined": 1}), at(10)) == []  # the same one: once
    again = dog.heartbeat(hb(15, counters={"quarantined": 2, "internal": 1}), at(15))
    assert [c.kind for c in again] == [AlertKind.SYSTEM_MESSAGE_SET_ASIDE, AlertKind.SYSTEM_SERVICE_ERROR]
    assert len({c.subject for c in first + again}) == 3


def test_the_broker_condition_begins_after_its_grace_and_ends_on_reconnect():
    dog = Watchdog(SETTINGS, T)
    assert dog.broker(False, at(0)) == [] and dog.broker(False, at(9)) == []
    assert changes(dog.broker(False, at(10))) == [("system.broker_unreachable", "nats", True)]
    assert dog.broker(False, at(30)) == []
    assert changes(dog.broker(True, at(31))) == [("system.broker_unreachable", "nats", False)]


def test_direct_pages_trigger_then_resolve_the_same_alert_at_every_operator_destination():
    dog = Watchdog(SETTINGS, T)
    dog.broker(False, at(0))
    (began,) = dog.broker(False, at(10))
    (ended,) = dog.broker(True, at(40))
    r = routes()
    trigger, resolve = direct_pages(began, r, began.at), direct_pages(ended, r, began.at)
    assert [(p.destination, p.event_action) for p in trigger] == [("fs", "trigger")]  # the routes' failsafe
    assert [(p.destination, p.event_action) for p in resolve] == [("fs", "resolve")]
    assert trigger[0].alert_id == resolve[0].alert_id and trigger[0].event_id != resolve[0].event_id
    assert trigger[0].alert["kind"] == "system.broker_unreachable" and trigger[0].alert["severity"] == "critical"
    assert resolve[0].lifecycle["type"] == "alert.resolved"


def test_settings_from_the_environment():
    s = WatchdogSettings.load({"INFUSION_MONITOR_WATCHDOG_SILENT_S": "3", "INFUSION_MONITOR_WATCHDOG_EXPECT":
                               "monitor/0, board/0", "INFUSION_MONITOR_WATCHDOG_HEARTBEAT_URL": "http://x/hb"})
    assert (s.silent_after_s, s.expect, s.heartbeat_url) == (3.0, ("monitor/0", "board/0"), "http://x/hb")
    assert WatchdogSettings.load({}).expect == ("monitor/0",)


def test_silence_is_not_judged_while_the_bridge_has_no_broker_and_services_get_their_time_after():
    dog = Watchdog(SETTINGS, T)
    dog.heartbeat(hb(0), at(0))
    dog.broker(False, at(5))
    assert changes(dog.check(at(60))) == []  # cut off: the broker's condition says it all
    dog.broker(True, at(61))
    assert changes(dog.check(at(80))) == []  # 19 s after the broker came back
    assert changes(dog.check(at(82))) == [("system.service_silent", "monitor/0", True)]
