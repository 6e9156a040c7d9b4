"""What the lab monitor remembers about a patient."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(slots=True)
class LiverResult:
    """A liver test on one specimen, in canonical units, with its upper limit of normal."""

    code: str
    at: datetime
    value: float
    uln: float
    event_id: str


@dataclass(slots=True)
class SpecimenAlert:
    alert_id: str
    rank: int


_NONE: Mapping[str, SpecimenAlert] = {}  # shared, never written: replaced by a new dict


@dataclass(slots=True)
class LabPatient:
    starts: list[date] = field(default_factory=list)  # natalizumab infusion dates (site calendar)
    liver: Sequence[LiverResult] = ()  # liver tests within the Hy's-law window
    liver_injury_raised: bool = False  # L6 once per patient until liver_injury is cleared
    specimen_alerts: Mapping[str, SpecimenAlert] = field(default_factory=lambda: _NONE)  # rule+specimen -> alert
    first_positive: date | None = None  # antibody: a positive with no positive before it (R15)
    persistent: bool = False  # R16
