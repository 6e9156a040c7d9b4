"""R7-R13 grading, table-driven: each case names the rule it holds (clinical-rules.md)."""

import pytest

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.session_monitor.hypersensitivity import RULES, grade, strongest, systolic_fall_exceeds
from infusion_monitor.schemas.vocab import Rule

CFG = MonitorConfig()

CASES = [
    # (rule under test, readings, symptoms, baseline systolic, expected met rules)
    ("R7 systolic below 90", {"systolic_mmhg": 89}, [], None, ["R7"]),
    ("R7 boundary: 90 is not below 90", {"systolic_mmhg": 90}, [], None, []),
    ("R7 fall of more than 30 %", {"systolic_mmhg": 139}, [], 200, ["R7"]),
    ("R7 boundary: 200 -> 140 is exactly 30 %, no alert", {"systolic_mmhg": 140}, [], 200, []),
    ("R7 boundary: 130 -> 91 is exactly 30 %, no alert", {"systolic_mmhg": 91}, [], 130, []),
    ("R7 fall with decimals 123.3 -> 86.3 is 30.008 %", {"systolic_mmhg": 86.3}, [], 123.3, ["R7"]),
    ("R8 SpO2 at 92", {"spo2_pct": 92}, [], None, ["R8"]),
    ("R8 boundary: SpO2 92.1 is not", {"spo2_pct": 92.1}, [], None, []),
    ("R8 cyanosis", {}, ["cyanosis"], None, ["R8"]),
    ("R9 syncope", {}, ["syncope"], None, ["R9"]),
    ("R9 confusion, any case", {}, ["Confusion"], None, ["R9"]),
    ("R10 skin + gastrointestinal", {}, ["urticaria", "vomiting"], None, ["R10"]),
    ("R10 skin + cardiovascular", {}, ["flushing", "dizziness"], None, ["R10"]),
    ("R10 skin + dyspnea", {}, ["rash", "dyspnea"], None, ["R10"]),
    ("R10 and R11: skin + wheeze", {}, ["urticaria", "wheeze"], None, ["R10", "R11"]),
    ("R11 stridor without skin", {}, ["stridor"], None, ["R11"]),
    ("R11 throat tightness", {}, ["throat_tightness"], None, ["R11"]),
    ("R12 skin only", {}, ["urticaria", "pruritus"], None, ["R12"]),
    ("R12 skin with non-allergic symptoms stays R12", {}, ["rash", "headache", "fever"], None, ["R12"]),
    ("R12 skin with a fever stays R12", {"temperature_c": 38.5}, ["erythema"], None, ["R12"]),
    ("R12b dyspnea without skin", {}, ["dyspnea"], None, ["R12b"]),
    ("R12b chest tightness without skin", {}, ["chest_tightness"], None, ["R12b"]),
    ("R13 headache", {}, ["headache"], None, ["R13"]),
    ("R13 temperature 38.0", {"temperature_c": 38.0}, [], None, ["R13"]),
    ("R13 boundary: 37.9 is not", {"temperature_c": 37.9}, [], None, []),
    ("R13 cardiovascular without skin", {}, ["dizziness"], None, ["R13"]),
    ("R13 gastrointestinal without skin", {}, ["nausea"], None, ["R13"]),
    ("R13 unknown code counts as non-allergic", {}, ["tingling"], None, ["R13"]),
    ("R7 with skin only: both met", {"systolic_mmhg": 85}, ["urticaria"], None, ["R7", "R12"]),
    ("nothing: normal readings", {"systolic_mmhg": 120, "spo2_pct": 98, "temperature_c": 36.9}, [], 121, []),
]


@pytest.mark.parametrize("name,readings,symptoms,base,expected", CASES, ids=[c[0] for c in CASES])
def test_grade(name, readings, symptoms, base, expected):
    assert [r.value for r in grade(readings, symptoms, base, CFG)] == expected


STRONGEST = [
    ("R7 outranks R12", ["R7", "R12"], "R7"),
    ("R10 and R11 tie at critical/moderate: first in table", ["R10", "R11"], "R10"),
    ("R7, R8 tie at critical/severe: first in table", ["R7", "R8", "R11"], "R7"),
    ("R12b (high, moderate) outranks R12 (high, mild)", ["R12", "R12b"], "R12b"),
]


@pytest.mark.parametrize("name,met,expected", STRONGEST, ids=[c[0] for c in STRONGEST])
def test_strongest_rule_is_named(name, met, expected):
    assert strongest([Rule(m) for m in met]).rule.value == expected


def test_severities_follow_the_table():
    table = {"R7": "critical", "R8": "critical", "R9": "critical", "R10": "critical", "R11": "critical",
             "R12": "high", "R12b": "high", "R13": "medium"}
    assert {r.value: spec.severity.value for r, spec in RULES.items()} == table


def test_relative_fall_is_exact_decimal():
    # 1 - 140/200 in binary floating point is 0.30000000000000004 > 0.3: the naive check alerts.
    assert 1 - 140 / 200 > 0.30
    assert not systolic_fall_exceeds(200, 140, 30)
    assert systolic_fall_exceeds(200, 139.9, 30)
