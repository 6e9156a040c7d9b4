"""L1-L6 on lab.resulted, table-driven, with unit conversions and missing reference ranges
(clinical-rules.md, "Laboratory results")."""

from __future__ import annotations

import pytest

from infusion_monitor.engine.config import MonitorConfig
from tests.builders import DAY_MIN, alerts, event, lab, replay, routine_session, start

ON_TREATMENT = routine_session()  # a natalizumab infusion on day 0


def lab_alerts(result):
    return [(a["rule"], a["severity"]) for a in alerts(result) if a["rule"].startswith("L")]


CASES = [
    # (case, infusion history, result fields, expected (rule, severity) list)
    ("L1 lymphocytes above range on treatment: info", ON_TREATMENT,
     dict(code="731-0", value=4.5, unit="10*9/L", reference_high=4.0), [("L1", "info")]),
    ("L1 boundary: equal to reference_high is not above", ON_TREATMENT,
     dict(code="731-0", value=4.0, unit="10*9/L", reference_high=4.0), []),
    ("L1 eosinophils in /uL against a /uL range", ON_TREATMENT,
     dict(code="711-2", value=700, unit="/uL", reference_high=500), [("L1", "info")]),
    ("L1 generic lymphocyte count 26474-7, NIST-style 10*3/uL", ON_TREATMENT,
     dict(code="26474-7", value=5.2, unit="10*3/uL", reference_high=4.8), [("L1", "info")]),
    ("L1 generic monocyte count 26484-6", ON_TREATMENT,
     dict(code="26484-6", value=1.3, unit="10*9/L", reference_high=1.0), [("L1", "info")]),
    ("L1 generic eosinophil count 26449-9 in /uL", ON_TREATMENT,
     dict(code="26449-9", value=600, unit="/uL", reference_high=450), [("L1", "info")]),
    ("L1 generic basophil count 26444-0", ON_TREATMENT,
     dict(code="26444-0", value=0.4, unit="10*3/uL", reference_high=0.3), [("L1", "info")]),
    ("L1 boundary: generic basophils equal to reference_high", ON_TREATMENT,
     dict(code="26444-0", value=0.3, unit="10*3/uL", reference_high=0.3), []),
    ("L1/L2 need a reference_high", ON_TREATMENT, dict(code="742-7", value=9.9, unit="10*9/L"), []),
    ("L1/L2 need an infusion on record", [], dict(code="731-0", value=4.5, reference_high=4.0), []),
    ("L3 neutrophils 1.4: low", [], dict(code="751-8", value=1.4, unit="10*9/L"), [("L3", "low")]),
    ("L3 boundary: 1.5 is not below 1.5", [], dict(code="751-8", value=1.5), []),
    ("L3 neutrophils 0.99: medium", [], dict(code="26499-4", value=0.99), [("L3", "medium")]),
    ("L3 boundary: 1.0 is low, not medium", [], dict(code="751-8", value=1.0), [("L3", "low")]),
    ("L3 neutrophils 0.4: high", [], dict(code="751-8", value=0.4), [("L3", "high")]),
    ("L3 boundary: 500 /uL is 0.5, medium not high", [], dict(code="751-8", value=500, unit="/uL"), [("L3", "medium")]),
    ("L3 boundary: 1500 /mm3 is exactly 1.5, no alert", [], dict(code="751-8", value=1500, unit="/mm3"), []),
    ("L3 10*3/uL equals 10*9/L", [], dict(code="751-8", value=0.9, unit="10*3/uL"), [("L3", "medium")]),
    ("L3 always reported, on treatment too", ON_TREATMENT, dict(code="751-8", value=0.9), [("L3", "medium")]),
    ("L4 platelets 74: medium", [], dict(code="777-3", value=74), [("L4", "medium")]),
    ("L4 boundary: 75 is no alert", [], dict(code="777-3", value=75), []),
    ("L4 platelets 49 x10^3/mm3: high", [], dict(code="26515-7", value=49, unit="10*3/mm3"), [("L4", "high")]),
    ("L4 boundary: 50 is medium", [], dict(code="777-3", value=50), [("L4", "medium")]),
    ("L5 ALT 121 > 3x ULN 40 (default)", [], dict(code="1742-6", value=121, unit="U/L"), [("L5", "medium")]),
    ("L5 boundary: ALT 120 is exactly 3x", [], dict(code="1742-6", value=120), []),
    ("L5 AST > 5x reference_high 35", [], dict(code="1920-8", value=176, unit="[IU]/L", reference_high=35), [("L5", "high")]),
    ("L5 boundary: AST exactly 5x is medium", [], dict(code="1920-8", value=175, reference_high=35), [("L5", "medium")]),
    ("L5 reference_high beats the default", [], dict(code="1742-6", value=100, reference_high=30), [("L5", "medium")]),
]


@pytest.mark.parametrize("case,history,fields,expected", CASES, ids=[c[0] for c in CASES])
def test_lab_rules(case, history, fields, expected):
    fields = dict(fields)
    result = replay(history + [lab(3 * DAY_MIN, fields.pop("code"), fields.pop("value"), **fields)])
    assert lab_alerts(result) == expected


L1_L2_DAYS = [
    ("L1 112 days after the last infusion: still on treatment", 112, ("L1", "info")),
    ("L2 113 days after: not normalised", 113, ("L2", "low")),
]


@pytest.mark.parametrize("case,days,expected", L1_L2_DAYS, ids=[c[0] for c in L1_L2_DAYS])
def test_L1_L2_boundary_in_calendar_days(case, days, expected):
    result = replay(ON_TREATMENT + [lab(days * DAY_MIN, "704-7", 0.3, reference_high=0.2)])
    assert lab_alerts(result) == [expected]


def test_L1_L2_only_natalizumab_infusions_count():
    events = [start(0, drug="ocrelizumab"), lab(3 * DAY_MIN, "731-0", 5, reference_high=4)]
    assert lab_alerts(replay(events)) == []


@pytest.mark.parametrize("unit", ["%", "g/L", "mmol/L"])
def test_unknown_unit_is_bad_input(unit):
    result = replay([lab(0, "751-8", 1.2, unit=unit)])
    assert lab_alerts(result) == []
    assert [(r.level, r.field) for r in result.reports] == [("rejected", "unit")]


def test_no_unit_means_the_first_listed():
    assert lab_alerts(replay([lab(0, "777-3", 40)])) == [("L4", "high")]


def test_word_value_for_a_count_is_bad_input():
    result = replay([lab(0, "751-8", "positive")])
    assert [(r.level, r.field) for r in result.reports] == [("rejected", "value")]


def test_tests_no_rule_reads_are_accepted_and_ignored():
    result = replay([lab(0, "2345-7", 5.4, unit="mmol/L")])
    assert result.outputs == [] and result.reports == []


def test_L3_one_alert_per_specimen_escalating_on_a_correction():
    events = [lab(0, "751-8", 1.2, event_id="lis-1"), lab(0, "751-8", 1.2),
              lab(0, "751-8", 0.4, corrects="lis-1"), lab(60, "751-8", 1.2)]
    found = [a for a in alerts(replay(events)) if a["rule"] == "L3"]
    assert [(a["severity"], a["occurred_at"][11:16]) for a in found] == [("low", "10:00"), ("high", "10:00"), ("low", "11:00")]
    assert found[1]["supersedes"] == found[0]["alert_id"]
    assert found[1]["evidence"]["corrects"] == "lis-1"


def test_L5_ALT_and_AST_on_one_specimen_give_one_alert_escalating():
    events = [lab(0, "1742-6", 130), lab(0, "1920-8", 210)]
    assert lab_alerts(replay(events)) == [("L5", "medium"), ("L5", "high")]
    assert lab_alerts(replay(list(reversed(events)))) == [("L5", "high")]


# --- L6: Hy's law ----------------------------------------------------------------------------

HYS = [
    ("L6 ALT 3x and bilirubin >2x on one specimen", [("1742-6", 120, None, 0), ("1975-2", 43, None, 0)], True),
    ("L6 boundary: bilirubin exactly 2x ULN (42 umol/L) is not more", [("1742-6", 120, None, 0), ("1975-2", 42, None, 0)], False),
    ("L6 boundary: ALT just under 3x", [("1742-6", 119.9, None, 0), ("1975-2", 50, None, 0)], False),
    ("L6 bilirubin in mg/dL: 2.5 mg/dL = 42.75 umol/L > 42", [("1920-8", 150, None, 0), ("1975-2", 2.5, "mg/dL", 0)], True),
    ("L6 boundary: bilirubin first, ALT 168 h later", [("1975-2", 50, None, 0), ("1742-6", 130, None, 168 * 60)], True),
    ("L6 boundary: 168 h + 1 min apart is too far", [("1975-2", 50, None, 0), ("1742-6", 130, None, 168 * 60 + 1)], False),
    ("L6 late result older than the other, in either order", [("1742-6", 130, None, 5 * DAY_MIN), ("1975-2", 50, None, 0)], True),
    ("L6 molar bilirubin 14631-6 (SI labs): 43 umol/L > 2x the default 21", [("1742-6", 120, None, 0), ("14631-6", 43, "umol/L", 0)], True),
    ("L6 boundary: molar bilirubin 14631-6 exactly 2x the default ULN", [("1742-6", 120, None, 0), ("14631-6", 42, "umol/L", 0)], False),
    ("L6 molar bilirubin against its own reference_high 17", [("1920-8", 130, None, 0), ("14631-6", 35, "umol/L", 0, 17)], True),
]


@pytest.mark.parametrize("case,results,expected", HYS, ids=[c[0] for c in HYS])
def test_L6_hys_law(case, results, expected):
    events = [lab(r[3], r[0], r[1], **({"unit": r[2]} if r[2] else {}), **({"reference_high": r[4]} if len(r) > 4 else {}))
              for r in results]
    result = replay(events)
    found = [a for a in alerts(result) if a["rule"] == "L6"]
    assert bool(found) == expected
    if expected:
        assert found[0]["severity"] == "critical" and found[0]["kind"] == "discontinue.liver_injury"
        facts = [(e.reason.value, e.rule.value) for e in result.outputs if e.type == "patient.contraindicated"]
        assert facts == [("liver_injury", "L6")]


def test_L6_once_per_patient_until_cleared_then_again():
    pair = lambda m: [lab(m, "1742-6", 200), lab(m, "1975-2", 60)]  # noqa: E731
    events = pair(0) + pair(DAY_MIN * 10)
    assert [a["rule"] for a in alerts(replay(events))].count("L6") == 1
    events = pair(0) + [event("contraindication.cleared", DAY_MIN, reason="liver_injury", clinician="Dr. H")] + pair(DAY_MIN * 10)
    assert [a["rule"] for a in alerts(replay(events))].count("L6") == 2


def test_L6_evidence_names_both_results_and_ALP():
    events = [lab(0, "6768-6", 300, unit="U/L"), lab(60, "1742-6", 200, reference_high=40), lab(120, "1975-2", 3.0, unit="mg/dL")]
    (alert,) = [a for a in alerts(replay(events)) if a["rule"] == "L6"]
    ev = alert["evidence"]
    assert ev["transaminase"]["x_uln"] == 5.0 and ev["bilirubin_umol_l"]["value"] == 51.3
    assert ev["alp"]["value"] == 300 and ev["hours_apart"] == 1.0


def test_L6_makes_the_next_infusion_contraindicated():
    events = [lab(0, "1742-6", 200), lab(0, "1975-2", 60)] + routine_session(t=3 * DAY_MIN)
    r5 = [a for a in alerts(replay(events)) if a["rule"] == "R5"]
    assert [a["evidence"]["reasons"] for a in r5] == [["liver_injury"]]


def test_L6_with_the_eu_profile_too():
    events = [lab(0, "1742-6", 200), lab(0, "1975-2", 60)]
    assert "L6" in [a["rule"] for a in alerts(replay(events, MonitorConfig(profile="eu")))]
