"""Pre-infusion checks at infusion.started: R5, R6, R17, P1-P6 (clinical-rules.md)."""

import pytest

from infusion_monitor.engine.config import MonitorConfig
from tests.builders import end, event, normal, profile, replay, routine_session, rules, start, alerts

# (case, profile fields or None, expected pre-infusion rules). Infusion day is 2025-03-03.
PROFILE_CASES = [
    ("P1 age 17 on the infusion date", {"birth_date": "2007-03-04"}, ["P1"]),
    ("P1 boundary: 18th birthday on the infusion date", {"birth_date": "2007-03-03"}, []),
    ("P2 age 66", {"birth_date": "1959-03-02"}, ["P2"]),
    ("P2 boundary: exactly 65 does not count", {"birth_date": "1959-03-04"}, []),
    ("P2 boundary: 65th year ends the day before 66", {"birth_date": "1959-03-03"}, ["P2"]),
    ("P3 pregnant", {"pregnant": True}, ["P3"]),
    ("P4 lactating", {"lactating": True}, ["P4"]),
    ("P6 interferon, any case, inside a longer name", {"concomitant_therapies": ["Interferon beta-1a"]}, ["P6"]),
    ("P6 two matches, one alert", {"concomitant_therapies": ["ocrelizumab", "Methotrexate 10 mg"]}, ["P6"]),
    ("P6 no match: vitamin D", {"concomitant_therapies": ["vitamin D"]}, []),
    ("P1-P4/P6 skipped without a profile", None, []),
    ("P1 and P3 together, table order", {"birth_date": "2009-01-01", "pregnant": True}, ["P1", "P3"]),
]


@pytest.mark.parametrize("case,fields,expected", PROFILE_CASES, ids=[c[0] for c in PROFILE_CASES])
def test_population_and_therapy_checks(case, fields, expected):
    events = [] if fields is None else [profile(**fields)]
    result = replay(events + routine_session())
    assert rules(result) == expected


def test_P1_profile_after_start_applies_from_next_session():
    events = routine_session() + [profile(birth_date="2010-01-01", minutes=200)]
    events += routine_session(session="s2", t=60 * 24 * 28)
    found = [(a["rule"], a["session_id"]) for a in alerts(replay(events))]
    assert found == [("P1", "s2")]


def test_P1_age_uses_the_site_time_zone():
    # 23:30 UTC on 2025-03-02 is already 2025-03-03 in Auckland: the patient is 18 there.
    events = [profile(birth_date="2007-03-03"), start(-630), normal(-625), end(-570)]
    assert "P1" in rules(replay(events))
    assert "P1" not in rules(replay(events, MonitorConfig(site_timezone="Pacific/Auckland")))


def test_R5_contraindicated_patient_gets_critical_alert_with_reasons():
    events = [
        normal(-5), start(0), event("vitals.recorded", 20, symptoms=["urticaria"]), end(25, outcome="stopped"),
        normal(28 * 24 * 60 - 5), start(28 * 24 * 60, session="s2"),
    ]
    found = [a for a in alerts(replay(events)) if a["rule"] == "R5"]
    assert len(found) == 1
    assert found[0]["severity"] == "critical" and found[0]["session_id"] == "s2"
    assert found[0]["kind"] == "infusion.contraindicated"
    assert found[0]["evidence"]["reasons"] == ["hypersensitivity"]


def test_R5_cleared_by_hypersensitivity_ruled_out():
    events = [
        normal(-5), start(0), event("vitals.recorded", 20, symptoms=["urticaria"]), end(25, outcome="stopped"),
        event("hypersensitivity.ruled_out", 3000, clinician="Dr. A"),
        normal(28 * 24 * 60 - 5), start(28 * 24 * 60, session="s2"),
    ]
    result = replay(events)
    assert "R5" not in rules(result)
    lifted = [e for e in result.outputs if e.type == "patient.contraindication_lifted"]
    assert [(e.reason.value, e.clinician) for e in lifted] == [("hypersensitivity", "Dr. A")]


def test_R5_pml_suspected_until_cleared():
    later = 28 * 24 * 60
    events = [event("adverse_event.reported", -100, category="new_neurological_symptoms"), *routine_session()]
    assert [r for r in rules(replay(events)) if r != "A3"] == ["R5"]
    events += [event("contraindication.cleared", 200, reason="pml_suspected", clinician="Dr. B"),
               *routine_session(session="s2", t=later)]
    assert [r for r in rules(replay(events)) if r != "A3"] == ["R5"]  # only the first session


R6_CASES = [
    ("R6 no reading at all", [], True),
    ("R6 reading 31 min before start is too early", [-31], True),
    ("R6 reading 30 min before start counts", [-30], False),
    ("R6 reading 5 min after start counts", [5], False),
    ("R6 reading 6 min after start is too late", [6], True),
]


@pytest.mark.parametrize("case,times,expected", R6_CASES, ids=[c[0] for c in R6_CASES])
def test_R6_no_baseline(case, times, expected):
    events = [normal(t) for t in times if t < 0] + [start(0)] + [normal(t) for t in times if t >= 0] + [end(60)]
    found = [a for a in alerts(replay(events)) if a["rule"] == "R6"]
    assert bool(found) == expected
    if expected:
        assert found[0]["occurred_at"] == "2025-03-03T10:05:00Z" and found[0]["severity"] == "medium"


DAY = 24 * 60
R17_CASES = [
    ("R17 85 days: more than 84", 85, True),
    ("R17 boundary: 84 days is not more than 84", 84, False),
    ("R17 28 days: routine interval", 28, False),
]


@pytest.mark.parametrize("case,days,expected", R17_CASES, ids=[c[0] for c in R17_CASES])
def test_R17_reexposure_after_gap(case, days, expected):
    events = routine_session(session="old", t=-days * DAY) + routine_session(session="new")
    result = replay(events)
    found = [a for a in alerts(result) if a["rule"] == "R17"]
    assert bool(found) == expected
    if expected:
        assert found[0]["severity"] == "high" and found[0]["evidence"]["gap_days"] == days
        facts = [e for e in result.outputs if e.type == "reexposure.recorded"]
        assert [f.session_id for f in facts] == ["new"]


def test_R17_counts_calendar_dates_not_hours():
    # 23:00 to 10:00 on the 85th calendar day after: 84 days and 11 h elapsed, 85 calendar days.
    events = routine_session(session="old", t=-(DAY * 84 + 11 * 60)) + routine_session(session="new")
    assert [a["evidence"]["gap_days"] for a in alerts(replay(events)) if a["rule"] == "R17"] == [85]


def test_R17_no_infusion_on_record_no_alert():
    assert "R17" not in rules(replay(routine_session()))


def test_P5_persistent_antibodies_reminder_and_enhanced_monitoring():

    from infusion_monitor.engine.bus import Engine
    from infusion_monitor.cores import all_cores
    from infusion_monitor.replay.offline import replay_lines
    import json

    engine = Engine(MonitorConfig(), all_cores())
    # the lab side's fact (issue: labs) sets the flag; here it is set directly on the state
    engine.state_of("session", "pk-1").persistent_antibodies = True
    events = [normal(-5), start(0), normal(10), end(60)]
    result = replay_lines([json.dumps(e).encode() for e in events], MonitorConfig(), engine=engine)
    found = [(e.rule.value, e.occurred_at.strftime("%H:%M")) for e in result.sorted_outputs() if e.type == "alert.raised"]
    # P5 at start; M1 after 15 min without a reading (enhanced), not after 30
    assert found == [("P5", "10:00"), ("M1", "10:25")]


def test_other_drug_is_ignored_with_a_warning():
    result = replay([normal(-5), start(0, drug="ocrelizumab"), normal(30, symptoms=["stridor"])])
    assert rules(result) == []
    assert [r.field for r in result.reports if r.level == "warning"] == ["drug"]


def test_tysabri_brand_name_is_monitored():
    assert "R11" in rules(replay([normal(-5), start(0, drug="Tysabri"), normal(30, symptoms=["stridor"])]))


def test_second_start_for_known_session_is_bad_input():
    result = replay([normal(-5), start(0), start(10)])
    assert [(r.level, r.field) for r in result.reports] == [("rejected", "session_id")]


@pytest.mark.parametrize("case,events,field", [
    ("end for an unknown session", [end(60, session="nope")], "session_id"),
    ("end for a session already ended", [start(0), end(60), end(61)], "session_id"),
    ("end before start", [start(0), end(-1)], "occurred_at"),
])
def test_bad_infusion_ended(case, events, field):
    result = replay(events)
    assert [(r.level, r.field) for r in result.reports] == [("rejected", field)]
