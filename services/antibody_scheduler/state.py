"""What the scheduler remembers about a patient. Due dates live here, never in APScheduler."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from schemas.vocab import DueReason


@dataclass(slots=True)
class Slot:
    """Due events falling due at one moment; they merge into one (most specific reason)."""

    at: datetime
    reasons: list[DueReason]


@dataclass(slots=True)
class SchedulerPatient:
    treatment_start: date | None = None
    first_infusion: date | None = None
    last_infusion: date | None = None
    anchor: date | None = None
    last_result: date | None = None  # specimen date of the latest antibody result: routine follows it
    next_routine: date | None = None  # None with an anchor: paused (last infusion > 84 days ago)
    slots: dict[str, Slot] = field(default_factory=dict)  # pending due moments, by their ISO time
    emitted: dict[str, str] = field(default_factory=dict)  # due date (ISO) -> due event id
    outstanding: list[str] = field(default_factory=list)  # due events no result has satisfied (S3)
