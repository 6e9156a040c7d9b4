"""Hypersensitivity and infusion-reaction grading, R7-R13 of ``clinical-rules.md``.

``grade`` looks at one reading (its vitals) together with every symptom charted in the session
so far, and returns every rule it meets, in table order. The caller picks the highest rank.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from infusion_monitor.schemas.vocab import AlertKind, BrownGrade, OrganSystem, Rule, Severity, organ_system

from ..engine.config import MonitorConfig

_DH = AlertKind.DISCONTINUE_HYPERSENSITIVITY
_STOP_ANAPHYLAXIS = (
    "Stop the infusion now and start the anaphylaxis protocol. "
    "Do not re-treat with natalizumab."
)
_STOP_MILD = (
    "Stop the infusion; confirm hypersensitivity; do not re-treat with natalizumab; "
    "order an anti-natalizumab antibody test."
)
_STOP_RESPIRATORY = (
    "Stop the infusion; assess for bronchospasm and hypersensitivity; "
    "do not re-treat with natalizumab if confirmed."
)
_ASSESS = (
    "Clinician assessment: assess for hypersensitivity; "
    "grade as a CTCAE infusion-related reaction."
)
_NONE: frozenset[str] = frozenset()
_NO_SYSTEMS: frozenset[OrganSystem] = frozenset()
LARYNX_OR_BRONCHI = frozenset({"wheeze", "stridor", "hoarseness", "throat_tightness"})
DYSPNEA_LIKE = frozenset({"dyspnea", "chest_tightness"})


@dataclass(frozen=True, slots=True)
class RuleSpec:
    rule: Rule
    kind: AlertKind
    severity: Severity
    grade: BrownGrade
    title: str
    action: str

    @property
    def rank(self) -> tuple[int, int]:
        """Escalation order: severity first, then Brown grade."""
        return (self.severity.rank, int(self.grade))


#: The rules table, in table order (ties of rank go to the earlier row).
RULES: dict[Rule, RuleSpec] = {
    spec.rule: spec
    for spec in (
        RuleSpec(Rule.R7, _DH, Severity.CRITICAL, BrownGrade.SEVERE, "hypotension", _STOP_ANAPHYLAXIS),
        RuleSpec(Rule.R8, _DH, Severity.CRITICAL, BrownGrade.SEVERE, "hypoxia", _STOP_ANAPHYLAXIS),
        RuleSpec(Rule.R9, _DH, Severity.CRITICAL, BrownGrade.SEVERE, "neurological compromise", _STOP_ANAPHYLAXIS),
        RuleSpec(Rule.R10, _DH, Severity.CRITICAL, BrownGrade.MODERATE, "skin sign with systemic involvement", _STOP_ANAPHYLAXIS),
        RuleSpec(Rule.R11, _DH, Severity.CRITICAL, BrownGrade.MODERATE, "bronchospasm or laryngeal involvement", _STOP_ANAPHYLAXIS),
        RuleSpec(Rule.R12, _DH, Severity.HIGH, BrownGrade.MILD, "skin/mucosa signs", _STOP_MILD),
        RuleSpec(Rule.R12B, _DH, Severity.HIGH, BrownGrade.MODERATE, "dyspnea without skin signs", _STOP_RESPIRATORY),
        RuleSpec(Rule.R13, AlertKind.INFUSION_REACTION, Severity.MEDIUM, BrownGrade.NONE, "infusion reaction", _ASSESS),
    )
}


def systolic_fall_exceeds(baseline: float, systolic: float, percent: int) -> bool:
    """R7's relative fall, exactly as decimal arithmetic says: (baseline - systolic) / baseline > p %.

    Binary floating point gets the boundary wrong (``1 - 140/200`` is 0.30000000000000004), so
    a reading near it is decided in decimal; clear cases are decided in floats first."""
    if baseline <= 0:
        return False
    fall = (baseline - systolic) / baseline * 100
    if abs(fall - percent) > 1e-6:
        return fall > percent
    b, s = Decimal(repr(baseline)), Decimal(repr(systolic))
    return (b - s) * 100 > b * percent


def grade(
    readings: dict[str, float],
    symptoms: Iterable[str],
    baseline_systolic: float | None,
    config: MonitorConfig,
) -> list[Rule]:
    """Every rule of R7-R13 that this reading meets, given the session's accumulated symptoms."""
    if not symptoms and unremarkable(readings, baseline_systolic, config):
        return []
    codes = {s.lower() for s in symptoms} if symptoms else _NONE
    systems = {organ_system(code) for code in codes} if codes else _NO_SYSTEMS
    skin = OrganSystem.SKIN in systems
    systolic = readings.get("systolic_mmhg")
    spo2 = readings.get("spo2_pct")
    temperature = readings.get("temperature_c")

    met: list[Rule] = []
    if systolic is not None and (
        systolic < config.systolic_low_mmhg
        or (
            baseline_systolic is not None
            and systolic_fall_exceeds(baseline_systolic, systolic, config.systolic_fall_pct)
        )
    ):
        met.append(Rule.R7)
    if (spo2 is not None and spo2 <= config.spo2_low_pct) or OrganSystem.HYPOXIA in systems:
        met.append(Rule.R8)
    if OrganSystem.NEUROLOGICAL in systems:
        met.append(Rule.R9)
    if skin and systems & {OrganSystem.RESPIRATORY, OrganSystem.CARDIOVASCULAR, OrganSystem.GASTROINTESTINAL}:
        met.append(Rule.R10)
    if codes & LARYNX_OR_BRONCHI:
        met.append(Rule.R11)
    allergic_beyond_skin = systems & {
        OrganSystem.RESPIRATORY, OrganSystem.HYPOXIA, OrganSystem.CARDIOVASCULAR,
        OrganSystem.GASTROINTESTINAL, OrganSystem.NEUROLOGICAL,
    }
    if skin and not allergic_beyond_skin:
        met.append(Rule.R12)
    if not skin and codes & DYSPNEA_LIKE:
        met.append(Rule.R12B)
    if not met and (
        OrganSystem.NON_ALLERGIC in systems
        or (temperature is not None and temperature >= config.fever_c)  # exact: both parsed decimals
        or systems & {OrganSystem.CARDIOVASCULAR, OrganSystem.GASTROINTESTINAL}
    ):
        met.append(Rule.R13)
    return met


def unremarkable(readings: dict[str, float], baseline_systolic: float | None, config: MonitorConfig) -> bool:
    """The common case, decided cheaply: vitals clearly away from every threshold."""
    systolic = readings.get("systolic_mmhg")
    if systolic is not None:
        if systolic < config.systolic_low_mmhg:
            return False
        if baseline_systolic and (baseline_systolic - systolic) * 100 > baseline_systolic * (config.systolic_fall_pct - 1):
            return False  # near or past the relative fall: let the exact check decide
    spo2 = readings.get("spo2_pct")
    if spo2 is not None and spo2 <= config.spo2_low_pct:
        return False
    temperature = readings.get("temperature_c")
    return temperature is None or temperature < config.fever_c


def strongest(met: list[Rule]) -> RuleSpec:
    """The highest-ranked met rule; equal rank goes to the first in the table."""
    return max((RULES[r] for r in met), key=lambda spec: spec.rank)  # max keeps the first of ties
