"""A1-A7 of ``clinical-rules.md``: ``adverse_event.reported`` raises one alert per report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from dataclasses import dataclass as _dataclass

from infusion_monitor.schemas.inbound import AdverseEventReported
from infusion_monitor.schemas.outbound import PatientContraindicated, ReactionRecorded
from infusion_monitor.schemas.vocab import AlertKind, ContraindicationReason, Rule, Severity

from ..engine.alerts import make_alert
from ..engine.core import Context
from ..engine.ids import stable_id


@dataclass(frozen=True, slots=True)
class AdverseRule:
    rule: Rule
    kind: AlertKind
    severity: Severity
    title: str
    action: str
    contraindicates: ContraindicationReason | None = None
    asks_antibody_test: bool = False


_A1 = AdverseRule(Rule.A1, AlertKind.ADVERSE_SUICIDAL_IDEATION, Severity.CRITICAL, "Suicidal ideation reported",
                  "Emergency: contact the patient now and follow the suicide-risk protocol.")
_A2 = AdverseRule(Rule.A2, AlertKind.ADVERSE_INFECTION, Severity.HIGH, "Infection reported",
                  "Immediate clinician review; consider holding the next dose.")
_A3 = AdverseRule(Rule.A3, AlertKind.ADVERSE_NEUROLOGICAL, Severity.HIGH, "New neurological symptoms: PML suspected",
                  "Withhold natalizumab until PML is excluded (MRI, CSF JCV DNA).",
                  contraindicates=ContraindicationReason.PML_SUSPECTED)
_A4 = AdverseRule(Rule.A4, AlertKind.ADVERSE_DEPRESSION, Severity.MEDIUM, "Depression reported",
                  "Clinician review within the working day.")
_A5 = AdverseRule(Rule.A5, AlertKind.ADVERSE_CHOLELITHIASIS, Severity.MEDIUM, "Cholelithiasis reported",
                  "Clinician review within the working day.")
_A6 = AdverseRule(Rule.A6, AlertKind.DISCONTINUE_HYPERSENSITIVITY, Severity.HIGH,
                  "Clinician-confirmed hypersensitivity",
                  "Do not re-treat with natalizumab; order an anti-natalizumab antibody test.",
                  contraindicates=ContraindicationReason.HYPERSENSITIVITY, asks_antibody_test=True)
_A7 = AdverseRule(Rule.A7, AlertKind.ADVERSE_OTHER, Severity.MEDIUM, "Adverse event reported",
                  "Clinician review within the working day.")

#: category -> rule, as the table reads; any other category is A7.
BY_CATEGORY: dict[str, AdverseRule] = {
    "suicidal_ideation": _A1,
    "pneumonia": _A2,
    "infection": _A2,
    "new_neurological_symptoms": _A3,
    "depression": _A4,
    "cholelithiasis": _A5,
    "hypersensitivity": _A6,
}


@_dataclass(slots=True)
class AdverseState:
    """A1-A7 need no memory: one alert per report."""


class AdverseEvents:
    name: ClassVar[str] = "adverse"
    state_model: ClassVar[type] = AdverseState
    handles: ClassVar[frozenset[str]] = frozenset({"adverse_event.reported"})

    def handle(self, st: AdverseState, ev: AdverseEventReported, ctx: Context) -> None:
        category = ev.category.strip().lower()
        spec = BY_CATEGORY.get(category, _A7)
        alert = make_alert(
            patient_id=ctx.patient_id, at=ev.occurred_at, kind=spec.kind, severity=spec.severity,
            rule=spec.rule, condition=f"report:{ev.event_id}", session_id=ev.session_id,
            summary=f"{spec.title} ({spec.rule.value}{', category ' + category if spec is _A7 else ''})",
            action=spec.action,
            evidence={"category": category, "report_event_id": ev.event_id},
        )
        ctx.emit(alert)
        if spec.contraindicates is not None:
            ctx.emit(PatientContraindicated(
                event_id=stable_id("ev", "contraindicated", alert.alert_id),
                occurred_at=ev.occurred_at, patient_id=ctx.patient_id,
                reason=spec.contraindicates, rule=spec.rule, alert_id=alert.alert_id,
            ))
        if spec.asks_antibody_test:  # R14 via A6
            ctx.emit(ReactionRecorded(
                event_id=stable_id("ev", "reaction", alert.alert_id),
                occurred_at=ev.occurred_at, patient_id=ctx.patient_id, session_id=ev.session_id,
                alert_id=alert.alert_id, rule=spec.rule,
            ))

    def fire(self, st: Any, kind: str, key: str, due: datetime, ctx: Context) -> None:  # no timers
        return None
