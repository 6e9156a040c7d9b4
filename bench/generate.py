"""A realistic multi-clinic event log for benchmarks: ``python -m bench.generate N OUT.jsonl``.

Clinics run infusion days; each session has baseline vitals, a start, vitals every 1-15 minutes
(monitors every minute or two on some chairs, nurse charting every 15 on others), an end, and
about 8 % of sessions have a reaction (skin signs, or a hypotensive drop). Labs (counts, liver
tests, antibodies) and profiles arrive between sessions. Deterministic for a given N (seeded).
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY0 = datetime(2025, 1, 6, 7, 0, tzinfo=UTC)
CHAIRS_PER_CLINIC = 12
LAB_CODES = [("751-8", 3.5, 1.0), ("777-3", 240, 50), ("1742-6", 28, 10), ("1920-8", 25, 8), ("731-0", 3.0, 0.8)]


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(n_events: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lines: list[str] = []
    counter = 0
    clinics = max(1, n_events // 40_000)
    patients = [f"pk-{i:06x}" for i in range(clinics * CHAIRS_PER_CLINIC * 20)]
    infusions: dict[str, int] = {}

    def add(type_: str, at: datetime, patient: str | None, **fields: object) -> None:
        nonlocal counter
        counter += 1
        event = {"type": type_, "event_id": f"b-{counter:08d}", "occurred_at": _time(at)}
        if patient is not None:
            event["patient_id"] = patient
        event.update(fields)
        lines.append(json.dumps(event, separators=(",", ":")))

    for patient in patients:
        add("patient.profile", DAY0 - timedelta(days=1), patient, birth_date=f"{rng.randint(1950, 2004)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            sex=rng.choice("FM"), treatment_start="2024-06-03")
    day = 0
    while len(lines) < n_events:
        base = DAY0 + timedelta(days=day)
        day_events: list[tuple[datetime, int, str, dict]] = []
        for clinic in range(clinics):
            for chair in range(CHAIRS_PER_CLINIC):
                for slot in range(3):  # three sessions per chair per day
                    patient = rng.choice(patients)
                    t0 = base + timedelta(hours=1 + slot * 3, minutes=rng.randint(0, 30))
                    sid = f"s-{day}-{clinic}-{chair}-{slot}"
                    every = rng.choice([1, 2, 5, 15])
                    seq = []
                    seq.append((t0 - timedelta(minutes=5), "vitals.recorded", dict(systolic_mmhg=rng.randint(110, 140), spo2_pct=98, heart_rate_bpm=72)))
                    infusions[patient] = infusions.get(patient, 0) + 1
                    seq.append((t0, "infusion.started", dict(session_id=sid, site_id=f"site-{clinic}", pump_id=f"pump-{clinic}-{chair}")))
                    reaction_at = rng.randint(10, 100) if rng.random() < 0.08 else None
                    for minute in range(every, 121, every):
                        reading = dict(session_id=sid, systolic_mmhg=rng.randint(105, 140), diastolic_mmhg=rng.randint(65, 88),
                                       heart_rate_bpm=rng.randint(60, 95), spo2_pct=rng.randint(95, 99))
                        if reaction_at is not None and reaction_at <= minute < reaction_at + every:
                            if rng.random() < 0.5:
                                reading["symptoms"] = ["urticaria", "pruritus"]
                            else:
                                reading["systolic_mmhg"] = rng.randint(70, 88)
                        seq.append((t0 + timedelta(minutes=minute), "vitals.recorded", reading))
                    seq.append((t0 + timedelta(minutes=60), "infusion.ended", dict(session_id=sid, outcome="completed")))
                    for at, type_, fields in seq:
                        day_events.append((at, len(day_events), patient if True else "", {"type": type_, **fields}))
            for _ in range(CHAIRS_PER_CLINIC):
                patient = rng.choice(patients)
                code, mean, spread = rng.choice(LAB_CODES)
                at = base + timedelta(hours=rng.randint(0, 10))
                day_events.append((at, len(day_events), patient, {"type": "lab.resulted", "code": code,
                                                                  "value": round(max(0.1, rng.gauss(mean, spread)), 1)}))
            if rng.random() < 0.3:
                patient = rng.choice(patients)
                day_events.append((base + timedelta(hours=5), len(day_events), patient,
                                   {"type": "lab.resulted", "code": "58012-6", "value": rng.choice(["negative"] * 9 + ["positive"])}))
        day_events.sort(key=lambda item: (item[0], item[1]))
        for at, _, patient, fields in day_events:
            type_ = fields.pop("type")
            add(type_, at, patient, **fields)
            if len(lines) >= n_events:
                break
        day += 1
    return lines[:n_events]


def main(argv: list[str]) -> int:
    n, out = int(argv[0]), Path(argv[1])
    out.write_text("\n".join(generate(n)) + "\n")
    print(f"{n} events -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
