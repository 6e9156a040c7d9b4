"""What the session monitor remembers about a patient and each of their sessions."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from schemas.vocab import ContraindicationReason, InfusionOutcome


class Reading(BaseModel):
    """One vitals reading kept as a baseline candidate."""

    at: datetime
    values: dict[str, float]


class Profile(BaseModel):
    """The parts of ``patient.profile`` the rules use (no free text beyond therapy names)."""

    birth_date: date
    pregnant: bool = False
    lactating: bool = False
    concomitant_therapies: list[str] = []


class AlertRef(BaseModel):
    """The current alert of one kind in a session (for one-per-kind escalation)."""

    alert_id: str
    rank: tuple[int, int]


class Session(BaseModel):
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
    candidates: list[Reading] = []  # baseline candidates until the baseline is fixed
    baseline: dict[str, float] = {}
    last_reading_at: datetime | None = None
    symptoms: list[str] = []  # accumulated from t0 on, lower case, in charting order
    alerts: dict[str, AlertRef] = {}  # kind -> current alert
    gap_count: int = 0
    reacted: bool = False  # R14 already asked for this session
    worst_kind: str | None = None  # outcome: most severe R7-R13/M1 alert kind
    worst_rank: int = -1
    outcome_alert_ids: list[str] = []


class PatientSessions(BaseModel):
    """The session monitor's slice of a patient's state."""

    profile: Profile | None = None
    contraindications: list[ContraindicationReason] = []
    starts: list[datetime] = []  # every infusion.started on record, sorted
    had_reaction: bool = False  # any R7-R13 alert on record (observation rule)
    persistent_antibodies: bool = False  # R16 fact from the lab side (P5, enhanced M1)
    recent: list[Reading] = []  # recent readings, baseline candidates for a session to come
    sessions: dict[str, Session] = Field(default_factory=dict)
