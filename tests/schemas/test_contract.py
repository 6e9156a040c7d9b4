"""The contract's models: strict validation, errors that name the field, extras kept."""

from __future__ import annotations

import json

import pytest

from infusion_monitor.schemas import Rejection, parse_inbound
from infusion_monitor.schemas.export import export_json_schemas, json_schemas
from infusion_monitor.schemas.vocab import AlertKind, Symptom

BASE = {"event_id": "e1", "occurred_at": "2025-03-03T10:00:00+01:00", "patient_id": "pk-1"}

REJECTIONS = [
    ("invalid JSON", b"{nope", ""),
    ("not an object", b"[1, 2]", ""),
    ("missing type", {**BASE}, "type"),
    ("unknown type", {**BASE, "type": "vitals.guessed"}, "type"),
    ("missing event_id", {"type": "clock.tick", "occurred_at": "2025-03-03T10:00:00Z"}, "event_id"),
    ("time without offset", {**BASE, "type": "vitals.recorded", "occurred_at": "2025-03-03T10:00:00", "spo2_pct": 97}, "occurred_at"),
    ("epoch number as time", {**BASE, "type": "vitals.recorded", "occurred_at": 1740992400, "spo2_pct": 97}, "occurred_at"),
    ("epoch seconds as a string (found by the fuzzer)", {**BASE, "type": "vitals.recorded", "occurred_at": "1741000000", "spo2_pct": 97}, "occurred_at"),
    ("a date as a number string", {**BASE, "type": "patient.profile", "birth_date": "19900101"}, "birth_date"),
    ("missing patient_id", {"type": "infusion.started", "event_id": "e", "occurred_at": "2025-03-03T10:00:00Z", "session_id": "s"}, "patient_id"),
    ("patient_id a number", {**BASE, "patient_id": 7, "type": "infusion.started", "session_id": "s"}, "patient_id"),
    ("session_id missing on start", {**BASE, "type": "infusion.started"}, "session_id"),
    ("outcome not in the vocabulary", {**BASE, "type": "infusion.ended", "session_id": "s", "outcome": "paused"}, "outcome"),
    ("birth_date missing", {**BASE, "type": "patient.profile"}, "birth_date"),
    ("pregnant as a string", {**BASE, "type": "patient.profile", "birth_date": "1990-01-01", "pregnant": "yes"}, "pregnant"),
    ("lab value a word", {**BASE, "type": "lab.resulted", "code": "751-8", "value": "low"}, "value"),
    ("contraindication reason unknown", {**BASE, "type": "contraindication.cleared", "reason": "boredom"}, "reason"),
    ("vitals with nothing valid", {**BASE, "type": "vitals.recorded", "heart_rate_bpm": 400}, ""),
    ("huge event_id", {**BASE, "event_id": "x" * 300, "type": "clock.tick"}, "event_id"),
]


@pytest.mark.parametrize("case,raw,field", REJECTIONS, ids=[c[0] for c in REJECTIONS])
def test_rejections_name_the_field(case, raw, field):
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    result = parse_inbound(data)
    assert isinstance(result, Rejection)
    assert result.field == field
    assert result.reason


DROPS = [
    ("systolic as a string", {"systolic_mmhg": "120"}, "systolic_mmhg", "wrong type"),
    ("boolean heart rate", {"heart_rate_bpm": True}, "heart_rate_bpm", "wrong type"),
    ("negative respiratory rate", {"respiratory_rate_bpm": -1}, "respiratory_rate_bpm", "negative"),
    ("SpO2 above 100", {"spo2_pct": 100.5}, "spo2_pct", "physically impossible"),
    ("systolic below 20", {"systolic_mmhg": 19}, "systolic_mmhg", "physically impossible"),
    ("systolic above 300", {"systolic_mmhg": 301}, "systolic_mmhg", "physically impossible"),
    ("diastolic below 10", {"diastolic_mmhg": 9}, "diastolic_mmhg", "physically impossible"),
    ("diastolic above 250", {"diastolic_mmhg": 251}, "diastolic_mmhg", "physically impossible"),
    ("heart rate above 300", {"heart_rate_bpm": 301}, "heart_rate_bpm", "physically impossible"),
    ("respiratory rate above 80", {"respiratory_rate_bpm": 81}, "respiratory_rate_bpm", "physically impossible"),
    ("temperature below 25", {"temperature_c": 24.9}, "temperature_c", "physically impossible"),
    ("temperature above 45", {"temperature_c": 45.1}, "temperature_c", "physically impossible"),
    ("symptom not a string", {"symptoms": ["rash", 5]}, "symptoms.1", "not a symptom code"),
]


@pytest.mark.parametrize("case,fields,field,reason", DROPS, ids=[c[0] for c in DROPS])
def test_bad_reading_is_dropped_and_the_rest_kept(case, fields, field, reason):
    event = parse_inbound(json.dumps({**BASE, "type": "vitals.recorded", "symptoms": ["Stridor"], **fields}).encode())
    assert not isinstance(event, Rejection)
    assert [(d.field, d.reason.split(":")[0].split(" (")[0]) for d in event.dropped] == [(field, reason)]
    assert event.symptoms[0] in ("Stridor", "rash")  # the emergency beside a faulty value is kept


@pytest.mark.parametrize("field,value", [("systolic_mmhg", 20), ("systolic_mmhg", 300), ("spo2_pct", 100),
                                         ("temperature_c", 25), ("temperature_c", 45), ("diastolic_mmhg", 10)])
def test_reading_limits_are_inclusive(field, value):
    event = parse_inbound(json.dumps({**BASE, "type": "vitals.recorded", field: value}).encode())
    assert not isinstance(event, Rejection) and event.readings() == {field: value}


def test_unknown_extra_fields_are_kept_and_ignored():
    event = parse_inbound(json.dumps({**BASE, "type": "vitals.recorded", "spo2_pct": 97, "vendor": {"x": 1}}).encode())
    assert event.model_extra == {"vendor": {"x": 1}}


def test_every_event_has_a_json_schema_and_export_writes_them(tmp_path):
    schemas = json_schemas()
    assert {"vitals.recorded", "alert.raised", "session.closed", "antibody_test.due", "alert.acknowledged"} <= set(schemas)
    written = export_json_schemas(tmp_path)
    assert len(written) == len(schemas)
    vitals = json.loads((tmp_path / "vitals.recorded.json").read_text())
    assert vitals["properties"]["spo2_pct"]["anyOf"][0]["maximum"] == 100
    assert "urticaria" in json.dumps(vitals)


def test_vocabularies_are_enums():
    assert "discontinue.hypersensitivity" in {k.value for k in AlertKind}
    assert len(Symptom) == 33
