"""What the session monitor remembers about a patient and each of their sessions.

Plain slotted dataclasses: cheap to update on the hot path and small in memory (10,000 open
sessions are held at once; containers that are usually empty default to a shared ``()`` and are
replaced when written); stored and loaded through pydantic (``services/engine/state.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from schemas.vocab import ContraindicationReason, InfusionOutcome


@dataclass(slots=True)
class Reading:
    """One vitals reading kept as a baseline candidate."""

    at: datetime
    values: dict[str, float]


@dataclass(slots=True)
class Profile:
    """The parts of ``patient.profile`` the rules use (no free text beyond therapy names)."""

    birth_date: date
    pregnant: bool = False
    lactating: bool = False
    concomitant_therapies: Sequence[str] = ()


@dataclass(slots=True)
class AlertRef:
    """The current alert of one kind in a session (for one-per-kind escalation)."""

    alert_id: str
    rank: tuple[int, int]


_NO_ALERTS: Mapping[str, AlertRef] = {}  # shared, never written: replaced by a new dict


@dataclass(slots=True)
class Session:
    session_id: str
    started_at: datetime
    infusion_number: int
    observation_minutes: int
    site_id: str | None = None
    pump_id: str | None = None
    ended_at: datetime | None = None
    end_assumed: bool = False  # M2 took t0 + 180 min as the end
    outcome: InfusionOutcome | None = None
    window_end: datetime | None = None
    closed: bool = False
    baseline_fixed: bool = False
    candidates: Sequence[Reading] = ()  # baseline candidates until fixed (a list while collecting)
    baseline: dict[str, float] = field(default_factory=dict)
    last_reading_at: datetime | None = None
    gap_due: datetime | None = None  # the pending M1 timer (re-armed lazily when it fires)
    symptoms: Sequence[str] = ()  # accumulated from t0 on, lower case, in charting order
    alerts: Mapping[str, AlertRef] = field(default_factory=lambda: _NO_ALERTS)  # kind -> current alert
    gap_count: int = 0
    reacted: bool = False  # R14 already asked for this session
    worst_kind: str | None = None  # outcome: most severe R7-R13/M1 alert kind
    worst_rank: int = -1


@dataclass(slots=True)
class PatientSessions:
    """The session monitor's slice of a patient's state."""

    profile: Profile | None = None
    contraindications: Sequence[ContraindicationReason] = ()
    starts: list[datetime] = field(default_factory=list)  # every infusion.started on record, sorted
    had_reaction: bool = False  # any R7-R13 alert on record (observation rule)
    persistent_antibodies: bool = False  # R16 fact from the lab side (P5, enhanced M1)
    recent: list[Reading] = field(default_factory=list)  # baseline candidates for a session to come
    sessions: dict[str, Session] = field(default_factory=dict)
