"""Metamorphic properties of arrival order (clinical-rules.md, "A start that arrives after its
readings catches its session up"; architecture.md rule 9, "Live equals replay, out of order too").

Over generated multi-patient clinic logs (``tests/reordering.py``):

- moving every ``infusion.started`` later, past readings of its own session that overtake it
  (and other patients' lines), never changes the alerts, the due events or the session closes;
- no permutation of neighbouring lines removes the critical ``discontinue.hypersensitivity``
  alert of a session that holds a reading meeting R7, R8 or R9, nor the R5 that blocks that
  patient's next infusion.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.replay.offline import replay_lines
from infusion_monitor.schemas.vocab import PolicyProfile
from tests.reordering import clinic_log, critical_readings, late_starts, neighbour_swaps

PROFILES = st.sampled_from([MonitorConfig(), MonitorConfig(profile=PolicyProfile.EU)])
CHECKED = ("alert.raised", "antibody_test.due", "session.closed")


def _run(log, config):
    return replay_lines([json.dumps(e).encode() for e in log], config)


def _outputs(result) -> list[str]:
    return sorted(e.model_dump_json() for e in result.outputs if e.type in CHECKED)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), patients=st.integers(1, 4), config=PROFILES,
       jitter=st.sampled_from([0.0, 0.02, 0.1]))
def test_a_start_overtaken_by_its_readings_changes_nothing(rng, patients, config, jitter):
    log = clinic_log(rng, patients)
    # readings may also swap among themselves (never with a start): the start still comes first
    base = neighbour_swaps(log, rng, jitter) if jitter else log
    base = _starts_first(base)
    late = late_starts(base, rng)
    assert _outputs(_run(late, config)) == _outputs(_run(base, config))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), patients=st.integers(1, 4), config=PROFILES,
       rate=st.sampled_from([0.02, 0.1, 0.3, 0.5]))
def test_no_neighbour_swap_removes_a_critical_alert(rng, patients, config, rate):
    log = neighbour_swaps(clinic_log(rng, patients), rng, rate)
    alerts = [json.loads(e.model_dump_json()) for e in _run(log, config).outputs if e.type == "alert.raised"]
    critical = {(a["patient_id"], a["session_id"]) for a in alerts
                if a["kind"] == "discontinue.hypersensitivity" and a["severity"] == "critical"}
    blocked = {(a["patient_id"], a["session_id"]) for a in alerts if a["rule"] == "R5"}
    starts = [(e["patient_id"], e["session_id"], e["occurred_at"]) for e in log if e["type"] == "infusion.started"]
    for reading, session in critical_readings(log):
        patient = reading["patient_id"]
        assert (patient, session) in critical, f"critical reading {reading['event_id']} lost in {session}"
        t0 = next(at for p, s, at in starts if (p, s) == (patient, session))
        for p, later, at in starts:
            if p == patient and at > t0:
                assert (patient, later) in blocked, f"{later} not blocked after {session}"


def _starts_first(log):
    """Undo any swap that put a reading of a session before its own start."""
    out = [e for e in log if e["type"] != "infusion.started"]
    for start in (e for e in log if e["type"] == "infusion.started"):
        at = next((i for i, e in enumerate(out) if e["patient_id"] == start["patient_id"]
                   and e["occurred_at"] >= start["occurred_at"]), len(out))
        out.insert(at, start)
    return out
