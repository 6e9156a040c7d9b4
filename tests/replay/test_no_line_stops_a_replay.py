"""No single line stops a replay (architecture.md rule 9; contract.md, "Replay": bad lines are
reported and never stop it): schema-valid hostile lines, times out of range, and lines on which a
core fails unexpectedly (a defect) are reported, and every other line is judged exactly as in a
log without them."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infusion_monitor.engine.bus import Engine
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.cores import all_cores
from infusion_monitor.replay.offline import replay_lines
from tests.builders import alerts, normal, replay, start, vitals
from tests.defects import Defect
from tests.hostile import encode, hostile_event
from tests.integration.live import ROOT

SESSION = [normal(-5), start(0), vitals(10, systolic_mmhg=80)]  # R7 at 10:10


def _engine() -> Engine:
    return Engine(MonitorConfig(), [*all_cores(), Defect()], unbounded_dedup=True)


def _lines(events: list[dict]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def _json(result) -> list[str]:
    return [e.model_dump_json() for e in result.sorted_outputs()]


def test_a_line_a_core_fails_on_is_set_aside_and_the_rest_is_judged_as_without_it():
    boom = {**vitals(5, spo2_pct=97), "event_id": "boom"}
    with_it = replay_lines(_lines([SESSION[0], SESSION[1], boom, SESSION[2]]), MonitorConfig(), engine=_engine)
    without = replay_lines(_lines(SESSION), MonitorConfig(), engine=_engine)
    assert [str(r) for r in with_it.reports] == ["line 3: rejected: internal: ZeroDivisionError (set aside)"]
    assert _json(with_it) == _json(without)
    assert [a["rule"] for a in alerts(with_it)][:2] == ["R7", "M1"]


def test_without_a_fresh_engine_the_replay_goes_on_in_place():
    boom = {**vitals(5, spo2_pct=97), "event_id": "boom"}
    result = replay_lines(_lines([SESSION[0], SESSION[1], boom, SESSION[2]]), MonitorConfig(), engine=_engine())
    assert [str(r) for r in result.reports] == ["line 3: rejected: internal: ZeroDivisionError (set aside)"]
    assert "R7" in [a["rule"] for a in alerts(result)]


def test_a_timer_a_core_fails_on_is_dropped_and_reported_and_alerting_goes_on():
    lines = _lines([SESSION[0], SESSION[1], {**vitals(2, spo2_pct=97), "event_id": "timer-boom"}, SESSION[2]])
    result = replay_lines(lines, MonitorConfig(), engine=_engine)
    assert [(r.level, r.reason) for r in result.reports] == [
        ("warning", "internal: defect timer bad failed with KeyError; dropped")]
    assert "R7" in [a["rule"] for a in alerts(result)]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile=st.lists(hostile_event(), min_size=1, max_size=12), at=st.integers(0, 3))
def test_schema_valid_hostile_lines_never_stop_a_replay_nor_remove_the_critical_alert(hostile, at):
    lines = [json.dumps(e).encode() for e in SESSION]
    lines[at:at] = [encode(e) for e in hostile]
    result = replay_lines(lines, MonitorConfig())
    assert any(a["rule"] == "R7" and a["patient_id"] == "pk-1" for a in alerts(result))
    assert not [r for r in result.reports if "internal" in r.reason]  # no defect behind any of them


def test_the_replay_command_exits_0_and_reports_every_bad_line(tmp_path):
    hostile = [
        {"type": "vitals.recorded", "event_id": "h-1", "occurred_at": "0001-01-01T00:00:00Z", "patient_id": "pk-1",
         "spo2_pct": 85},
        {"type": "infusion.started", "event_id": "h-2", "occurred_at": "9999-12-31T23:00:00Z", "patient_id": "pk-1",
         "session_id": "s9"},
        {"type": "clock.tick", "event_id": "h-3", "occurred_at": "9999-12-31T23:00:00Z"},
        {"type": "lab.resulted", "event_id": "h-4", "occurred_at": "2025-03-03T10:00:00Z", "patient_id": "pk-1",
         "code": "1742-6", "value": 1e308, "reference_high": 0},
        {"type": "patient.profile", "event_id": "h-5", "occurred_at": "2025-03-03T09:00:00Z", "patient_id": "pk-1",
         "birth_date": "9999-12-31", "treatment_start": "0001-01-01"},
    ]
    log = tmp_path / "hostile.jsonl"
    log.write_bytes(b"\n".join(_lines([SESSION[0], *hostile, SESSION[1], SESSION[2]])) + b"\n")
    done = subprocess.run([sys.executable, "-m", "infusion_monitor.cli.main", "replay", str(log)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "line 2: rejected: occurred_at: out of range: before 1970-01-01 or from 2100-01-01 on",
        "line 3: rejected: occurred_at: out of range: before 1970-01-01 or from 2100-01-01 on",
        "line 4: rejected: occurred_at: out of range: before 1970-01-01 or from 2100-01-01 on",
        "line 5: rejected: value: Input should be less than or equal to 1000000000 or Input should be 'positive' or 'negative'",
        "line 6: rejected: birth_date: out of range: before 1900-01-01 or from 2100-01-01 on",
    ]
    assert done.stdout == "".join(replay(SESSION).jsonl())  # the session judged as if they were not there
