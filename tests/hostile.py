"""Schema-valid hostile events (issue: nothing silences alerting): what a faulty device, a buggy
interface or an attacker with a producer credential can send. Every event here passes the JSON
shape a producer sees in the contract (types, required fields); the values are extreme: dates at
and beyond the bounds, numbers at the float limits, maximal strings and lists, bodies near the
size cap, future-dated ticks and readings, zero and negative reference limits.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from infusion_monitor.schemas.vocab import ContraindicationReason, Symptom

PATIENTS = ["pk-h1", "pk-h2", "h" * 128, "pk-ü-ñ", "pk.h3", "*", ">", "pk h4"]
TIMES = st.sampled_from([
    "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00+14:00",
    "2099-12-31T23:59:59.999999-12:00", "2100-01-01T00:00:00Z", "9999-12-31T23:00:00Z", "9999-12-31T23:59:59+00:00",
    "2025-03-03T10:00:00Z", "2025-03-03T10:00:00.123456789+05:45", "2026-12-06T12:00:00Z", "2038-01-19T03:14:08Z",
    "2025-03-03T10:00:00-23:59", "2025-02-29T10:00:00Z", "2024-02-29T10:00:00Z", "2025-03-03 10:00:00Z",
])
DATES = st.sampled_from(["0001-01-01", "1899-12-31", "1900-01-01", "1970-01-01", "2024-02-29", "2099-12-31",
                         "2100-01-01", "9999-12-31", "2025-03-03"])
HUGE = st.sampled_from([0, -0.0, 1e-308, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308,
                        2 ** 63, -(2 ** 63), 2 ** 1000, 1e15, 0.1, 299.999999999, 300.0000001, 100, 92.0000001,
                        float("inf"), float("-inf"), float("nan"), 1e9, -1e9, 1000000000.0000001])
TEXT = st.one_of(st.text(max_size=32), st.just("x" * 256), st.just("\u202e" * 64), st.just("a\x00b"),
                 st.just("'; DROP TABLE patients; --"), st.just("$(reboot)"), st.just("{{7*7}}"))
SESSION = st.one_of(st.sampled_from(["s1", "s2", "S" * 128, "ses ü", "_"]), TEXT.filter(lambda t: 0 < len(t) <= 128))


def _envelope(draw: Any, type_: str, n: int) -> dict[str, Any]:
    return {"type": type_, "event_id": f"hostile-{n}-" + draw(st.sampled_from(["", "x" * 200, "ü", " "])),
            "occurred_at": draw(TIMES), "patient_id": draw(st.sampled_from(PATIENTS))}


@st.composite
def hostile_event(draw: Any, n: int = 0) -> dict[str, Any]:
    """One event; its ``type`` and fields the contract's, its values hostile."""
    kind = draw(st.sampled_from(["vitals.recorded", "infusion.started", "infusion.ended", "patient.profile",
                                 "lab.resulted", "adverse_event.reported", "hypersensitivity.ruled_out",
                                 "contraindication.cleared", "clock.tick"]))
    event = _envelope(draw, kind, n)
    if kind == "clock.tick":
        del event["patient_id"]
        if draw(st.booleans()):
            event["inclusive"] = True
    elif kind == "vitals.recorded":
        for name in ("systolic_mmhg", "diastolic_mmhg", "heart_rate_bpm", "respiratory_rate_bpm", "spo2_pct",
                     "temperature_c"):
            if draw(st.booleans()):
                event[name] = draw(HUGE)
        event["symptoms"] = draw(st.one_of(
            st.lists(st.sampled_from([s.value for s in Symptom]), max_size=64),
            st.lists(TEXT.filter(lambda t: 0 < len(t) <= 64), max_size=64),
            st.just(["x" * 64] * 64)))
        if draw(st.booleans()):
            event["session_id"] = draw(SESSION)
        if not event["symptoms"] and not any(k.endswith(("_mmhg", "_bpm", "_pct", "_c")) for k in event):
            event["symptoms"] = ["rash"]
    elif kind == "infusion.started":
        event.update(session_id=draw(SESSION), infusion_number=draw(st.sampled_from([1, 12, 13, 10_000])),
                     dose_mg=draw(HUGE.filter(lambda v: v >= 0)), drug=draw(st.sampled_from(["natalizumab", "TYSABRI", "x" * 256])))
        if draw(st.booleans()):
            event["pump_id"] = draw(TEXT)
    elif kind == "infusion.ended":
        event.update(session_id=draw(SESSION), outcome=draw(st.sampled_from(["completed", "stopped"])))
    elif kind == "patient.profile":
        event.update(birth_date=draw(DATES), pregnant=draw(st.booleans()), lactating=draw(st.booleans()),
                     concomitant_therapies=draw(st.lists(TEXT, max_size=64)))
        if draw(st.booleans()):
            event["treatment_start"] = draw(DATES)
    elif kind == "lab.resulted":
        code = draw(st.sampled_from(["1742-6", "1920-8", "1975-2", "14631-6", "751-8", "777-3", "731-0", "58012-6",
                                     "99999-9"]))
        value: Any = draw(st.sampled_from(["positive", "negative"])) if code == "58012-6" else draw(HUGE)
        event.update(code=code, value=value)
        if draw(st.booleans()):
            event["reference_high"] = draw(HUGE)
        if draw(st.booleans()):
            event["reference_low"] = draw(HUGE)
        if draw(st.booleans()):
            event["unit"] = draw(st.sampled_from(["U/L", "mg/dL", "umol/L", "10*9/L", "/uL", "%", "x" * 32]))
        if draw(st.booleans()):
            event["resulted_at"] = draw(TIMES)
    elif kind == "adverse_event.reported":
        event.update(category=draw(st.sampled_from(["hypersensitivity", "new_neurological_symptoms", "x" * 64])),
                     note=draw(st.sampled_from(["", "n" * 4000])))
    elif kind == "hypersensitivity.ruled_out":
        event["clinician"] = draw(TEXT)
    elif kind == "contraindication.cleared":
        event["reason"] = draw(st.sampled_from([r.value for r in ContraindicationReason]))
    if draw(st.integers(0, 9)) == 0:  # unknown extra fields are kept and ignored: a big one
        event["vendor_blob"] = "b" * draw(st.sampled_from([1000, 60_000, 200_000]))
    return event


def encode(event: dict[str, Any]) -> bytes:
    """As a producer would (``json.dumps``: floats beyond the JSON range become ``Infinity``)."""
    return json.dumps(event).encode()
