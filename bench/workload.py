"""Event streams for the live benchmarks: open sessions, then vitals round-robin."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta


def _t(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_starts(patients: int, t0: datetime, prefix: str = "pk") -> list[tuple[str, bytes, str]]:
    """(subject patient, payload, event_id) for a baseline reading and a start per patient."""
    out = []
    for p in range(patients):
        pid = f"{prefix}-{p:05d}"
        for event in (
            {"type": "vitals.recorded", "event_id": f"{pid}-b", "occurred_at": _t(t0 - timedelta(minutes=5)),
             "patient_id": pid, "systolic_mmhg": 128, "spo2_pct": 98, "heart_rate_bpm": 71},
            {"type": "infusion.started", "event_id": f"{pid}-s", "occurred_at": _t(t0), "patient_id": pid,
             "session_id": f"ses-{pid}", "pump_id": f"pump-{p % 40}"},
        ):
            out.append((event["type"], json.dumps(event, separators=(",", ":")).encode(), event["event_id"]))
    return out


def profiles(patients: int, t0: datetime, prefix: str = "pk") -> list[tuple[str, bytes, str]]:
    out = []
    for p in range(patients):
        pid = f"{prefix}-{p:05d}"
        event = {"type": "patient.profile", "event_id": f"{pid}-p", "occurred_at": _t(t0 - timedelta(days=1)),
                 "patient_id": pid, "birth_date": f"{1960 + p % 40}-0{1 + p % 9}-1{p % 10}", "sex": "F",
                 "treatment_start": "2024-01-08"}
        out.append((event["type"], json.dumps(event, separators=(",", ":")).encode(), event["event_id"]))
    return out


def vitals(patients: int, count: int, t0: datetime, prefix: str = "pk", every_s: int = 20) -> list[tuple[str, bytes, str]]:
    """``count`` unremarkable readings spread round-robin over the patients' sessions, each
    patient's readings ``every_s`` seconds apart."""
    out = []
    for i in range(count):
        p = i % patients
        pid = f"{prefix}-{p:05d}"
        minute = 1 + i // patients
        event = {"type": "vitals.recorded", "event_id": f"{pid}-v{i}", "occurred_at": _t(t0 + timedelta(seconds=every_s * minute)),
                 "patient_id": pid, "session_id": f"ses-{pid}", "systolic_mmhg": 118 + i % 9,
                 "diastolic_mmhg": 74, "heart_rate_bpm": 70 + i % 11, "spo2_pct": 97}
        out.append(("vitals.recorded", json.dumps(event, separators=(",", ":")).encode(), event["event_id"]))
    return out


def now() -> datetime:
    return datetime.now(UTC)
