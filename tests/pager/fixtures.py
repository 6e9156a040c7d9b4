"""Routes, alerts and a driver for the pager core (event time only: no I/O, no clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from infusion_monitor.schemas.outbound import AlertAcknowledged, AlertResolved, SessionClosed
from infusion_monitor.schemas.vocab import AckVia, AlertKind, ResolveReason, Rule, Severity
from infusion_monitor.engine.alerts import make_alert
from infusion_monitor.engine.bus import Engine
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.pager.core import PagerCore
from infusion_monitor.pager.routes import PagerRoutes, parse_routes

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)

ROUTES_TOML = """
session_url = "https://board.test/sessions/{session_id}"
alert_url = "https://board.test/alerts/{alert_id}"

[destinations.pd1]
adapter = "pagerduty"
url = "{base}/pd1"
routing_key_env = "PD1_KEY"
[destinations.pd2]
adapter = "pagerduty"
url = "{base}/pd2"
routing_key_env = "PD2_KEY"
[destinations.nurse]
adapter = "webhook"
url = "{base}/nurse"
[destinations.nurse-north]
adapter = "webhook"
url = "{base}/nurse-north"
[destinations.fs]
adapter = "webhook"
url = "{base}/failsafe"

[[routes]]
name = "emergency"
severities = ["critical", "high"]
failsafe = "fs"
  [[routes.tiers]]
  destinations = ["pd1"]
  repage_after = "5m"
  repeats = 1
  escalate_after = "10m"
  [[routes.tiers]]
  destinations = ["pd2"]
  escalate_after = "PT10M"

[[routes]]
name = "nurse-north"
severities = ["medium"]
sites = ["site-north"]
  [[routes.tiers]]
  destinations = ["nurse-north"]

[[routes]]
name = "nurse"
severities = ["medium"]
  [[routes.tiers]]
  destinations = ["nurse"]

[[routes]]
name = "record-only"
severities = ["low", "info"]
"""


def routes(base: str = "http://127.0.0.1:9", **overrides: Any) -> PagerRoutes:
    r = parse_routes(ROUTES_TOML.replace("{base}", base))
    return r.model_copy(update=overrides) if overrides else r


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def alert(m: float = 0, severity: Severity = Severity.CRITICAL, patient: str = "pk-1", session: str | None = "s1",
          condition: str = "c1", supersedes: str | None = None, site: str | None = None,
          evidence: dict[str, Any] | None = None):
    evidence = dict(evidence or {"systolic_mmhg": 82})
    if site:
        evidence["site_id"] = site
    return make_alert(
        patient_id=patient, at=minutes(m), kind=AlertKind.DISCONTINUE_HYPERSENSITIVITY, severity=severity,
        rule=Rule.R7, condition=condition, summary="Systolic 82 mmHg (R7)", action="Stop the infusion",
        evidence=evidence, session_id=session, supersedes=supersedes,
    )


def ack(alert_id: str, m: float, via: str = "board", patient: str = "pk-1", by: str = "dr-a", **extra: Any):
    return AlertAcknowledged(type="alert.acknowledged", event_id=f"ack-{alert_id}-{m}-{via}", occurred_at=minutes(m),
                             patient_id=patient, alert_id=alert_id, by=by, via=AckVia(via), **extra)


def cleared(alert_id: str, m: float, patient: str = "pk-1"):
    return AlertResolved(type="alert.resolved", event_id=f"clr-{alert_id}-{m}", occurred_at=minutes(m),
                         patient_id=patient, alert_id=alert_id, reason=ResolveReason.CLEARED, by="dr-b")


def closed(m: float, session: str = "s1", patient: str = "pk-1"):
    return SessionClosed(event_id=f"close-{session}-{m}", occurred_at=minutes(m), patient_id=patient,
                         session_id=session, outcome="discontinue.hypersensitivity")


class Driver:
    """Feeds events and time to an engine with only the pager core; collects outputs."""

    def __init__(self, r: PagerRoutes | None = None) -> None:
        self.engine = Engine(MonitorConfig(), [PagerCore(r or routes())])
        self.outputs: list[Any] = []
        self.notices: list[Any] = []

    def send(self, *events: Any) -> Driver:
        for event in events:
            step = self.engine.handle(event)
            self.outputs.extend(step.outputs)
            self.notices.extend(step.notices)
        return self

    def until(self, m: float) -> Driver:
        step = self.engine.advance(minutes(m), inclusive=True)
        self.outputs.extend(step.outputs)
        return self

    def pages(self) -> list[tuple[float, str, str, int]]:
        """(minute, destination, action, sequence) of every page.requested."""
        return [((p.occurred_at - T0).total_seconds() / 60, p.destination, p.event_action, p.sequence)
                for p in self.outputs if p.type == "page.requested"]

    def of_type(self, type_: str) -> list[Any]:
        return [o for o in self.outputs if o.type == type_]

    def jsonl(self) -> str:
        return "".join(json.dumps(json.loads(o.model_dump_json(exclude_none=True)), sort_keys=True) + "\n"
                       for o in self.outputs)


@dataclass
class StateReport:
    page: Any
    state: Any
    attempts: int | None
    reason: str | None


@dataclass
class Reported:
    """Collects what delivery workers report (the runner's ``Reports`` publishes the same calls)."""

    attempts: list[Any] = field(default_factory=list)
    states: list[StateReport] = field(default_factory=list)
    conditions: list[tuple[str, bool]] = field(default_factory=list)

    def attempt(self, attempt: Any) -> None:
        self.attempts.append(attempt)

    def state(self, page: Any, state: Any, attempts: int | None, reason: str | None) -> None:
        self.states.append(StateReport(page, state, attempts, reason))

    def condition(self, destination: str, active: bool, detail: dict[str, Any]) -> None:
        self.conditions.append((destination, active))

    def states_of(self, state: Any) -> list[StateReport]:
        return [s for s in self.states if s.state == state]

    def conditions_active(self) -> list[str]:
        latest: dict[str, bool] = {}
        for dest, active in self.conditions:
            latest[dest] = active
        return sorted(d for d, active in latest.items() if active)


def delivery(page: Any, state: str, m: float, reason: str | None = None, by: str | None = None,
             action: str | None = "from-page") -> Any:
    """An ``alert.delivery`` about ``page`` (a ``page.requested``) at minute ``m``."""
    from infusion_monitor.schemas.outbound import AlertDelivery
    from infusion_monitor.schemas.vocab import DeliveryState

    return AlertDelivery(
        type="alert.delivery", event_id=f"dl-{page.event_id}-{state}-{m}", occurred_at=minutes(m),
        patient_id=page.patient_id, alert_id=page.alert_id, destination=page.destination, state=DeliveryState(state),
        event_action=page.event_action if action == "from-page" else action,
        page_event_id=page.event_id if action == "from-page" else None, reason=reason, by=by,
    )


def condition(m: float, active: bool, subject: str = "pd2") -> Any:
    from infusion_monitor.schemas.outbound import OperatorCondition
    from infusion_monitor.schemas.vocab import AlertKind as Kind
    from infusion_monitor.pager.core import OPERATOR_KEY

    return OperatorCondition(event_id=f"oc-{subject}-{active}-{m}", occurred_at=minutes(m), patient_id=OPERATOR_KEY,
                             kind=Kind.SYSTEM_DESTINATION_DOWN, subject=subject, active=active,
                             summary=f"{subject} down", evidence={"destination": subject})
