"""What the session monitor remembers about a patient and each of their sessions.

Plain slotted dataclasses: cheap to update on the hot path and small in memory (10,000 open
sessions are held at once; containers that are usually empty default to a shared ``()`` and are
replaced when written); stored and loaded through pydantic (``services/engine/state.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from infusion_monitor.schemas.vocab import ContraindicationReason, InfusionOutcome

from .readings import Packed, ReadingLog


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
    known_from: int = 0  # the reading log's serial when the session became known (for its baseline)
    baseline_fixed: bool = False
    baseline: Packed = b""  # fixed at t0 + 5 min, packed (``readings.pack_values``); before: from the log
    baseline_systolic: float | None = None  # the fixed baseline's systolic, for R7 on every reading
    last_reading_at: datetime | None = None
    gap_due: datetime | None = None  # the pending M1 timer (re-armed lazily when it fires)
    gap_limit: int = 30  # minutes: the running gap's M1 limit, decided when it started
    symptoms: Sequence[str] = ()  # accumulated from t0 on, lower case, in charting order
    alerts: Mapping[str, AlertRef] = field(default_factory=lambda: _NO_ALERTS)  # kind -> current alert
    alert_ids: Sequence[str] = ()  # every alert of the session before its close, in the order raised
    gap_count: int = 0
    reacted: bool = False  # R14 already asked for this session
    worst_kind: str | None = None  # outcome: most severe R7-R13/M1 alert kind
    worst_rank: int = -1


@dataclass(slots=True)
class PatientSessions:
    """The session monitor's slice of a patient's state."""

    profile: Profile | None = None
    contraindications: Sequence[ContraindicationReason] = ()
    starts: list[datetime] = field(default_factory=list)  # infusion.started on record, sorted (the latest 512)
    starts_forgotten: int = 0  # earlier ones no longer listed (for the infusion number)
    had_reaction: bool = False  # any R7-R13 alert on record (observation rule)
    persistent_antibodies: bool = False  # R16 fact from the lab side (P5, enhanced M1)
    persistent_since: datetime | None = None  # the confirming specimen: gaps that start later are enhanced
    log: ReadingLog = field(default_factory=ReadingLog)  # readings of the last 24 h, in arrival order
    sessions: dict[str, Session] = field(default_factory=dict)
