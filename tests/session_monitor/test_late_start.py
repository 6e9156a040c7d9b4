"""Out-of-order arrival (clinical-rules.md, revised): pending readings, a start that arrives after
its readings catches its session up, baseline candidates whatever their arrival, M1 from the
session's last reading by own time, the enhanced M1 limit, S1's "became known" date.

Every case lists the events in **arrival** order and names the rule it holds."""

from __future__ import annotations

import json

import pytest

from infusion_monitor.engine.config import MonitorConfig
from tests.builders import (
    DAY_MIN, alerts, end, lab, normal, of_type, profile, replay, rules, start, tick, vitals,
)

ANAPHYLAXIS = {"systolic_mmhg": 80, "spo2_pct": 88, "symptoms": ["wheeze"]}


def raised(result, *wanted: str) -> list[tuple]:
    """(rule, HH:MM, severity, outside_window) of the alerts, optionally only these rules."""
    return [(a["rule"], a["occurred_at"][11:16], a["severity"], a["outside_window"]) for a in alerts(result)
            if not wanted or a["rule"] in wanted]


def closes(result) -> list[tuple[str, str]]:
    return [(c["occurred_at"][11:16], c["outcome"]) for c in of_type(result, "session.closed")]


def session_outputs(result) -> list[str]:
    """Alerts, dues and closes as JSON, in a canonical order (what the start's arrival must not change)."""
    kept = [e for e in result.outputs if e.type in ("alert.raised", "antibody_test.due", "session.closed")]
    return sorted(e.model_dump_json() for e in kept)


# -- catch-up: the pending readings are judged as if the start had arrived first ---------------

CATCH_UP_CASES = [
    # (rule, case, readings arriving before their start (minutes from t0), wanted alerts)
    ("R7", "anaphylaxis charted 20 min in, pump start arrives after it",
     [normal(-10), normal(10), vitals(20, **ANAPHYLAXIS)], [("R7", "10:20", "critical", False)]),
    ("R8", "SpO2-only reading before its start", [normal(-5), vitals(15, spo2_pct=90)], [("R8", "10:15", "critical", False)]),
    ("R9", "neurological sign naming the session before it started",
     [normal(-5), vitals(12, session_id="s1", symptoms=["syncope"])], [("R9", "10:12", "critical", False)]),
    ("R10", "symptoms accumulate across pending readings and escalate",
     [normal(-5), vitals(5, symptoms=["urticaria"]), vitals(8, symptoms=["nausea"])],
     [("R12", "10:05", "high", False), ("R10", "10:08", "critical", False)]),
    ("R11", "stridor alone", [normal(-5), vitals(30, symptoms=["stridor"])], [("R11", "10:30", "critical", False)]),
    ("R12b", "dyspnea without skin signs", [normal(-5), vitals(6, symptoms=["dyspnea"])], [("R12b", "10:06", "high", False)]),
    ("R13", "fever", [normal(-5), vitals(40, temperature_c=38.2)], [("R13", "10:40", "medium", False)]),
]


@pytest.mark.parametrize("rule,case,readings,wanted", CATCH_UP_CASES, ids=[f"{c[0]} {c[1]}" for c in CATCH_UP_CASES])
def test_pending_readings_are_judged_when_their_start_arrives(rule, case, readings, wanted):
    late = replay([profile(), *readings, start(0)])
    first = replay([profile(), start(0), *readings])
    reaction_rules = {w[0] for w in wanted}
    assert raised(late, *reaction_rules) == wanted
    assert session_outputs(late) == session_outputs(first)  # exactly what a start arriving first gives


def test_R7_late_start_anaphylaxis_contraindicates_R5_blocks_the_next_infusion_and_R14_asks_a_test():
    late = replay([profile(), normal(-10), normal(10), vitals(20, **ANAPHYLAXIS), start(0), end(25, outcome="stopped"),
                   normal(28 * DAY_MIN - 5, session_id="s2"), start(28 * DAY_MIN, session="s2")])
    assert [e.reason.value for e in late.outputs if e.type == "patient.contraindicated"] == ["hypersensitivity"]
    assert [(a["rule"], a["session_id"]) for a in alerts(late) if a["rule"] in ("R7", "R5")] == [("R7", "s1"), ("R5", "s2")]
    assert [(d["reason"], d["occurred_at"]) for d in of_type(late, "antibody_test.due")][:1] == [
        ("after_reaction", "2025-03-03T10:20:00Z")]
    assert closes(late)[0] == ("12:00", "discontinue.hypersensitivity")


TIMER_CASES = [
    # (rule, case, arrival order, wanted (rule, HH:MM) among the timer-driven alerts)
    ("M1", "a gap between two pending readings is still a gap",
     [normal(-5), normal(2), normal(50), start(0)], [("M1", "10:32")]),
    ("M1", "counted from the last reading by its own time (10:20), whatever the order of arrival",
     [normal(-5), start(0), normal(20), normal(10)], [("M1", "10:50")]),
    ("M1", "the same with the start arriving last", [normal(-5), normal(20), normal(10), start(0)], [("M1", "10:50")]),
    ("R6", "the baseline timer fires before a reading that arrived after t0 + 5",
     [normal(10), start(0)], [("R6", "10:05")]),
    ("R6", "a candidate that arrived by t0 + 5 is found however late the start",
     [normal(3), normal(10), start(0)], []),
    ("M2", "no end by t0 + 180 fires between pending readings",
     [normal(-5)] + [normal(m) for m in range(20, 200, 20)] + [start(0)], [("M2", "13:00")]),
]


@pytest.mark.parametrize("rule,case,events,wanted", TIMER_CASES, ids=[f"{c[0]} {c[1]}" for c in TIMER_CASES])
def test_the_sessions_own_timers_fire_between_its_pending_readings(rule, case, events, wanted):
    result = replay(events, until="2025-03-03T10:55:00+00:00" if rule == "M1" else None)
    assert [(r[0], r[1]) for r in raised(result, rule)] == wanted
    in_order = sorted(events, key=lambda e: (e["type"] != "infusion.started", e["occurred_at"]))
    if rule != "M1":  # (the M1 cases compare two arrival orders of readings, not the start's)
        assert session_outputs(result) == session_outputs(replay(in_order))


def test_window_closes_during_catch_up_and_a_later_pending_reading_is_outside_the_window():
    readings = [normal(-5)] + [normal(m) for m in range(20, 241, 20)] + [vitals(250, symptoms=["angioedema"])]
    late = replay([*readings, start(0)])
    # no end: M2 at 13:00 takes it as the end; window to 14:00; the angioedema at 14:10 is after it
    assert closes(late) == [("14:00", "uneventful")]  # M2 and an alert after the close do not count
    assert raised(late, "R12") == [("R12", "14:10", "high", True)]
    assert session_outputs(late) == session_outputs(replay([start(0), *readings]))


def test_baseline_as_known_when_a_pending_reading_arrived_before_the_fix():
    # 10:03 (systolic 100) arrives first: its baseline is itself; the 09:55 candidate (150) arrives
    # after it, before the fix; 10:15 (104) is a 30.7 % fall against the fixed baseline 150.
    events = [vitals(3, systolic_mmhg=100), normal(-5, systolic_mmhg=150), start(0), normal(15, systolic_mmhg=104)]
    found = [(a["rule"], a["occurred_at"][11:16], a["evidence"]["baseline"]["systolic_mmhg"]) for a in alerts(replay(events))
             if a["rule"] == "R7"]
    assert found == [("R7", "10:15", 150)]


# -- which session a reading belongs to ----------------------------------------------------------

PENDING_CASES = [
    # (rule, case, arrival order, critical alert expected for s1)
    ("R7", "unnamed reading taken at or after t0 is claimed", [vitals(0, systolic_mmhg=80), start(0)], True),
    ("R7", "unnamed reading 23 h 59 min after t0 is claimed (outside the window)",
     [vitals(24 * 60 - 1, systolic_mmhg=80), start(0)], True),
    ("R7", "unnamed reading 24 h after t0 is not", [vitals(24 * 60, systolic_mmhg=80), start(0)], False),
    ("R7", "unnamed reading before t0 is not (never R7-R13 before t0)", [vitals(-1, systolic_mmhg=80), start(0)], False),
    ("R8", "a reading naming another session is not claimed", [vitals(10, session_id="s9", spo2_pct=85), start(0)], False),
    ("R8", "it is claimed by the session it names", [vitals(10, session_id="s9", spo2_pct=85), start(0, session="s9")], True),
]


@pytest.mark.parametrize("rule,case,events,expected", PENDING_CASES, ids=[f"{c[0]} {c[1]}" for c in PENDING_CASES])
def test_which_pending_readings_a_start_claims(rule, case, events, expected):
    found = [a for a in alerts(replay(events)) if a["severity"] == "critical" and a["rule"] == rule]
    assert bool(found) == expected


def test_R8_critical_pending_reading_matching_no_session_is_reported_at_expiry_with_the_event():
    result = replay([vitals(0, patient="pk-9", spo2_pct=85, symptoms=["cyanosis"]), tick(23 * 60),
                     vitals(25 * 60, patient="pk-9", heart_rate_bpm=70)])
    reports = [r for r in result.reports if "critical reading matched no infusion session" in r.reason]
    assert len(reports) == 1 and reports[0].level == "warning" and reports[0].line is None
    assert str(reports[0]).startswith("event t-")
    assert alerts(result) == []


def test_R8_the_report_carries_the_event_for_the_dead_letters():
    from infusion_monitor.engine.bus import Engine
    from infusion_monitor.cores import all_cores
    from infusion_monitor.schemas import parse_inbound

    engine = Engine(MonitorConfig(), all_cores())
    reading = vitals(0, patient="pk-9", session_id="s-typo", spo2_pct=85, symptoms=["Cyanosis"])
    engine.handle(parse_inbound(json.dumps(reading).encode()))
    assert engine.advance(engine.clock.replace(hour=23)).notices == []  # kept, silent, for 24 h
    notices = engine.advance(engine.clock.replace(day=4, hour=10, minute=1)).notices
    assert [(n.event_id, n.keep, n.field) for n in notices] == [(reading["event_id"], True, "session_id")]
    kept = json.loads(notices[0].payload)
    assert kept == {"type": "vitals.recorded", "event_id": reading["event_id"], "occurred_at": "2025-03-03T10:00:00Z",
                    "patient_id": "pk-9", "session_id": "s-typo", "spo2_pct": 85.0, "symptoms": ["Cyanosis"]}
    assert isinstance(parse_inbound(notices[0].payload), type(parse_inbound(json.dumps(reading).encode())))


@pytest.mark.parametrize("case,events", [
    ("a normal pending reading expires silently", [vitals(0, spo2_pct=97), tick(25 * 60)]),
    ("a critical pending reading claimed by its late start is not reported", [vitals(5, spo2_pct=85), start(0), tick(25 * 60)]),
])
def test_R8_only_unclaimed_critical_readings_are_reported(case, events):
    assert [r for r in replay(events).reports if "matched no infusion session" in r.reason] == []


# -- baseline: every candidate, whatever its arrival, number or named session --------------------

BASELINE_CASES = [
    # (rule, case, arrival order, wanted R6/R7 alerts, wanted baseline systolic in the R7 evidence)
    ("R7", "SpO2-only and pulse-only readings after the blood pressure do not push it out",
     [normal(-20, systolic_mmhg=150), vitals(-10, spo2_pct=97), vitals(-5, heart_rate_bpm=70), start(0),
      normal(15, systolic_mmhg=100)], ["R7"], 150),
    ("R7", "the same with the start arriving after the reading",
     [normal(-20, systolic_mmhg=150), vitals(-10, spo2_pct=97), vitals(-5, heart_rate_bpm=70),
      normal(15, systolic_mmhg=100), start(0)], ["R7"], 150),
    ("R7", "a reading naming another session is a candidate",
     [vitals(-10, session_id="other", systolic_mmhg=150), start(0), normal(15, systolic_mmhg=100)], ["R7"], 150),
    ("R7", "ten candidates: the latest at or before t0",
     [normal(m, systolic_mmhg=200 - m) for m in range(-30, 1, 3)][::-1] + [start(0), normal(15, systolic_mmhg=100)],
     ["R7"], 200),
    ("R6", "a candidate that arrives after the fix is not a baseline",
     [start(0), tick(10), normal(-2, systolic_mmhg=150), normal(15, systolic_mmhg=100)], ["R6"], None),
    ("R6", "no reading in range at all", [normal(-31), start(0), normal(15)], ["R6"], None),
    ("R7", "a backlog (the clock 30 min ahead): the reading that came before its start is its baseline",
     [tick(30), normal(-2, systolic_mmhg=150), start(0), normal(31, systolic_mmhg=100)], ["R7"], 150),
    ("R6", "a backlog: a reading that comes after its start, past t0 + 5, is too late",
     [tick(30), start(0), normal(-2, systolic_mmhg=150), normal(31, systolic_mmhg=100)], ["R6"], None),
]


@pytest.mark.parametrize("rule,case,events,wanted,base", BASELINE_CASES, ids=[f"{c[0]} {c[1]}" for c in BASELINE_CASES])
def test_baseline_candidates(rule, case, events, wanted, base):
    result = replay(events)
    assert [r for r in rules(result) if r in ("R6", "R7")] == wanted
    if base is not None:
        assert [a["evidence"]["baseline"]["systolic_mmhg"] for a in alerts(result) if a["rule"] == "R7"] == [base]


# -- M1's enhanced limit: gaps that start after persistent antibodies are established -----------

def _persistent_at(minute: float) -> list[dict]:
    """The first positive 60 days earlier; the confirming positive's fact arrives at ``minute``."""
    return [lab(-60 * DAY_MIN, "58012-6", "positive"), lab(minute, "58012-6", "positive")]


M1_ENHANCED_CASES = [
    # (case, events in arrival order, wanted (HH:MM, limit) of M1 alerts)
    ("a gap that starts at a reading after persistence has 15 min",
     [normal(-5), start(0), _persistent_at(2)[1], normal(10)], [("10:25", 15)]),
    ("a gap already running keeps its 30 min",
     [normal(-5), start(0), normal(10), _persistent_at(12)[1]], [("10:40", 30)]),
    ("a start after persistence counts from t0 with 15 min",
     [_persistent_at(-60)[1], normal(-5), start(0)], [("10:15", 15)]),
]


@pytest.mark.parametrize("case,events,wanted", M1_ENHANCED_CASES, ids=[c[0] for c in M1_ENHANCED_CASES])
def test_M1_enhanced_limit_for_gaps_that_start_after_persistence(case, events, wanted):
    result = replay([_persistent_at(0)[0], *events], until="2025-03-03T10:59:00+00:00")
    found = [(a["occurred_at"][11:16], a["evidence"]["gap_limit_minutes"]) for a in alerts(result) if a["rule"] == "M1"]
    assert found == wanted


# -- S1: the date the anchor became known is its event's date, not the clock's -------------------

S1_CASES = [
    # (case, events in arrival order, first routine due date)
    ("treatment_start on a profile dated 2025-03-01: 2024-01-08 + 5 x 84",
     [profile(minutes=-2 * DAY_MIN, treatment_start="2024-01-08")], "2025-03-03"),
    ("the same profile arriving 120 days late (the clock far ahead) keeps its own date",
     [tick(120 * DAY_MIN), profile(minutes=-2 * DAY_MIN, treatment_start="2024-01-08")], "2025-03-03"),
    ("first infusion anchors: its own date + 84", [start(0)], "2025-05-26"),
    ("the first infusion arriving 100 days late keeps its own date", [tick(100 * DAY_MIN), start(0)], "2025-05-26"),
]


@pytest.mark.parametrize("case,events,first_due", S1_CASES, ids=[c[0] for c in S1_CASES])
def test_S1_anchor_became_known_on_its_events_date(case, events, first_due):
    dues = [d["due_date"] for d in of_type(replay(events, until="2025-12-31T00:00:00+00:00"), "antibody_test.due")
            if d["reason"] == "routine"]
    assert dues[:1] == [first_due]


def test_pending_readings_survive_a_restart_of_the_engine_state():
    """What the live worker checkpoints: a reading pending in one engine is judged when its late
    start reaches an engine loaded from the stored record."""
    from infusion_monitor.schemas import parse_inbound
    from infusion_monitor.engine.bus import Engine, PatientRecord
    from infusion_monitor.cores import all_cores

    cfg = MonitorConfig()
    before = Engine(cfg, all_cores())
    for e in [normal(-10), normal(10), vitals(20, **ANAPHYLAXIS)]:
        before.handle(parse_inbound(json.dumps(e).encode()))
    stored = [PatientRecord.from_json(before.dump(r)) for r in before.records.values()]
    after = Engine(cfg, all_cores(), records=stored, clock=before.clock, timer_seq=before.timer_seq)
    step = after.handle(parse_inbound(json.dumps(start(0)).encode()))
    assert [(o.rule.value, o.severity.value) for o in step.outputs if o.type == "alert.raised"] == [("R7", "critical")]


# -- bounds: what the rules can still need, and nothing more -----------------------------------

def test_a_pending_reading_is_kept_24_h_of_stream_time_then_no_late_start_claims_it():
    kept = replay([vitals(10, spo2_pct=90), tick(24 * 60 + 9), start(0)])
    expired = replay([vitals(10, spo2_pct=90), tick(24 * 60 + 11), start(0)])
    assert [r for r in rules(kept) if r == "R8"] == ["R8"]
    assert [r for r in rules(expired) if r == "R8"] == []
    assert [r.reason for r in expired.reports] == ["critical reading matched no infusion session within 24 h"]


def test_R8_a_flood_of_readings_bounds_the_log_and_a_pending_critical_one_pushed_out_is_reported():
    from infusion_monitor.schemas import parse_inbound
    from infusion_monitor.engine.bus import Engine
    from infusion_monitor.cores import all_cores

    cfg = MonitorConfig(reading_log_limit=20)
    engine = Engine(cfg, all_cores())
    critical = vitals(0, spo2_pct=85)
    notices = list(engine.handle(parse_inbound(json.dumps(critical).encode())).notices)
    for i in range(60):  # a monitor streaming every 10 s for a patient whose start has not arrived
        notices += engine.handle(parse_inbound(json.dumps(vitals(0.2 + i / 6, heart_rate_bpm=70)).encode())).notices
    log = engine.state_of("session", "pk-1").log
    assert len(log.blob) == 20 * 64 and len(log.pending) == 20
    assert [(n.event_id, n.reason) for n in notices] == [
        (critical["event_id"], "pending reading dropped: more than 20 readings (or pending text) of this patient "
                               "within 24 h")]
    assert engine.records["pk-1"].timers == {}  # its expiry timer went with it: reported once


def test_R9_pending_text_beyond_its_budget_pushes_out_the_oldest_and_a_critical_one_is_reported():
    from infusion_monitor.schemas import parse_inbound
    from infusion_monitor.engine.bus import Engine
    from infusion_monitor.cores import all_cores

    engine = Engine(MonitorConfig(pending_bytes_limit=2_000), all_cores())
    critical = vitals(0, symptoms=["syncope"])
    notices = list(engine.handle(parse_inbound(json.dumps(critical).encode())).notices)
    for i in range(10):  # long symptom lists, no session yet
        noisy = vitals(1 + i, symptoms=[f"vendor_code_{n:03d}_" + "x" * 40 for n in range(8)])
        notices += engine.handle(parse_inbound(json.dumps(noisy).encode())).notices
    kept = engine.state_of("session", "pk-1").log.pending
    assert sum(48 + len(p.event_id) + sum(len(c) + 4 for c in p.symptoms) for p in kept) <= 2_000
    reported = [n.event_id for n in notices if n.payload is not None]
    assert reported[0] == critical["event_id"]  # the oldest went first, and loudly (R9 alone)


def test_no_producer_grows_a_patient_without_bound_open_sessions_sessions_starts():
    cfg = MonitorConfig(open_sessions_limit=3, sessions_limit=5)
    opened = replay([start(m, session=f"s{m}") for m in range(5)], cfg)
    assert [(r.level, r.field) for r in opened.reports] == [("rejected", "session_id")] * 2
    assert [c["session_id"] for c in of_type(opened, "session.closed")] == ["s0", "s1", "s2"]

    from infusion_monitor.schemas import parse_inbound
    from infusion_monitor.engine.bus import Engine
    from infusion_monitor.cores import all_cores

    engine = Engine(cfg, all_cores())
    for k in range(12):  # each closed before the next starts: kept up to the limit, oldest forgotten
        for e in [start(k * 300, session=f"c{k}"), end(k * 300 + 60, session=f"c{k}"), tick(k * 300 + 250)]:
            engine.handle(parse_inbound(json.dumps(e).encode()))
    assert len(engine.state_of("session", "pk-1").sessions) <= 5
