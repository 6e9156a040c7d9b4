"""What the pager core remembers per patient: each alert it has seen and where it was sent.

Slotted dataclasses, stored and loaded through pydantic (``services/engine/state.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# lifecycle states, in the order an alert moves through them (``infusion-monitor alerts``)
RAISED, DELIVERED, ESCALATED, ACKNOWLEDGED, RESOLVED = "raised", "delivered", "escalated", "acknowledged", "resolved"
STATE_ORDER = {RAISED: 0, DELIVERED: 1, ESCALATED: 2, ACKNOWLEDGED: 3, RESOLVED: 4}


@dataclass(slots=True)
class TrackedAlert:
    alert_id: str
    dedup_key: str
    severity: str
    route: str
    raised_at: datetime
    alert: dict[str, Any]  # the alert.raised event as published (contract shape)
    session_id: str | None = None
    tier: int = 0  # 1-based tier currently paged; 0: not paged (record-only route)
    failsafe: bool = False  # the failsafe was paged
    tier_started_at: datetime | None = None
    repages: int = 0  # re-pages sent in the current tier
    sent: dict[str, int] = field(default_factory=dict)  # destination -> requests sent (sequence)
    triggered: list[str] = field(default_factory=list)  # destinations that got a trigger, in order
    acknowledged: bool = False
    acknowledged_by: str | None = None
    resolved: bool = False
    resolve_reason: str | None = None
    superseded_severity: str | None = None  # the severity of the alert this one supersedes
    avoid: str | None = None  # an operator alert about this destination never goes to it
    # the outbox: page.requested event id -> the request without its alert (rebuilt with
    # ``alert``), until the delivery reports it sent or refused for good; a restarted bridge
    # sends these again with the same keys
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)


CLOSED_SESSIONS_KEPT = 32  # a patient's latest closed sessions the pager remembers (years of infusions)


@dataclass(slots=True)
class PatientAlerts:
    alerts: dict[str, TrackedAlert] = field(default_factory=dict)  # alert_id -> alert
    conditions: dict[str, str] = field(default_factory=dict)  # operator key only: "kind/subject" -> open alert_id
    # session_id -> its close time, the latest CLOSED_SESSIONS_KEPT: an alert of the session that
    # reaches the pager after its session.closed (two streams, no order between them) is resolved too
    closed_sessions: dict[str, datetime] = field(default_factory=dict)
