"""Terse builders for inbound events in tests: times are minutes from a fixed t0 unless given."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.replay.offline import ReplayResult, replay_lines

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
_ids = itertools.count(1)


def at(minutes: float, base: datetime = T0) -> str:
    return (base + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def event(type_: str, minutes: float, patient: str = "pk-1", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type_, "event_id": f"t-{next(_ids)}", "occurred_at": at(minutes)}
    if type_ != "clock.tick":
        data["patient_id"] = patient
    data.update(fields)
    return data


def profile(minutes: float = -600, patient: str = "pk-1", birth_date: str = "1980-05-01", **fields: Any) -> dict:
    return event("patient.profile", minutes, patient, birth_date=birth_date, **fields)


def start(minutes: float = 0, session: str = "s1", patient: str = "pk-1", **fields: Any) -> dict:
    return event("infusion.started", minutes, patient, session_id=session, **fields)


def end(minutes: float = 60, session: str = "s1", patient: str = "pk-1", outcome: str = "completed") -> dict:
    return event("infusion.ended", minutes, patient, session_id=session, outcome=outcome)


NORMAL = {"systolic_mmhg": 120, "diastolic_mmhg": 75, "heart_rate_bpm": 72, "spo2_pct": 97,
          "respiratory_rate_bpm": 14, "temperature_c": 36.8}


def vitals(minutes: float, patient: str = "pk-1", **fields: Any) -> dict:
    return event("vitals.recorded", minutes, patient, **fields)


def normal(minutes: float, patient: str = "pk-1", **overrides: Any) -> dict:
    return vitals(minutes, patient, **{**NORMAL, **overrides})


def tick(minutes: float) -> dict:
    return event("clock.tick", minutes)


def routine_session(patient: str = "pk-1", session: str = "s1", t: float = 0, every: int = 15) -> list[dict]:
    """Baseline, start, readings every ``every`` min through 2 h, end at 60 min."""
    events = [normal(t - 10, patient), start(t, session, patient)]
    for m in range(every, 121, every):
        events.append(normal(t + m, patient))
        if m == 60:
            events.append(end(t + 60, session, patient))
    return events


def replay(events: list[dict | str | bytes], config: MonitorConfig | None = None, until: str | None = None) -> ReplayResult:
    lines = [e if isinstance(e, bytes) else (e if isinstance(e, str) else json.dumps(e)).encode() for e in events]
    horizon = datetime.fromisoformat(until) if until else None
    return replay_lines(lines, config or MonitorConfig(), until=horizon)


def alerts(result: ReplayResult) -> list[dict]:
    return [json.loads(e.model_dump_json()) for e in result.sorted_outputs() if e.type == "alert.raised"]


def of_type(result: ReplayResult, type_: str) -> list[dict]:
    return [json.loads(e.model_dump_json()) for e in result.sorted_outputs() if e.type == type_]


def rules(result: ReplayResult) -> list[str]:
    return [a["rule"] for a in alerts(result)]


REACTION_RULES = {"R7", "R8", "R9", "R10", "R11", "R12", "R12b", "R13"}


def reactions(result: ReplayResult) -> list[dict]:
    """Only the R7-R13 alerts (the horizon of a replay also fires M1/M2 on open sessions)."""
    return [a for a in alerts(result) if a["rule"] in REACTION_RULES]


def lab(minutes: float, code: str, value: float | str, patient: str = "pk-1", **fields: Any) -> dict:
    return event("lab.resulted", minutes, patient, code=code, value=value, **fields)


DAY_MIN = 24 * 60
