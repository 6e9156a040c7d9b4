"""The reaction window, session.closed, M1, M2, escalation and late events (clinical-rules.md)."""

import pytest

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.schemas.vocab import PolicyProfile
from tests.builders import (
    alerts, end, reactions, normal, of_type, profile, replay, routine_session, rules, start, tick, vitals,
)

EU = MonitorConfig(profile=PolicyProfile.EU)


def closed_at(result, session="s1"):
    return [(c["occurred_at"][11:16], c["outcome"]) for c in of_type(result, "session.closed") if c["session_id"] == session]


WINDOW_CASES = [
    # (case, end minute, infusion_number, config, expected close HH:MM)
    ("us: end at 60 -> later of t0+120 and end+60 = 12:00", 60, None, None, "12:00"),
    ("us: end at 90 -> end+60 = 12:30", 90, None, None, "12:30"),
    ("us: end at 30 -> t0+120 = 12:00", 30, None, None, "12:00"),
    ("us: infusion 13 keeps 60 min observation by default", 90, 13, None, "12:30"),
    ("us: infusion 13 without keep_observation: t0+120", 90, 13, MonitorConfig(keep_observation=False), "12:00"),
    ("us: infusion 12 always observed", 90, 12, MonitorConfig(keep_observation=False), "12:30"),
    ("eu: end+60 even when short", 30, None, EU, "11:30"),
]


@pytest.mark.parametrize("case,end_m,number,config,expected", WINDOW_CASES, ids=[c[0] for c in WINDOW_CASES])
def test_window_end(case, end_m, number, config, expected):
    extra = {"infusion_number": number} if number else {}
    events = [normal(-5), start(0, **extra)] + [normal(m) for m in range(15, 200, 15)]
    events.insert(2 + end_m // 15, end(end_m))
    assert closed_at(replay(events, config)) == [(expected, "uneventful")]


def test_observation_kept_after_an_earlier_reaction_from_infusion_13():
    cfg = MonitorConfig(keep_observation=False)
    first = [normal(-5), start(0, infusion_number=13), vitals(10, symptoms=["headache"])] + \
        [normal(m) for m in range(15, 121, 15)] + [end(90)]
    later = 28 * 24 * 60
    second = [normal(later - 5), start(later, session="s2", infusion_number=14)] + \
        [normal(later + m) for m in range(15, 200, 15)] + [end(later + 90, session="s2")]
    result = replay(first + second, cfg)
    assert closed_at(result, "s1") == [("12:00", "infusion.reaction")]  # no earlier reaction: t0+120
    assert closed_at(result, "s2")[0][0] == "12:30"  # earlier R13 alert on record: end + 60


M1_CASES = [
    ("M1 reading exactly 30 min later: no gap", [0, 30, 60, 90, 120], []),
    ("M1 31 min without a reading", [0, 31, 60, 90, 120], ["10:30"]),
    ("M1 counted from t0 when no reading after start", [45, 60, 90, 120], ["10:30"]),
    ("M1 once per gap, a new reading starts a new count", [0, 70, 110], ["10:30", "11:40"]),
]


@pytest.mark.parametrize("case,times,expected", M1_CASES, ids=[c[0] for c in M1_CASES])
def test_M1_gap(case, times, expected):
    events = [normal(-10), start(0)] + [normal(t) for t in times if t > 0] + [end(60)]
    events.sort(key=lambda e: e["occurred_at"])
    result = replay(events)
    assert [a["occurred_at"][11:16] for a in alerts(result) if a["rule"] == "M1"] == expected


def test_M1_gap_due_after_window_close_raises_nothing():
    # window closes 12:00; last reading 11:45 -> gap due 12:15 is after the close
    events = [normal(-5), start(0)] + [normal(m) for m in range(15, 106, 15)] + [end(60)]
    events.sort(key=lambda e: e["occurred_at"])
    assert "M1" not in rules(replay(events))


def test_M1_counts_towards_the_outcome():
    events = [normal(-5), start(0), normal(40), end(60), normal(70), normal(100)]
    assert closed_at(replay(events)) == [("12:00", "monitoring.gap")]


def test_M2_no_end_takes_t0_plus_180_as_end():
    events = [normal(-5), start(0)] + [normal(m) for m in range(15, 300, 15)]
    result = replay(events)
    m2 = [a for a in alerts(result) if a["rule"] == "M2"]
    assert [(a["occurred_at"][11:16], a["severity"], a["kind"]) for a in m2] == [("13:00", "medium", "monitoring.no_end")]
    assert closed_at(result) == [("14:00", "uneventful")]  # us: max(t0+120, 13:00+60)


def test_M2_real_end_arriving_later_replaces_it_while_window_open():
    events = [normal(-5), start(0)] + [normal(m) for m in range(15, 200, 15)] + [end(195)]
    events += [normal(m) for m in range(210, 300, 15)]
    result = replay(events)
    assert "M2" in rules(result)
    assert closed_at(result) == [("14:15", "uneventful")]  # 13:15 + 60


def test_M2_real_end_after_close_changes_nothing():
    events = [normal(-5), start(0)] + [normal(m) for m in range(15, 241, 15)] + [tick(250), end(245)]
    result = replay(events)
    assert closed_at(result) == [("14:00", "uneventful")]
    assert [r.level for r in result.reports] == []


def test_session_closed_outcome_is_worst_alert_kind_earliest_on_ties():
    events = [normal(-5), start(0), vitals(10, symptoms=["nausea"]), normal(50), end(60), normal(90), normal(120)]
    # R13 (medium) at 10:10, then M1 (medium) at 10:40: tie -> the earliest, infusion.reaction
    assert closed_at(replay(events)) == [("12:00", "infusion.reaction")]


def test_pre_infusion_alerts_do_not_count_towards_outcome():
    events = [profile(pregnant=True)] + routine_session()
    result = replay(events)
    assert rules(result) == ["P3"] and closed_at(result) == [("12:00", "uneventful")]


def test_escalation_supersedes_and_repeat_never_pages_again():
    events = [
        normal(-5), start(0),
        vitals(10, symptoms=["urticaria"]),             # R12 high
        vitals(15, symptoms=["urticaria"]),             # repeat: nothing
        vitals(20, symptoms=["dyspnea"]),               # skin + respiratory accumulated: R10 critical
        normal(25, systolic_mmhg=85),                   # R7 critical severe
        normal(30, systolic_mmhg=80),                   # equal rank: nothing
        vitals(35, symptoms=["headache"]),              # lower: nothing
        end(40, outcome="stopped"),
    ]
    found = reactions(replay(events))
    assert [(a["rule"], a["severity"]) for a in found] == [("R12", "high"), ("R10", "critical"), ("R7", "critical")]
    assert found[0].get("supersedes") is None
    assert found[1]["supersedes"] == found[0]["alert_id"]
    assert found[2]["supersedes"] == found[1]["alert_id"]
    assert len({a["dedup_key"] for a in found}) == 3
    assert found[2]["evidence"]["rules_met"] == ["R7", "R10"]


def test_symptoms_accumulate_and_fire_at_the_completing_reading():
    events = [normal(-5), start(0), vitals(10, symptoms=["flushing"]), normal(20), vitals(30, symptoms=["vomiting"])]
    found = [(a["rule"], a["occurred_at"][11:16]) for a in reactions(replay(events))]
    assert found == [("R12", "10:10"), ("R10", "10:30")]


def test_readings_before_t0_never_raise_for_the_session():
    events = [vitals(-10, symptoms=["urticaria", "wheeze"], systolic_mmhg=80), start(0), normal(15)]
    assert [r for r in rules(replay(events)) if r.startswith("R")] == []


def test_R7_relative_fall_against_baseline():
    events = [normal(-10, systolic_mmhg=150), start(0), normal(15, systolic_mmhg=104)]  # 30.67 % fall
    found = reactions(replay(events))
    assert [(a["rule"], a["evidence"]["baseline"]["systolic_mmhg"], a["evidence"]["systolic_fall_pct"]) for a in found] == [("R7", 150, 30.7)]


def test_baseline_is_latest_before_t0_else_earliest_after():
    events = [normal(-25, systolic_mmhg=160), normal(-5, systolic_mmhg=140), start(0), normal(3, systolic_mmhg=120),
              normal(15, systolic_mmhg=97)]  # 30.7 % below 140, 39 % below 160
    found = reactions(replay(events))
    assert found[0]["evidence"]["baseline"]["systolic_mmhg"] == 140 and found[0]["rule"] == "R7"
    events = [start(0), normal(2, systolic_mmhg=150), normal(4, systolic_mmhg=100), normal(15, systolic_mmhg=104)]
    found = reactions(replay(events))
    assert [(a["rule"], a["occurred_at"][11:16], a["evidence"]["baseline"]["systolic_mmhg"]) for a in found] == [("R7", "10:04", 150)]


def test_baseline_fixed_at_t0_plus_5_late_candidate_changes_nothing():
    events = [start(0), normal(3, systolic_mmhg=120), tick(10), normal(-2, systolic_mmhg=200), normal(15, systolic_mmhg=130)]
    assert [r for r in rules(replay(events)) if r == "R7"] == []


def test_reading_after_window_raises_with_outside_window():
    events = routine_session() + [vitals(150, symptoms=["angioedema"])]
    found = alerts(replay(events))
    assert [(a["rule"], a["outside_window"]) for a in found] == [("R12", True)]


def test_late_reading_after_close_still_alerts_and_close_is_not_repeated():
    events = routine_session() + [tick(200), vitals(100, symptoms=["stridor"])]
    result = replay(events)
    assert [(a["rule"], a["outside_window"], a["occurred_at"][11:16]) for a in alerts(result)] == [("R11", False, "11:40")]
    assert closed_at(result) == [("12:00", "uneventful")]


def test_late_reading_does_not_undo_a_gap_alert():
    events = [normal(-5), start(0), normal(10), tick(45), normal(30), normal(50), end(60), normal(75), normal(100)]
    assert [a["occurred_at"][11:16] for a in alerts(replay(events)) if a["rule"] == "M1"] == ["10:40"]


def test_late_reading_before_the_gap_fires_prevents_it():
    events = [normal(-5), start(0), normal(10), tick(39), normal(30), normal(55), end(60), normal(80), normal(105)]
    assert "M1" not in rules(replay(events))


def test_late_end_closes_at_once_with_due_time():
    events = [normal(-5), start(0)] + [normal(m) for m in range(15, 170, 15)] + [end(30)]
    # end at 10:30 arrives at 12:45: window end 12:00 already passed -> closes now, dated 12:00
    result = replay(events)
    assert closed_at(result) == [("12:00", "uneventful")]


ASSOCIATION_CASES = [
    ("named session that started", {"session_id": "s1"}, 30, True),
    ("unnamed reading matched to the latest session", {}, 30, True),
    ("unnamed reading 23 h 59 min after start still matches (outside window)", {}, 24 * 60 - 1, True),
    ("unnamed reading 24 h after start matches nothing", {}, 24 * 60, False),
    ("named session not started yet: baseline only", {"session_id": "s9"}, 30, False),
]


@pytest.mark.parametrize("case,fields,minute,expected", ASSOCIATION_CASES, ids=[c[0] for c in ASSOCIATION_CASES])
def test_which_session_a_reading_belongs_to(case, fields, minute, expected):
    events = [normal(-5), start(0), normal(15), end(20), tick(minute - 1), vitals(minute, symptoms=["stridor"], **fields)]
    found = [a for a in alerts(replay(events)) if a["rule"] == "R11"]
    assert bool(found) == expected


def test_hypersensitivity_alert_makes_patient_contraindicated_and_asks_antibody_test_once():
    events = [normal(-5), start(0), vitals(10, symptoms=["rash"]), vitals(12, symptoms=["wheeze"])]
    result = replay(events)
    assert [(e.type, e.reason.value) for e in result.outputs if e.type == "patient.contraindicated"] == [("patient.contraindicated", "hypersensitivity")]
    reactions = [e for e in result.outputs if e.type == "reaction.recorded"]
    assert [(r.rule.value, r.occurred_at.strftime("%H:%M")) for r in reactions] == [("R12", "10:10")]  # R14: first alert only


def test_R13_alert_is_not_a_contraindication_but_asks_for_test():
    result = replay([normal(-5), start(0), vitals(10, temperature_c=38.4)])
    assert [a["rule"] for a in reactions(result)] == ["R13"]
    others = [e.type for e in result.outputs if e.type not in ("alert.raised", "session.closed")]
    assert others == ["reaction.recorded", "antibody_test.due"]  # R14: a test now, no contraindication


def test_unknown_symptom_is_kept_and_warned():
    result = replay([normal(-5), start(0), vitals(10, symptoms=["tingling"])])
    assert [a["rule"] for a in reactions(result)] == ["R13"]
    assert reactions(result)[0]["evidence"]["symptoms"] == ["tingling"]
    assert [(r.level, r.field) for r in result.reports] == [("warning", "symptoms")]


def test_infusion_number_counted_when_absent():
    events = routine_session(session="a") + routine_session(session="b", t=28 * 24 * 60)
    events += [profile(minutes=29 * 24 * 60, pregnant=True)] + routine_session(session="c", t=56 * 24 * 60)
    found = alerts(replay(events))
    assert [(a["rule"], a["evidence"]["infusion_number"]) for a in found] == [("P3", 3)]


def test_session_closed_lists_the_alerts_of_its_session_in_the_order_raised():
    events = [profile(pregnant=True), start(0, pump_id="pump-7"), vitals(10, symptoms=["rash"]), vitals(12, symptoms=["wheeze"]),
              normal(30), end(60), normal(100), vitals(130, symptoms=["angioedema"])]
    result = replay(events)
    raised = alerts(result)
    before_close = [a["alert_id"] for a in raised if a["occurred_at"] < "2025-03-03T12:00"]
    assert [a["rule"] for a in raised] == ["P3", "R6", "R12", "R10", "M1"]
    (closed,) = of_type(result, "session.closed")
    assert closed["alert_ids"] == before_close and len(before_close) == 5  # superseded R12 too
    assert closed["outcome"] == "discontinue.hypersensitivity"
    assert {a["pump_id"] for a in raised} == {"pump-7"}  # every alert of the session says where to go
