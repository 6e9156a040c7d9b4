"""What the board remembers per patient: open and recent sessions, their alerts, last vitals.

Slotted dataclasses like the other cores' state (``services/engine/state.py`` stores them through
pydantic if ever needed; the board keeps them in memory and rebuilds from the streams at start).
Nothing here identifies a patient beyond the pseudonymous key the engine files the state under.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Entry:
    """One line of a session's timeline (events and alerts, in time order when shown)."""

    at: datetime
    kind: str  # the event type ("vitals.recorded", "alert.raised", ...)
    text: str
    severity: str | None = None  # alerts only
    ref: str | None = None  # alert_id for alert lifecycle lines


@dataclass(slots=True)
class BoardAlert:
    alert_id: str
    kind: str
    severity: str
    rule: str
    summary: str
    action: str
    raised_at: datetime
    session_id: str | None = None
    outside_window: bool = False
    supersedes: str | None = None
    superseded_by: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_via: str | None = None
    resolved_at: datetime | None = None
    resolve_reason: str | None = None
    escalated_tier: int = 0  # the highest tier the pager escalated it to (0: never)
    failsafe: bool = False
    deliveries: dict[str, Delivery] = field(default_factory=dict)  # destination -> its latest alert.delivery


@dataclass(slots=True)
class Delivery:
    """Where one paging destination's copy of an alert got (``alert.delivery``)."""

    state: str  # sent, retrying, failed, received, delivered, read, accepted, rejected, undeliverable, cancelled
    at: datetime
    by: str | None = None  # the recipient an alarm manager named
    reason: str | None = None


@dataclass(slots=True)
class BoardSession:
    session_id: str
    started_at: datetime | None = None  # None: known only from a fact that came before its start
    site_id: str | None = None
    pump_id: str | None = None
    infusion_number: int | None = None
    ended_at: datetime | None = None
    end_outcome: str | None = None  # infusion.ended: completed | stopped
    closed_at: datetime | None = None
    closed_noted: datetime | None = None  # the board's clock when the close arrived (kept from then on)
    outcome: str | None = None  # session.closed: uneventful | the worst alert kind
    last_reading_at: datetime | None = None  # latest reading with values at or after t0 (M1 counts from it)
    reexposure: bool = False  # reexposure.recorded (R17): 60 min observation
    timeline: list[Entry] = field(default_factory=list)


@dataclass(slots=True)
class Vitals:
    at: datetime
    values: dict[str, float]
    symptoms: list[str] = field(default_factory=list)


@dataclass(slots=True)
class BoardPatient:
    """The board's slice of a patient's state."""

    has_profile: bool = False
    persistent_antibodies: bool = False  # antibody.persistence (R16): enhanced monitoring (M1 15 min)
    contraindications: list[str] = field(default_factory=list)  # reasons, sorted
    last_vitals: Vitals | None = None  # the patient's latest reading by event time
    recent_reading_times: list[datetime] = field(default_factory=list)  # for a session whose start arrives later
    sessions: dict[str, BoardSession] = field(default_factory=dict)
    alerts: dict[str, BoardAlert] = field(default_factory=dict)
