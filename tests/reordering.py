"""Realistic multi-patient clinic logs and the reorderings real feeds produce (clinical-rules.md,
"A start that arrives after its readings catches its session up").

``clinic_log`` writes a log in bedside-time order from a seeded ``random.Random`` (hypothesis
draws it, so failures shrink and replay); the reorderings are the ones real integrations cause:
a pump's start event overtaken by the monitor's readings (``late_starts``), and neighbouring
lines swapped (``neighbour_swaps``). The hard cases are generated on purpose: anaphylaxis early
in a session (so a late start is overtaken by it), partial readings (SpO2-only, pulse-only) after
a blood pressure before t0, profiles charted after the start, sessions without a baseline or an
end, readings that name their session and readings that do not.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

DAY = timedelta(days=1)
BASE = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
NORMAL = {"systolic_mmhg": 124, "diastolic_mmhg": 76, "heart_rate_bpm": 74, "spo2_pct": 97, "respiratory_rate_bpm": 15,
          "temperature_c": 36.7}
#: reactions: name -> (minutes-independent reading fields, meets R7/R8/R9 by absolute criteria)
REACTIONS: dict[str, tuple[dict[str, Any], bool]] = {
    "anaphylaxis": ({"systolic_mmhg": 80, "spo2_pct": 88, "heart_rate_bpm": 128, "symptoms": ["wheeze"]}, True),
    "hypoxia": ({"spo2_pct": 90}, True),
    "syncope": ({"symptoms": ["syncope"]}, True),
    "cyanosis": ({"symptoms": ["cyanosis"], "heart_rate_bpm": 110}, True),
    "relative_fall": ({"systolic_mmhg": 82.5}, True),  # < 90 as well: an absolute R7
    "urticaria": ({"symptoms": ["urticaria"]}, False),
    "fever": ({"temperature_c": 38.6}, False),
    "stridor": ({"symptoms": ["stridor"]}, False),
}
PARTIALS = ({"spo2_pct": 98}, {"heart_rate_bpm": 71}, {"systolic_mmhg": 121, "diastolic_mmhg": 77})


def _t(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"


def clinic_log(rng: random.Random, patients: int = 3, sessions: int = 2) -> list[dict[str, Any]]:
    """A clinic's log in bedside-time order: each patient has ``sessions`` infusions 28 days apart."""
    ids = _Ids()
    events: list[dict[str, Any]] = []

    def add(type_: str, at: datetime, patient: str, prefix: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "event_id": ids(prefix), "occurred_at": _t(at), "patient_id": patient, **fields}
        events.append(event)
        return event

    for p in range(patients):
        patient = f"pk-{p}"
        offset = timedelta(minutes=rng.randrange(0, 120, 5))
        profile_late = rng.random() < 0.3
        for k in range(sessions):
            t0 = BASE + k * 28 * DAY + offset
            sid = f"ses-{p}-{k}"
            if k == 0 or rng.random() < 0.2:  # the registration's profile; sometimes charted after the start
                at = t0 + timedelta(minutes=rng.choice([20, 45])) if profile_late and k == 0 else t0 - DAY
                add("patient.profile", at, patient, "ehr", birth_date=rng.choice(["1980-05-01", "2010-02-02", "1950-01-01"]),
                    pregnant=rng.random() < 0.2)
            pattern = rng.choice(["full", "partials_after_bp", "none", "after_start"])
            if pattern == "full":  # sometimes charted with the session it is taken for
                named = {"session_id": sid} if rng.random() < 0.3 else {}
                add("vitals.recorded", t0 - timedelta(minutes=rng.randint(1, 30)), patient, "mon", **named, **NORMAL)
            elif pattern == "partials_after_bp":
                add("vitals.recorded", t0 - timedelta(minutes=20), patient, "mon", systolic_mmhg=150, diastolic_mmhg=85)
                add("vitals.recorded", t0 - timedelta(minutes=10), patient, "mon", spo2_pct=97)
                add("vitals.recorded", t0 - timedelta(minutes=5), patient, "mon", heart_rate_bpm=72)
            elif pattern == "after_start":
                add("vitals.recorded", t0 + timedelta(minutes=2), patient, "mon", **NORMAL)
            add("infusion.started", t0, patient, "pump", session_id=sid, pump_id=f"pump-{p}", site_id="site-a")
            ends = rng.choice([None, 45, 60, 90, 150])
            reaction = rng.choice([None, None, *REACTIONS])
            reaction_at = rng.choice([1, 3, 8, 15, 25, 40]) if reaction else None
            every = rng.choice([5, 10, 15, 20, 35])
            stop = (ends or 180) + rng.choice([30, 70])
            for minute in range(every, stop, every):
                at = t0 + timedelta(minutes=minute)
                named = {"session_id": sid} if rng.random() < 0.5 else {}
                fields = dict(NORMAL) if rng.random() < 0.6 else dict(rng.choice(PARTIALS))
                if reaction_at is not None and reaction_at <= minute:
                    fields = {**REACTIONS[reaction][0]}
                    at = t0 + timedelta(minutes=reaction_at)
                    reaction_at = None
                    if ends is not None and ends > minute:
                        ends = minute + 2  # the infusion is stopped
                add("vitals.recorded", at, patient, "mon", **named, **fields)
                if ends is not None and minute < ends <= minute + every:
                    add("infusion.ended", t0 + timedelta(minutes=ends), patient, "pump", session_id=sid,
                        outcome="completed" if ends >= 45 else "stopped")
    order = {"patient.profile": 0, "infusion.started": 1, "vitals.recorded": 2, "infusion.ended": 3}
    return sorted(events, key=lambda e: (e["occurred_at"], order[e["type"]]))


def late_starts(log: list[dict[str, Any]], rng: random.Random, most: int = 6) -> list[dict[str, Any]]:
    """The same log with each ``infusion.started`` moved later, past up to ``most`` lines: readings
    of its own patient (they overtake it) and other patients' lines; never past another event of
    its own patient (a profile, an end, a reading naming another session)."""
    out = list(log)
    for start in [e for e in log if e["type"] == "infusion.started"]:
        at = out.index(start)
        steps = rng.randint(0, most)
        while steps and at + 1 < len(out):
            nxt = out[at + 1]
            own = nxt["patient_id"] == start["patient_id"]
            if own and (nxt["type"] != "vitals.recorded" or nxt.get("session_id", start["session_id"]) != start["session_id"]
                        or nxt["occurred_at"] < start["occurred_at"]):
                break
            out[at], out[at + 1] = nxt, start
            at += 1
            steps -= 1
    return out


def neighbour_swaps(log: list[dict[str, Any]], rng: random.Random, rate: float) -> list[dict[str, Any]]:
    """Neighbouring lines swapped at ``rate`` (non-overlapping: every line moves one place at most)."""
    out = list(log)
    i = 0
    while i + 1 < len(out):
        if rng.random() < rate:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


def critical_readings(log: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """(reading, session id) for every reading that meets R7, R8 or R9 by absolute criteria
    (systolic < 90, SpO2 <= 92, cyanosis, a neurological sign) and lies inside a session:
    taken at or after its start and less than 24 h after it, or naming it."""
    starts = {(e["patient_id"], e["session_id"]): e["occurred_at"] for e in log if e["type"] == "infusion.started"}
    found = []
    for e in log:
        if e["type"] != "vitals.recorded":
            continue
        critical = (e.get("systolic_mmhg", 999) < 90 or e.get("spo2_pct", 100) <= 92
                    or {"cyanosis", "syncope", "collapse", "confusion"} & set(e.get("symptoms", ())))
        if not critical:
            continue
        at = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
        for (patient, sid), t0_text in starts.items():
            t0 = datetime.fromisoformat(t0_text.replace("Z", "+00:00"))
            if patient == e["patient_id"] and t0 <= at < t0 + DAY and e.get("session_id", sid) == sid:
                found.append((e, sid))
    return found
