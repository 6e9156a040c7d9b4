"""Pre-infusion checks at ``infusion.started``: R5, R17, P1-P6 of ``clinical-rules.md``.

``checks`` returns the alerts to raise as plain findings; the core turns them into events.
R6 (no baseline) is a timer and lives in the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from infusion_monitor.schemas.vocab import AlertKind, ContraindicationReason, Rule, Severity

from ..engine.config import MonitorConfig
from .state import Profile


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    kind: AlertKind
    severity: Severity
    summary: str
    action: str
    evidence: dict[str, Any] = field(default_factory=dict)


def age_on(birth: date, day: date) -> int:
    """Completed years on a calendar date."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def reexposure_gap_days(previous_start: datetime | None, start: datetime, config: MonitorConfig) -> int | None:
    """Calendar days between the previous infusion and this one, in the site's time zone."""
    if previous_start is None:
        return None
    tz = config.tz
    return (start.astimezone(tz).date() - previous_start.astimezone(tz).date()).days


def matched_immunomodulators(therapies: list[str], config: MonitorConfig) -> list[str]:
    """Configured names found (case-insensitively) in the profile's concomitant therapies."""
    text = [t.lower() for t in therapies]
    return sorted({name for name in config.immunomodulators if any(name.lower() in t for t in text)})


def checks(
    *,
    start: datetime,
    profile: Profile | None,
    contraindications: list[ContraindicationReason],
    gap_days: int | None,
    persistent_antibodies: bool,
    config: MonitorConfig,
) -> list[Finding]:
    found: list[Finding] = []
    if contraindications:  # R5
        reasons = sorted(r.value for r in contraindications)
        found.append(Finding(
            Rule.R5, AlertKind.INFUSION_CONTRAINDICATED, Severity.CRITICAL,
            f"Natalizumab contraindicated ({', '.join(reasons)}): infusion started",
            "Do not give natalizumab: stop the infusion and contact the treating clinician.",
            {"reasons": reasons},
        ))
    if gap_days is not None and gap_days > config.reexposure_gap_days:  # R17
        found.append(Finding(
            Rule.R17, AlertKind.REEXPOSURE_AFTER_GAP, Severity.HIGH,
            f"Re-exposure after {gap_days} days without natalizumab",
            "Re-exposure: antibodies and hypersensitivity much more likely. Monitor closely, "
            "keep the 1 h observation, order an antibody test.",
            {"gap_days": gap_days},
        ))
    if profile is not None:
        age = age_on(profile.birth_date, start.astimezone(config.tz).date())
        if age < config.pediatric_below_age:  # P1
            found.append(Finding(
                Rule.P1, AlertKind.POPULATION_PEDIATRIC, Severity.HIGH,
                f"Pediatric patient (age {age}): natalizumab not recommended under {config.pediatric_below_age}",
                "Confirm the indication with the treating neurologist before continuing.",
                {"age_years": age},
            ))
        if age > config.elderly_above_age:  # P2
            found.append(Finding(
                Rule.P2, AlertKind.POPULATION_ELDERLY, Severity.LOW,
                f"Patient over {config.elderly_above_age} (age {age}): limited data",
                "Careful benefit-risk evaluation at the next review.",
                {"age_years": age},
            ))
        if profile.pregnant:  # P3
            found.append(Finding(
                Rule.P3, AlertKind.POPULATION_PREGNANCY, Severity.MEDIUM,
                "Pregnant patient on natalizumab",
                "Review benefit-risk; third-trimester exposure can cause low platelets and "
                "anaemia in the newborn.",
            ))
        if profile.lactating:  # P4
            found.append(Finding(
                Rule.P4, AlertKind.POPULATION_LACTATION, Severity.LOW,
                "Lactating patient on natalizumab",
                "Discuss stopping the drug or breastfeeding.",
            ))
    if persistent_antibodies:  # P5
        found.append(Finding(
            Rule.P5, AlertKind.ANTIBODY_PERSISTENT, Severity.HIGH,
            "Persistent anti-natalizumab antibodies on record",
            "Reduced efficacy and more infusion reactions: enhanced monitoring this session "
            "(vitals at least every 15 min); review the regimen.",
        ))
    if profile is not None:  # P6
        matched = matched_immunomodulators(profile.concomitant_therapies, config)
        if matched:
            found.append(Finding(
                Rule.P6, AlertKind.THERAPY_COMBINATION, Severity.HIGH,
                f"Concomitant immunomodulator ({', '.join(matched)}): natalizumab is monotherapy",
                "Review: PML risk rises with immunosuppressants; natalizumab is indicated as monotherapy.",
                {"matched": matched},
            ))
    return found
