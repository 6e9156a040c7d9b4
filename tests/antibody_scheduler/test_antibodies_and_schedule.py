"""R14-R17 and S1-S3: antibody results and the antibody-test schedule, on event time
(clinical-rules.md, "Anti-drug antibodies and the scheduler")."""

from __future__ import annotations

import pytest

from infusion_monitor.engine.config import MonitorConfig
from tests.builders import DAY_MIN, alerts, event, lab, normal, of_type, profile, replay, routine_session, start, tick, vitals

EU = MonitorConfig(profile="eu")
AB = "58012-6"


def dues(result):
    return [(d["due_date"], d["reason"], d["occurred_at"]) for d in of_type(result, "antibody_test.due")]


def due_pairs(result):
    return [(d, r) for d, r, _ in dues(result)]


def ab(day: float, value: str, **kw):
    return lab(day * DAY_MIN, AB, value, **kw)


def ab_rules(result):
    return [(a["rule"], a["severity"]) for a in alerts(result) if a["rule"] in ("R15", "R16", "S3")]


# --- R15, R16, S2 ----------------------------------------------------------------------------

ANTIBODY_CASES = [
    ("R15 first positive", [("pos", 0)], [("R15", "medium")]),
    ("R16 positive 42 days after the first: persistent", [("pos", 0), ("pos", 42)], [("R15", "medium"), ("R16", "high")]),
    ("R16 boundary: 41 days raises nothing", [("pos", 0), ("pos", 41)], [("R15", "medium")]),
    ("S2 negative after a single positive: next positive is a first again", [("pos", 0), ("neg", 20), ("pos", 50)],
     [("R15", "medium"), ("R15", "medium")]),
    ("S2 then R16 needs 42 days from the new first", [("pos", 0), ("neg", 20), ("pos", 50), ("pos", 91)],
     [("R15", "medium"), ("R15", "medium")]),
    ("R16 once; later positives raise nothing", [("pos", 0), ("pos", 50), ("pos", 100)], [("R15", "medium"), ("R16", "high")]),
    ("negatives alone raise nothing", [("neg", 0), ("neg", 84)], []),
]


@pytest.mark.parametrize("case,results,expected", ANTIBODY_CASES, ids=[c[0] for c in ANTIBODY_CASES])
def test_antibody_results(case, results, expected):
    events = [ab(day, "positive" if v == "pos" else "negative") for v, day in results]
    assert [r for r in ab_rules(replay(events + [tick(200 * DAY_MIN)])) if r[0] != "S3"] == expected


def test_R16_us_profile_is_a_review_not_a_contraindication():
    result = replay([ab(0, "positive"), ab(42, "positive")])
    (r16,) = [a for a in alerts(result) if a["rule"] == "R16"]
    assert "Benefit-risk" in r16["action"]
    assert [e.type for e in result.outputs if e.type == "patient.contraindicated"] == []
    assert [e.persistent for e in result.outputs if e.type == "antibody.persistence"] == [True]


def test_R16_eu_profile_contraindicates():
    result = replay([ab(0, "positive"), ab(42, "positive")] + routine_session(t=60 * DAY_MIN), EU)
    (r16,) = [a for a in alerts(result) if a["rule"] == "R16"]
    assert r16["action"].startswith("Discontinue")
    r5 = [a["evidence"]["reasons"] for a in alerts(result) if a["rule"] == "R5"]
    assert r5 == [["persistent_antibodies"]]


def test_persistent_antibodies_give_P5_and_enhanced_M1_in_the_next_session():
    events = [ab(0, "positive"), ab(45, "positive"), normal(60 * DAY_MIN - 5), start(60 * DAY_MIN), normal(60 * DAY_MIN + 10)]
    found = [(a["rule"], a["occurred_at"][11:16]) for a in alerts(replay(events)) if a["rule"] in ("P5", "M1")]
    assert found[:2] == [("P5", "10:00"), ("M1", "10:25")]  # 15 min after the last reading, not 30
    m1 = [a for a in alerts(replay(events)) if a["rule"] == "M1"][0]
    assert m1["evidence"]["enhanced_monitoring"] is True and m1["evidence"]["gap_limit_minutes"] == 15


def test_antibody_value_must_be_positive_or_negative():
    result = replay([lab(0, AB, 1.7)])
    assert [(r.level, r.field) for r in result.reports] == [("rejected", "value")]


# --- S1 routine ------------------------------------------------------------------------------


def test_S1_routine_every_84_days_from_the_first_infusion():
    events = routine_session() + [tick(200 * DAY_MIN)]
    result = replay(events)
    assert dues(result)[:2] == [("2025-05-26", "routine", "2025-05-26T00:00:00Z"),
                                ("2025-08-18", "routine", "2025-08-18T00:00:00Z")][:len(dues(result))]
    # routine testing pauses once the last infusion is more than 84 days back: only the first
    assert due_pairs(result) == [("2025-05-26", "routine")]


def test_S1_continues_while_infusions_continue():
    events = []
    for k in range(8):  # every 28 days for 196 days
        events += routine_session(session=f"s{k}", t=k * 28 * DAY_MIN)
    events += [ab(84, "negative"), tick(200 * DAY_MIN)]
    # first due 2025-05-26 from the anchor; the result on day 84 (05-26) moves the next to day 168
    assert due_pairs(replay(events)) == [("2025-05-26", "routine"), ("2025-08-18", "routine")]


def test_S1_from_treatment_start_without_backlog():
    # treatment started 2024-01-10 (418 days before 2025-03-03): k = 5, 420 days -> 2025-03-05
    events = [profile(minutes=0, treatment_start="2024-01-10"), tick(30 * DAY_MIN)]
    assert due_pairs(replay(events)) == [("2025-03-05", "routine")]


def test_S1_due_fires_at_midnight_in_the_site_time_zone():
    cfg = MonitorConfig(site_timezone="Europe/Berlin")
    events = [profile(minutes=0, treatment_start="2025-01-01"), tick(60 * DAY_MIN)]
    assert dues(replay(events, cfg)) == [("2025-03-26", "routine", "2025-03-25T23:00:00Z")]


def test_S1_routine_restarts_from_the_next_infusion_after_a_pause():
    events = routine_session() + routine_session(session="s2", t=200 * DAY_MIN) + [tick(400 * DAY_MIN)]
    result = replay(events)
    # day 84 (05-26): last infusion 84 days back, not more: due. Day 168: 168 days back, paused.
    # Day 200 infusion: R17 before_restart now, routine restarts 84 days later (day 284), then
    # pauses again at day 368 (168 days after the last infusion).
    assert due_pairs(result) == [("2025-05-26", "routine"), ("2025-09-19", "before_restart"), ("2025-12-12", "routine")]


def test_S1_result_moves_the_next_routine_date():
    events = routine_session() + [ab(30, "negative")] + routine_session(session="s2", t=56 * DAY_MIN) + [tick(120 * DAY_MIN)]
    assert due_pairs(replay(events)) == [("2025-06-25", "routine")]  # day 30 + 84


# --- R14, R15, R17 due events and merging ----------------------------------------------------


def test_R14_due_now_after_the_first_reaction_of_a_session():
    events = [normal(-5), start(0), vitals(20, symptoms=["rash"]), vitals(25, symptoms=["wheeze"])]
    assert dues(replay(events))[0] == ("2025-03-03", "after_reaction", "2025-03-03T10:20:00Z")


def test_R14_after_a_confirmed_hypersensitivity_A6():
    events = [event("adverse_event.reported", 0, category="hypersensitivity")]
    assert due_pairs(replay(events)) == [("2025-03-03", "after_reaction")]


def test_result_without_treatment_on_record_starts_no_routine():
    assert due_pairs(replay([ab(0, "negative"), tick(200 * DAY_MIN)])) == []


def test_R15_confirm_positive_after_84_days_us_42_eu():
    assert due_pairs(replay([ab(0, "positive"), tick(100 * DAY_MIN)])) == [("2025-05-26", "confirm_positive")]
    assert due_pairs(replay([ab(0, "positive"), tick(100 * DAY_MIN)], EU)) == [("2025-04-14", "confirm_positive")]


def test_R15_confirmation_stays_due_after_an_early_positive():
    events = [ab(0, "positive"), ab(20, "positive"), tick(100 * DAY_MIN)]
    # the day-20 result moves the routine date (day 104) but the confirmation stays at day 84
    assert due_pairs(replay(events)) == [("2025-05-26", "confirm_positive")]


@pytest.mark.parametrize("second", ["negative", "positive"])
def test_a_deciding_result_cancels_the_pending_confirmation(second):
    day = 50 if second == "positive" else 20
    events = [ab(0, "positive"), ab(day, second), tick(100 * DAY_MIN)]
    assert "confirm_positive" not in [r for _, r in due_pairs(replay(events))]


def test_R17_before_restart_now():
    events = routine_session() + routine_session(session="s2", t=100 * DAY_MIN)
    assert ("2025-06-11", "before_restart", "2025-06-11T10:00:00Z") in dues(replay(events))


def test_dues_at_the_same_moment_merge_to_the_most_specific_reason():
    # a first positive on 2024-12-09 makes confirm_positive due 2025-03-03 00:00; the first infusion on
    # 2024-12-09 makes the routine due at the same moment: one event, reason confirm_positive
    events = [ab(-84, "positive")] + routine_session(t=-84 * DAY_MIN) + [tick(DAY_MIN)]
    assert [d for d in due_pairs(replay(events)) if d[0] == "2025-03-03"] == [("2025-03-03", "confirm_positive")]


def test_one_due_per_date():
    # routine due at 00:00 on day 84; a reaction the same day asks again: not emitted twice
    events = routine_session() + [tick(84 * DAY_MIN + 1)] + routine_session(session="s2", t=84 * DAY_MIN)
    events.insert(-3, vitals(84 * DAY_MIN + 30, symptoms=["headache"]))
    result = replay(events)
    assert [d for d in due_pairs(result) if d[0] == "2025-05-26"] == [("2025-05-26", "routine")]
    assert any(e.type == "reaction.recorded" for e in result.outputs)


# --- S3 overdue ------------------------------------------------------------------------------


def test_S3_overdue_14_days_after_a_due_without_result():
    events = routine_session() + [tick(200 * DAY_MIN)]
    s3 = [(a["occurred_at"], a["severity"], a["evidence"]["due_date"]) for a in alerts(replay(events)) if a["rule"] == "S3"]
    assert s3 == [("2025-06-09T00:00:00Z", "low", "2025-05-26")]


def test_S3_any_result_after_the_due_satisfies_it():
    events = routine_session() + [tick(85 * DAY_MIN), ab(90, "negative"), tick(200 * DAY_MIN)]
    assert [a for a in alerts(replay(events)) if a["rule"] == "S3"] == []


def test_S3_result_before_the_due_does_not_satisfy_a_later_due():
    events = [normal(-5), start(0), vitals(20, symptoms=["headache"])]  # R14 due at 10:20
    events += [tick(20 * DAY_MIN)]
    assert [a["rule"] for a in alerts(replay(events))].count("S3") == 1
