"""Writes months-of-treatment.jsonl: ten months of four patients' natalizumab treatment.

    python tests/replay/goldens/make_months.py

- pk-routine: infusions every 28 days; antibody tests answered a few days after each due date
  (S1 schedule moved by each result).
- pk-transient: a first positive (R15, confirmation due), a negative 30 days later (S2: the
  confirmation is cancelled), routine testing goes on.
- pk-persist: a first positive, a second positive 56 days later (R16: persistent), then an
  infusion with readings every 20 min: P5 at the start and M1 at the 15-minute enhanced gap.
- pk-liver: ALT 5.5x and bilirubin 2.5x ULN three days apart (L6, Hy's law), then the next
  infusion raises R5 (contraindicated: liver_injury), plus neutropenia (L3) and an expected
  lymphocyte rise (L1) on the way.
Deterministic: no randomness, no clock.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

UTC = timezone.utc
START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
events: list[dict] = []
counter = 0


def emit(type_: str, at: datetime, patient: str, **fields) -> None:
    global counter
    counter += 1
    events.append({"type": type_, "event_id": f"gen-{counter:05d}", "occurred_at": at.isoformat().replace("+00:00", "Z"),
                   "patient_id": patient, **fields})


def session(patient: str, number: int, t0: datetime, every_min: int = 15, persist: bool = False) -> None:
    sid = f"ses-{patient}-{number:02d}"
    emit("vitals.recorded", t0 - timedelta(minutes=10), patient, systolic_mmhg=124, diastolic_mmhg=78,
         heart_rate_bpm=70, spo2_pct=98, temperature_c=36.7)
    emit("infusion.started", t0, patient, session_id=sid, site_id="site-a", pump_id="pump-A1", infusion_number=number)
    for minute in range(every_min, 121, every_min):
        emit("vitals.recorded", t0 + timedelta(minutes=minute), patient, session_id=sid, systolic_mmhg=122,
             diastolic_mmhg=76, heart_rate_bpm=72, spo2_pct=97)
        if minute <= 60 < minute + every_min:
            emit("infusion.ended", t0 + timedelta(minutes=60), patient, session_id=sid, outcome="completed")


def lab(patient: str, at: datetime, code: str, value, **fields) -> None:
    emit("lab.resulted", at, patient, code=code, value=value, resulted_at=(at + timedelta(hours=20)).isoformat().replace("+00:00", "Z"), **fields)


for patient, birth, offset in [("pk-routine", "1985-04-02", 0), ("pk-transient", "1979-11-20", 1),
                               ("pk-persist", "1990-07-15", 2), ("pk-liver", "1972-02-28", 3)]:
    emit("patient.profile", START - timedelta(days=1), patient, birth_date=birth, sex="F",
         treatment_start=(START.date()).isoformat())

for k in range(11):  # day 0, 28, ..., 280
    day = START + timedelta(days=28 * k)
    for i, patient in enumerate(["pk-routine", "pk-transient", "pk-persist", "pk-liver"]):
        t0 = day + timedelta(hours=i)
        if patient == "pk-liver" and k >= 5:
            if k == 5:
                session(patient, k + 1, t0)  # blocked: R5 at the start
            continue
        if patient == "pk-persist" and k >= 4:
            session(patient, k + 1, t0, every_min=20)  # enhanced monitoring asks for 15 min
            continue
        session(patient, k + 1, t0)

# pk-routine: antibody results a few days after each routine due date (day 84, then result + 84)
for day in (87, 171, 255):
    lab("pk-routine", START + timedelta(days=day, hours=8), "58012-6", "negative")
# pk-transient: a first positive on day 60, a negative on day 90 (transient), a negative later
lab("pk-transient", START + timedelta(days=60, hours=8), "58012-6", "positive")
lab("pk-transient", START + timedelta(days=90, hours=8), "58012-6", "negative")
lab("pk-transient", START + timedelta(days=176, hours=8), "58012-6", "negative")
# pk-persist: positive on day 30, positive again on day 86 (56 days later: persistent)
lab("pk-persist", START + timedelta(days=30, hours=8), "58012-6", "positive")
lab("pk-persist", START + timedelta(days=86, hours=8), "58012-6", "positive")
# pk-liver: lymphocytes up while on treatment (L1), neutropenia (L3), then Hy's law (L6)
lab("pk-liver", START + timedelta(days=40, hours=8), "731-0", 5.2, unit="10*9/L", reference_low=1.0, reference_high=4.0)
lab("pk-liver", START + timedelta(days=41, hours=8), "751-8", 900, unit="/uL", reference_low=1500, reference_high=7500)
lab("pk-liver", START + timedelta(days=110, hours=8), "1742-6", 220, unit="U/L", reference_high=40)
lab("pk-liver", START + timedelta(days=110, hours=8), "6768-6", 180, unit="U/L", reference_high=120)
lab("pk-liver", START + timedelta(days=113, hours=8), "1975-2", 3.1, unit="mg/dL", reference_high=1.2)

events.sort(key=lambda e: e["occurred_at"])  # arrival order = event time here
Path(__file__).with_name("months-of-treatment.jsonl").write_text(
    "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
print(len(events), "events")
