"""The watchdog: the product's own death pages someone (architecture.md rule 9).

Every service publishes a heartbeat (``services/runtime/health.py``). The paging bridge listens
and raises operator alerts (``system.*``, the operator route: by default every route's failsafe)
when

| condition | kind | ends when |
|---|---|---|
| no heartbeat from a service for ``silent_after_s`` (it is down, stuck, or cut off) | ``system.service_silent`` | heartbeats return |
| a service ``lag_limit`` messages behind its input stream | ``system.service_lagging`` | it catches up |
| a service started ``restart_limit`` times within ``restart_window_s`` | ``system.restart_loop`` | a window without that |
| a service set a message aside (it failed on it repeatedly) | ``system.message_set_aside`` | acknowledged by an operator |
| a service met a defect (a timer failed, a state too large) | ``system.service_error`` | acknowledged by an operator |
| the bridge itself lost the NATS server for ``broker_grace_s`` | ``system.broker_unreachable`` | the connection returns |

``Watchdog`` is the pure part: heartbeats, the connection's state and the time in; conditions
that began or ended out. The broker condition cannot go through the bridge's stored state (the
broker holds it): ``direct_pages`` turns it into page requests sent to the operator destinations
straight away, and their resolution when the connection is back. An outbound heartbeat
(``heartbeat_url``) tells a system outside the product that the bridge is alive, connected and
hearing the monitor: when it stops, the product's silence is noticed from outside.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from infusion_monitor.schemas.outbound import AlertRaised, AlertResolved, OperatorCondition, PageRequested, ServiceHeartbeat
from infusion_monitor.schemas.vocab import AlertKind, ResolveReason, Rule, Severity

from ..engine.ids import stable_id
from .core import OPERATOR_KEY, PAGER_PRINCIPAL
from .routes import OPERATOR_ROUTE, PagerRoutes

BROKER = "nats"  # the subject of the broker condition


@dataclass(frozen=True)
class WatchdogSettings:
    """Thresholds (environment: ``INFUSION_MONITOR_WATCHDOG_*``, see docs/reliability.md)."""

    silent_after_s: float = 20.0  # SILENT_S: no heartbeat for this long (heartbeats come every 5 s)
    lag_limit: int = 2000  # LAG: messages behind
    restart_limit: int = 3  # RESTARTS: starts within the window ...
    restart_window_s: float = 300.0  # ... of this many seconds
    broker_grace_s: float = 10.0  # BROKER_S: the bridge without its NATS connection this long
    expect: tuple[str, ...] = ("monitor/0",)  # EXPECT: service/instance that must heartbeat, comma-separated
    heartbeat_url: str | None = None  # HEARTBEAT_URL: outbound heartbeat (POST), e.g. a heartbeat monitor's URL
    heartbeat_every_s: float = 60.0  # HEARTBEAT_EVERY_S

    @classmethod
    def load(cls, env: dict[str, str] | None = None) -> WatchdogSettings:
        env = dict(os.environ if env is None else env)

        def get(name: str, default: Any) -> str:
            return env.get(f"INFUSION_MONITOR_WATCHDOG_{name}", str(default))

        defaults = cls()
        expect = get("EXPECT", ",".join(defaults.expect))
        return cls(
            silent_after_s=float(get("SILENT_S", defaults.silent_after_s)),
            lag_limit=int(get("LAG", defaults.lag_limit)),
            restart_limit=int(get("RESTARTS", defaults.restart_limit)),
            restart_window_s=float(get("RESTART_WINDOW_S", defaults.restart_window_s)),
            broker_grace_s=float(get("BROKER_S", defaults.broker_grace_s)),
            expect=tuple(part.strip() for part in expect.split(",") if part.strip()),
            heartbeat_url=env.get("INFUSION_MONITOR_WATCHDOG_HEARTBEAT_URL") or None,
            heartbeat_every_s=float(get("HEARTBEAT_EVERY_S", defaults.heartbeat_every_s)),
        )


@dataclass(frozen=True)
class Condition:
    """An operator condition that began (``active``) or ended."""

    kind: AlertKind
    subject: str
    active: bool
    at: datetime
    severity: Severity = Severity.HIGH
    summary: str = ""
    action: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def event(self) -> OperatorCondition:
        return OperatorCondition(
            event_id=stable_id("ev", "operator.condition", self.kind.value, self.subject, self.active,
                               self.at.isoformat()),
            occurred_at=self.at, patient_id=OPERATOR_KEY, kind=self.kind, subject=self.subject, active=self.active,
            severity=self.severity, summary=self.summary[:256], action=self.action[:256], evidence=self.evidence,
        )


@dataclass
class _Seen:
    last_seen: datetime
    heartbeat: ServiceHeartbeat
    starts: deque[tuple[datetime, datetime]] = field(default_factory=deque)  # (started_at, first seen)


class Watchdog:
    """Pure: ``heartbeat``, ``check`` and ``broker`` return the conditions that changed."""

    def __init__(self, settings: WatchdogSettings, now: datetime) -> None:
        self.settings = settings
        self.since = now  # when the watchdog began listening (expected services are judged from then)
        self.seen: dict[str, _Seen] = {}
        self.open: set[tuple[AlertKind, str]] = set()
        self.disconnected_since: datetime | None = None

    def heartbeat(self, hb: ServiceHeartbeat, now: datetime) -> list[Condition]:
        subject = f"{hb.service}/{hb.instance}"
        changes = self._end(AlertKind.SYSTEM_SERVICE_SILENT, subject, now)
        seen = self.seen.get(subject)
        before = seen.heartbeat if seen is not None and seen.heartbeat.started_at == hb.started_at else None
        if seen is None:
            seen = self.seen[subject] = _Seen(now, hb)
        seen.last_seen, seen.heartbeat = now, hb
        if not any(started == hb.started_at for started, _ in seen.starts):
            seen.starts.append((hb.started_at, now))
        changes += self._restarts(subject, seen, now)
        if hb.lag is not None and hb.lag > self.settings.lag_limit:
            changes += self._begin(Condition(
                AlertKind.SYSTEM_SERVICE_LAGGING, subject, True, now, Severity.HIGH,
                f"{subject} is {hb.lag} messages behind its input: alerts are late",
                "Check the service's load and the machine; scale out or restart it",
                {"lag": hb.lag, "limit": self.settings.lag_limit}))
        elif hb.lag is not None:
            changes += self._end(AlertKind.SYSTEM_SERVICE_LAGGING, subject, now)
        for counter, kind, what in (
            ("quarantined", AlertKind.SYSTEM_MESSAGE_SET_ASIDE,
             "set a message aside after failing on it: its content was not judged"),
            ("internal", AlertKind.SYSTEM_SERVICE_ERROR, "met a defect"),
            ("oversized", AlertKind.SYSTEM_SERVICE_ERROR, "could not store a patient's state"),
        ):
            count = hb.counters.get(counter, 0)
            if count > (before.counters.get(counter, 0) if before is not None else 0):
                changes.append(Condition(  # one alert each time: it stays open until an operator acts
                    kind, f"{subject}:{counter}:{count}@{hb.started_at:%Y%m%dT%H%M%S}", True, now, Severity.HIGH,
                    f"{subject} {what} ({count} since it started)",
                    "See the service's dead letters (infusion-monitor deadletter list) and its log",
                    {"service": hb.service, "instance": hb.instance, "count": count, "last_error": hb.last_error}))
        return changes

    def check(self, now: datetime) -> list[Condition]:
        """Silence: a known or expected service without a heartbeat for too long (not judged while
        the bridge itself has no broker: that is the broker's condition)."""
        changes: list[Condition] = []
        if self.disconnected_since is not None:
            return changes
        limit = timedelta(seconds=self.settings.silent_after_s)
        for subject in sorted({*self.seen, *self.settings.expect}):
            seen = self.seen.get(subject)
            last = seen.last_seen if seen is not None else self.since
            if now - last > limit:
                changes += self._begin(Condition(
                    AlertKind.SYSTEM_SERVICE_SILENT, subject, True, now, Severity.CRITICAL,
                    f"{subject} has sent no heartbeat for {int((now - last).total_seconds())} s: "
                    f"{'no alerts are being raised' if subject.startswith('monitor') else 'it may be down'}",
                    "Check the service (infusion-monitor up restarts it) and the machine; watch patients directly "
                    "meanwhile", {"last_heard": last.isoformat() if seen is not None else None}))
            if seen is not None:
                changes += self._restarts(subject, seen, now)
        return changes

    def broker(self, connected: bool, now: datetime) -> list[Condition]:
        if connected:
            if self.disconnected_since is not None:  # back: every service gets its time to be heard again
                self.disconnected_since, self.since = None, now
                for seen in self.seen.values():
                    seen.last_seen = max(seen.last_seen, now)
            return self._end(AlertKind.SYSTEM_BROKER_UNREACHABLE, BROKER, now)
        self.disconnected_since = self.disconnected_since or now
        if now - self.disconnected_since < timedelta(seconds=self.settings.broker_grace_s):
            return []
        return self._begin(Condition(
            AlertKind.SYSTEM_BROKER_UNREACHABLE, BROKER, True, now, Severity.CRITICAL,
            "The paging bridge cannot reach the NATS server: no alert can be raised or paged",
            "Check nats-server (infusion-monitor up restarts an embedded one) and the network; watch patients "
            "directly meanwhile", {"since": self.disconnected_since.isoformat()}))

    def hearing(self, subject: str, now: datetime) -> bool:
        """Whether ``subject`` (e.g. ``monitor/0``) is heartbeating."""
        seen = self.seen.get(subject)
        return seen is not None and now - seen.last_seen <= timedelta(seconds=self.settings.silent_after_s)

    def _restarts(self, subject: str, seen: _Seen, now: datetime) -> list[Condition]:
        window = timedelta(seconds=self.settings.restart_window_s)
        while seen.starts and now - seen.starts[0][1] > window:
            seen.starts.popleft()
        restarts = len(seen.starts) - 1  # the first start in the window is not a restart
        if restarts >= self.settings.restart_limit:
            return self._begin(Condition(
                AlertKind.SYSTEM_RESTART_LOOP, subject, True, now, Severity.HIGH,
                f"{subject} restarted {restarts} times in {int(window.total_seconds() // 60)} min",
                "Read the service's log for the error that stops it", {"restarts": restarts}))
        return self._end(AlertKind.SYSTEM_RESTART_LOOP, subject, now)

    def _begin(self, condition: Condition) -> list[Condition]:
        key = (condition.kind, condition.subject)
        if key in self.open:
            return []
        self.open.add(key)
        return [condition]

    def _end(self, kind: AlertKind, subject: str, now: datetime) -> list[Condition]:
        if (kind, subject) not in self.open:
            return []
        self.open.discard((kind, subject))
        return [Condition(kind, subject, False, now)]


def direct_pages(condition: Condition, routes: PagerRoutes, began: datetime) -> list[PageRequested]:
    """Page requests for a condition that cannot go through the stored state (the broker): a
    trigger to every operator destination while it lasts, a resolve when it ends. ``began``:
    when it began (the alert's identity: its trigger and its resolve share it)."""
    route = routes.operator_route()
    if not route.tiers:
        return []
    key = f"{condition.kind.value}/{condition.subject}"
    alert_id = stable_id("al", key, began.isoformat())
    alert = AlertRaised(
        event_id=stable_id("ev", "alert.raised", alert_id), occurred_at=began, patient_id=OPERATOR_KEY,
        alert_id=alert_id, kind=condition.kind, severity=Severity.CRITICAL, rule=Rule.SYS,
        summary=condition.summary or key, action=condition.action or "check the product",
        evidence={**condition.evidence, "subject": condition.subject}, dedup_key=key)
    lifecycle = None if condition.active else AlertResolved(
        type="alert.resolved", event_id=stable_id("ev", "alert.resolved", alert_id), occurred_at=condition.at,
        patient_id=OPERATOR_KEY, alert_id=alert_id, reason=ResolveReason.CLEARED, by=PAGER_PRINCIPAL)
    action = "trigger" if condition.active else "resolve"
    pages = []
    for dest in route.tiers[0].destinations:
        destination = routes.destinations[dest]
        pages.append(PageRequested(
            event_id=stable_id("ev", "page.requested", alert_id, dest, action), occurred_at=condition.at,
            patient_id=OPERATOR_KEY, alert_id=alert_id, dedup_key=key, destination=dest, adapter=destination.adapter,
            route=OPERATOR_ROUTE, tier=1, event_action=action, sequence=1 if condition.active else 2,
            severity=Severity.CRITICAL, alert=alert.model_dump(mode="json", exclude_none=True),
            lifecycle=lifecycle.model_dump(mode="json", exclude_none=True) if lifecycle else None))
    return pages
