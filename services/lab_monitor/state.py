"""What the lab monitor remembers about a patient."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


class LiverResult(BaseModel):
    """A liver test on one specimen, in canonical units, with its upper limit of normal."""

    code: str
    at: datetime
    value: float
    uln: float
    event_id: str


class SpecimenAlert(BaseModel):
    alert_id: str
    rank: int


class LabPatient(BaseModel):
    starts: list[date] = []  # natalizumab infusion dates (site calendar), sorted
    liver: list[LiverResult] = []  # ALT, AST, bilirubin, ALP within the Hy's-law window
    liver_injury_raised: bool = False  # L6 once per patient until liver_injury is cleared
    specimen_alerts: dict[str, SpecimenAlert] = {}  # "<rule>@<specimen time>" -> current alert
    first_positive: date | None = None  # antibody: a positive with no positive before it (R15)
    persistent: bool = False  # R16
