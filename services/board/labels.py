"""Words and formats the board shows (shared by the projection's timeline, the view and the text
rendering). Plain functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

# (field, short label, unit), in the order a nurse reads a set of vitals
VITALS = (
    ("systolic_mmhg", "BP sys", "mmHg"),
    ("diastolic_mmhg", "BP dia", "mmHg"),
    ("heart_rate_bpm", "HR", "/min"),
    ("respiratory_rate_bpm", "RR", "/min"),
    ("spo2_pct", "SpO2", "%"),
    ("temperature_c", "Temp", "°C"),
)

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}

# what each pre-infusion rule means on a tile (rule -> flag text)
FLAG_TEXT = {
    "R5": "Contraindicated",
    "P1": "Under 18",
    "P2": "Over 65",
    "P3": "Pregnant",
    "P4": "Lactating",
    "P5": "Persistent antibodies",
    "P6": "Combination therapy",
    "R17": "Re-exposure after gap",
}

OUTCOME_TEXT = {
    "uneventful": "uneventful",
    "discontinue.hypersensitivity": "hypersensitivity: discontinue",
    "infusion.reaction": "infusion reaction",
    "monitoring.gap": "monitoring gap",
}


def format_values(values: Mapping[str, float], symptoms: Sequence[str] = ()) -> str:
    """``BP 120/75 mmHg · HR 72/min · SpO2 97 % · symptoms: wheeze``"""
    parts = []
    sys_, dia = values.get("systolic_mmhg"), values.get("diastolic_mmhg")
    if sys_ is not None and dia is not None:
        parts.append(f"BP {sys_:g}/{dia:g} mmHg")
    for name, label, unit in VITALS:
        if name in values and not (name in ("systolic_mmhg", "diastolic_mmhg") and sys_ is not None and dia is not None):
            space = "" if unit.startswith("/") else " "
            parts.append(f"{label} {values[name]:g}{space}{unit}")
    if symptoms:
        parts.append("symptoms: " + ", ".join(symptoms))
    return " · ".join(parts) or "no readings"


def format_span(span: timedelta) -> str:
    """Whole minutes, rounded down: ``7 min``, ``1 h 05 min`` (the page's script formats alike)."""
    minutes = max(0, int(span.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def outcome_text(outcome: str | None) -> str:
    if outcome is None:
        return "—"
    return OUTCOME_TEXT.get(outcome, outcome)
