"""A1-A7: one alert per adverse-event report (clinical-rules.md, "Other adverse events")."""

import pytest

from tests.builders import alerts, event, replay

CASES = [
    ("A1", "suicidal_ideation", "adverse_event.suicidal_ideation", "critical", None),
    ("A2", "pneumonia", "adverse_event.infection", "high", None),
    ("A2", "infection", "adverse_event.infection", "high", None),
    ("A3", "new_neurological_symptoms", "adverse_event.neurological", "high", "pml_suspected"),
    ("A4", "depression", "adverse_event.depression", "medium", None),
    ("A5", "cholelithiasis", "adverse_event.cholelithiasis", "medium", None),
    ("A6", "hypersensitivity", "discontinue.hypersensitivity", "high", "hypersensitivity"),
    ("A7", "herpes_zoster_rash", "adverse_event.other", "medium", None),
    ("A2", "Infection", "adverse_event.infection", "high", None),
]


@pytest.mark.parametrize("rule,category,kind,severity,reason", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_adverse_event_alerts(rule, category, kind, severity, reason):
    result = replay([event("adverse_event.reported", 0, category=category, note="free text stays out")])
    found = alerts(result)
    assert [(a["rule"], a["kind"], a["severity"]) for a in found] == [(rule, kind, severity)]
    assert "free text" not in found[0]["summary"] + str(found[0]["evidence"])
    contraindicated = [e.reason.value for e in result.outputs if e.type == "patient.contraindicated"]
    assert contraindicated == ([reason] if reason else [])
    asks_test = [e.rule.value for e in result.outputs if e.type == "reaction.recorded"]
    assert asks_test == (["A6"] if rule == "A6" else [])  # R14 after a confirmed hypersensitivity


def test_one_alert_per_report():
    result = replay([event("adverse_event.reported", 0, category="infection"),
                     event("adverse_event.reported", 5, category="infection")])
    assert len({a["alert_id"] for a in alerts(result)}) == 2


def test_A7_names_the_category_in_evidence():
    (alert,) = alerts(replay([event("adverse_event.reported", 0, category="alopecia")]))
    assert alert["evidence"]["category"] == "alopecia"
