"""Inbound events (``contract.md``, "Inbound events"), strictly validated.

Readings on ``vitals.recorded`` are validated one by one: a reading of the wrong type, negative
or physically impossible is dropped and reported, the rest of the event is still processed.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from .base import Event, FreeText, InboundDate, InboundTime, SessionId, ShortText
from .base import ProducerPatientEvent as PatientEvent
from .outbound import AlertAcknowledged, AlertDelivery, AlertResolved
from .vocab import ContraindicationReason, InfusionOutcome, Symptom

NATALIZUMAB = "natalizumab"
MONITORED_DRUGS = frozenset({"natalizumab", "tysabri"})


def is_monitored_drug(drug: str) -> bool:
    """Only natalizumab (also by its brand name, any case) opens a session."""
    return drug.strip().lower() in MONITORED_DRUGS


class PatientProfile(PatientEvent):
    """Demographics and therapy; a later profile replaces the earlier one."""

    type: Literal["patient.profile"]
    birth_date: InboundDate
    sex: ShortText | None = None
    pregnant: bool | None = None
    lactating: bool | None = None
    treatment_start: InboundDate | None = None
    concomitant_therapies: Annotated[tuple[ShortText, ...], Field(max_length=64)] = ()
    prior_immunosuppressant: bool | None = None


class InfusionStarted(PatientEvent):
    type: Literal["infusion.started"]
    session_id: SessionId
    site_id: ShortText | None = None
    pump_id: ShortText | None = None
    drug: ShortText = NATALIZUMAB
    dose_mg: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] | None = None
    infusion_number: Annotated[int, Field(ge=1, le=10_000)] | None = None


class InfusionEnded(PatientEvent):
    type: Literal["infusion.ended"]
    session_id: SessionId
    outcome: InfusionOutcome


class DroppedReading(BaseModel):
    """A reading taken out of an event because it was invalid (reported, never judged)."""

    field: str
    value: Any
    reason: str


# field -> (lowest allowed, highest allowed) per contract.md "Bad input"
READING_LIMITS: dict[str, tuple[float, float]] = {
    "systolic_mmhg": (20, 300),
    "diastolic_mmhg": (10, 250),
    "heart_rate_bpm": (0, 300),
    "respiratory_rate_bpm": (0, 80),
    "spo2_pct": (0, 100),
    "temperature_c": (25, 45),
}
MAX_SYMPTOMS = 64
_READING_NAMES = tuple(READING_LIMITS)


def _reading_problem(value: Any, low: float, high: float) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"wrong type: expected a number, got {type(value).__name__}"
    if not math.isfinite(value):
        return "not a finite number"
    if value < 0:
        return "negative"
    if not low <= value <= high:
        return f"physically impossible: outside {low:g}-{high:g}"
    return None


class VitalsRecorded(PatientEvent):
    """Readings and symptoms charted at one moment; at least one of them."""

    type: Literal["vitals.recorded"]
    session_id: SessionId | None = None
    systolic_mmhg: Annotated[float, Field(ge=20, le=300)] | None = None
    diastolic_mmhg: Annotated[float, Field(ge=10, le=250)] | None = None
    heart_rate_bpm: Annotated[float, Field(ge=0, le=300)] | None = None
    respiratory_rate_bpm: Annotated[float, Field(ge=0, le=80)] | None = None
    spo2_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    temperature_c: Annotated[float, Field(ge=25, le=45)] | None = None
    symptoms: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=64)], ...],
        Field(
            max_length=MAX_SYMPTOMS,
            description="symptom codes (case-insensitive); unknown codes are kept and count as non-allergic",
            json_schema_extra={"x-vocabulary": [s.value for s in Symptom]},
        ),
    ] = ()
    dropped: SkipJsonSchema[tuple[DroppedReading, ...]] = Field(default=(), exclude=True)

    def problem(self) -> str | None:
        """Why this event cannot be used (checked by the parser): nothing valid left in it."""
        if (self.symptoms or self.systolic_mmhg is not None or self.spo2_pct is not None
                or self.heart_rate_bpm is not None or self.diastolic_mmhg is not None
                or self.temperature_c is not None or self.respiratory_rate_bpm is not None):
            return None
        why = "; ".join(f"{d.field}: {d.reason}" for d in self.dropped)
        return "no valid reading and no symptom" + (f" ({why})" if why else "")

    def readings(self) -> dict[str, float]:
        """The valid readings of this event, by field name (in the order of READING_LIMITS)."""
        fields = self.__dict__
        return {name: value for name in _READING_NAMES if (value := fields[name]) is not None}


def drop_invalid_readings(data: dict[str, Any]) -> dict[str, Any]:
    """The lenient path: take invalid readings (and symptom entries) out of a raw vitals event
    and list them in ``dropped``; the rest of the event is validated as usual."""
    data = dict(data)
    dropped: list[dict[str, Any]] = []
    for name, (low, high) in READING_LIMITS.items():
        if data.get(name) is None:
            continue
        problem = _reading_problem(data[name], low, high)
        if problem:
            dropped.append({"field": name, "value": _short(data.pop(name)), "reason": problem})
    symptoms = data.get("symptoms")
    if isinstance(symptoms, list) and len(symptoms) <= MAX_SYMPTOMS:
        kept = []
        for i, code in enumerate(symptoms):
            if isinstance(code, str) and 0 < len(code) <= 64:
                kept.append(code)
            else:
                dropped.append({"field": f"symptoms.{i}", "value": _short(code),
                                "reason": "not a symptom code (string of 1-64 characters)"})
        data["symptoms"] = kept
    data["dropped"] = dropped
    return data


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 and not isinstance(value, (dict, list)) else text[:77] + "..."


# a laboratory number: finite and within a billion either way (no analyte comes near; beyond,
# unit conversion and ratios in exact decimal would overflow)
LabNumber = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]


class LabResulted(PatientEvent):
    """A laboratory result; ``occurred_at`` is the specimen collection time."""

    type: Literal["lab.resulted"]
    code: Annotated[str, Field(min_length=1, max_length=32, description="LOINC code")]
    value: LabNumber | Literal["positive", "negative"]
    unit: Annotated[str, Field(max_length=32)] | None = None
    reference_low: LabNumber | None = None
    reference_high: LabNumber | None = None
    resulted_at: InboundTime | None = None
    corrects: Annotated[str, Field(max_length=256)] | None = None


class AdverseEventReported(PatientEvent):
    type: Literal["adverse_event.reported"]
    category: Annotated[str, Field(min_length=1, max_length=64)]
    session_id: SessionId | None = None
    note: FreeText | None = None


class HypersensitivityRuledOut(PatientEvent):
    type: Literal["hypersensitivity.ruled_out"]
    session_id: SessionId | None = None
    clinician: ShortText | None = None


class ContraindicationCleared(PatientEvent):
    type: Literal["contraindication.cleared"]
    reason: ContraindicationReason
    clinician: ShortText | None = None
    note: FreeText | None = None


class ClockTick(Event):
    """Advances event time in a replayed log; carries no patient."""

    type: Literal["clock.tick"]
    inclusive: bool = Field(
        default=False,
        description="also fire timers due exactly at this time (a replay's final horizon)",
    )


InboundEvent = Annotated[
    PatientProfile
    | InfusionStarted
    | InfusionEnded
    | VitalsRecorded
    | LabResulted
    | AdverseEventReported
    | HypersensitivityRuledOut
    | ContraindicationCleared
    | ClockTick
    # the alert lifecycle (contract.md: "in"): accepted so a replay log may carry acknowledgements,
    # clearings and delivery outcomes (an undeliverable page escalates) for the paging bridge; the monitor's cores do not handle them (they only
    # move event time like any other line). Not in INBOUND_MODELS: the monitor does not
    # subscribe to them (they travel on im.alert.>).
    | AlertAcknowledged
    | AlertResolved
    | AlertDelivery,
    Field(discriminator="type"),
]
INBOUND_MODELS: tuple[type[Event], ...] = (
    PatientProfile,
    InfusionStarted,
    InfusionEnded,
    VitalsRecorded,
    LabResulted,
    AdverseEventReported,
    HypersensitivityRuledOut,
    ContraindicationCleared,
    ClockTick,
)
