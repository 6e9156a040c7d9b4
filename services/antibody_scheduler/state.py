"""What the scheduler remembers about a patient. Due dates live here, never in APScheduler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from infusion_monitor.schemas.vocab import DueReason


_NONE: Mapping[str, str] = {}  # shared, never written: replaced by a new dict


@dataclass(slots=True)
class SchedulerPatient:
    treatment_start: date | None = None
    first_infusion: date | None = None
    last_infusion: date | None = None
    anchor: date | None = None
    last_result: date | None = None  # specimen date of the latest antibody result: routine follows it
    next_routine: date | None = None  # None with an anchor: paused (last infusion > 84 days ago)
    # pending due moments (ISO time) -> the reasons falling due then; they merge into one event
    slots: dict[str, list[DueReason]] = field(default_factory=dict)
    emitted: Mapping[str, str] = field(default_factory=lambda: _NONE)  # due date (ISO) -> due event id
    outstanding: Sequence[str] = ()  # due events no antibody result has satisfied yet (S3)
