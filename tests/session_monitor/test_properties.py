"""Property: whatever vitals history precedes it, a reading with systolic < 90 or SpO2 <= 92
inside a session yields a critical discontinue.hypersensitivity alert (R7, R8)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infusion_monitor.schemas.vocab import Symptom
from tests.builders import alerts, replay, start, vitals

reading = st.fixed_dictionaries(
    {},
    optional={
        "systolic_mmhg": st.integers(20, 300),
        "diastolic_mmhg": st.integers(10, 250),
        "heart_rate_bpm": st.integers(0, 300),
        "spo2_pct": st.floats(0, 100, allow_nan=False),
        "temperature_c": st.floats(25, 45, allow_nan=False),
        "symptoms": st.lists(st.sampled_from([s.value for s in Symptom]), max_size=3),
    },
).filter(lambda r: any(k != "symptoms" for k in r) or r.get("symptoms"))

history = st.lists(st.tuples(st.integers(-30, 179), reading), max_size=12)
critical_reading = st.one_of(
    st.fixed_dictionaries({"systolic_mmhg": st.floats(20, 89.99, allow_nan=False)}),
    st.fixed_dictionaries({"spo2_pct": st.floats(0, 92, allow_nan=False)}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=history, final=critical_reading, final_minute=st.integers(0, 180),
       ended=st.one_of(st.none(), st.integers(1, 180)))
def test_R7_R8_critical_reading_in_session_always_has_a_critical_alert(history, final, final_minute, ended):
    events = [start(0)]
    events += [vitals(m, **r) for m, r in sorted(history, key=lambda x: x[0])]
    if ended is not None and ended <= final_minute:
        events.append({"type": "infusion.ended", "event_id": "end-1", "occurred_at": vitals(ended, spo2_pct=99)["occurred_at"],
                       "patient_id": "pk-1", "session_id": "s1", "outcome": "stopped"})
    events.append(vitals(final_minute, **final))
    found = [a for a in alerts(replay(events))
             if a["kind"] == "discontinue.hypersensitivity" and a["severity"] == "critical"
             and a["session_id"] == "s1"]
    assert found, "a reading meeting R7 or R8 inside the session must leave a critical alert"
