"""What the scheduler remembers about a patient. Due dates live here, never in APScheduler."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel

from schemas.vocab import DueReason


class Slot(BaseModel):
    """Due events falling due at one moment; they merge into one (most specific reason)."""

    at: datetime
    reasons: list[DueReason]


class SchedulerPatient(BaseModel):
    treatment_start: date | None = None
    first_infusion: date | None = None
    last_infusion: date | None = None
    anchor: date | None = None
    last_result: date | None = None  # specimen date of the latest antibody result: routine follows it
    next_routine: date | None = None  # None with an anchor: paused (last infusion > 84 days ago)
    slots: dict[str, Slot] = {}  # pending due moments, by their ISO time
    emitted: dict[str, str] = {}  # due date (ISO) -> the due event's id: one due per date
    outstanding: list[str] = []  # due events no antibody result has satisfied yet (S3)
