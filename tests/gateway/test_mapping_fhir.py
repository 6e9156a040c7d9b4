"""FHIR R4 -> contract events on the pure core (integrations.md, "FHIR R4")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infusion_monitor.gateway.mapping.book import Book
from infusion_monitor.gateway.mapping.fhir import FhirError, translate_fhir
from infusion_monitor.gateway.mapping.router import translate
from tests.gateway.fhirmsg import (
    HOSP_SYSTEM, LABCAT, MR_TYPE, SYSTEMS, administration, body, bp, bundle, loinc, notification, patient, qty, vital,
)
from tests.gateway.hl7msg import adt, config

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CFG = config(fhir_identifier_systems=SYSTEMS)


def run(data) -> list[dict]:
    return translate_fhir(body(data), CFG, NOW).events


def test_patient_gives_the_profile_under_the_hl7_key():
    [event] = run(patient())
    hl7_key = translate(adt("A04"), CFG, Book(), NOW).events[0]["patient_id"]
    assert event["patient_id"] == hl7_key
    assert (event["birth_date"], event["sex"]) == ("1985-04-12", "female")
    assert "DOE" not in repr(event) and "MRN12345" not in repr(event)


def test_transaction_bundle_with_administration_and_vitals():
    events = run(bundle(
        patient(), administration("in-progress", "2025-03-01T10:00:00Z"),
        bp("2025-03-01T10:20:00Z", 84, 48, oid="bp1"),
        vital("59408-5", "2025-03-01T10:20:00Z", 89, "%", oid="sp1"),
        vital("8867-4", "2025-03-01T10:20:00Z", 128, "/min", oid="hr1"),
        vital("8310-5", "2025-03-01T10:20:00Z", 100.4, "[degF]", oid="t1"),
    ))
    types = [e["type"] for e in events]
    assert types == ["patient.profile", "infusion.started", "vitals.recorded"]
    started, reading = events[1], events[2]
    assert started["occurred_at"] == "2025-03-01T10:00:00Z" and started["dose_mg"] == 300.0
    assert {k: reading[k] for k in ("systolic_mmhg", "diastolic_mmhg", "spo2_pct", "heart_rate_bpm", "temperature_c")} \
        == {"systolic_mmhg": 84, "diastolic_mmhg": 48, "spo2_pct": 89, "heart_rate_bpm": 128, "temperature_c": 38.0}
    assert len({e["patient_id"] for e in events}) == 1


def test_bundle_twice_gives_the_same_event_ids():
    data = bundle(patient(), administration("in-progress", "2025-03-01T10:00:00Z"),
                  vital("8867-4", "2025-03-01T10:20:00Z", 72, "/min"))
    assert [e["event_id"] for e in run(data)] == [e["event_id"] for e in run(data)]


@pytest.mark.parametrize("status, outcome", [("completed", "completed"), ("stopped", "stopped")])
def test_administration_end(status, outcome):
    [ended] = run(bundle(patient(), administration(status, "2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z")))[1:]
    assert (ended["type"], ended["outcome"], ended["occurred_at"]) == ("infusion.ended", outcome, "2025-03-01T11:00:00Z")
    started = run(bundle(patient(), administration("in-progress", "2025-03-01T10:00:00Z")))[1]
    assert ended["session_id"] == started["session_id"]


def test_other_drug_is_ignored():
    other = administration("in-progress", "2025-03-01T10:00:00Z")
    other["medicationCodeableConcept"] = {"text": "ocrelizumab"}
    result = translate_fhir(body(bundle(patient(), other)), CFG, NOW)
    assert [e["type"] for e in result.events] == ["patient.profile"] and result.ignored == 1


def test_subscription_notification_skips_the_status_entry():
    events = run(notification(patient(), vital("8867-4", "2025-03-01T10:20:00Z", 72, "/min")))
    assert [e["type"] for e in events] == ["patient.profile", "vitals.recorded"]


def test_subject_by_identifier_without_a_patient_entry():
    obs = vital("8867-4", "2025-03-01T10:20:00Z", 72, "/min")
    obs["subject"] = {"identifier": {"type": MR_TYPE, "system": HOSP_SYSTEM, "value": "MRN12345"}}
    [event] = run(obs)
    assert event["patient_id"] == run(patient())[0]["patient_id"]


def test_laboratory_observation_with_range_and_correction():
    obs = {"resourceType": "Observation", "id": "lab1", "status": "final", "category": LABCAT,
           "code": loinc("751-8"), "subject": {"reference": "urn:uuid:patient-1"},
           "effectiveDateTime": "2025-03-01T08:00:00Z", "issued": "2025-03-01T10:00:00Z",
           "valueQuantity": qty(3.1, "10*9/L"), "referenceRange": [{"low": qty(1.5, "10*9/L"), "high": qty(7.5, "10*9/L")}]}
    final = run(bundle(patient(), obs))[1]
    assert (final["code"], final["value"], final["reference_low"], final["reference_high"]) == ("751-8", 3.1, 1.5, 7.5)
    corrected = run(bundle(patient(), {**obs, "status": "corrected", "valueQuantity": qty(1.3, "10*9/L")}))[1]
    assert corrected["corrects"] == final["result_key"] and corrected["event_id"] != final["event_id"]


def test_antibody_observation_spellings():
    obs = {"resourceType": "Observation", "id": "ab1", "status": "final", "category": LABCAT, "code": loinc("58012-6"),
           "subject": {"reference": "urn:uuid:patient-1"}, "effectiveDateTime": "2025-03-01T08:00:00Z",
           "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260373001",
                                                "display": "Detected"}]}}
    assert run(bundle(patient(), obs))[1]["value"] == "positive"
    neg = {**obs, "valueCodeableConcept": None, "valueString": "NEG"}
    del neg["valueCodeableConcept"]
    assert run(bundle(patient(), neg))[1]["value"] == "negative"


INVALID = [
    ("not JSON", b"{", 400, ""),
    ("no resourceType", b"{}", 400, "resourceType"),
    ("unknown resource type", body({"resourceType": "Gizmo"}), 400, "Gizmo.resourceType"),
    ("bad decimal", body({**vital("8867-4", "2025-03-01T10:20:00Z", 72, "/min"), "valueQuantity": {"value": "fast"}}),
     400, "Observation.valueQuantity.value"),
    ("bad element in a bundle entry",
     body(bundle(patient(), {**vital("8867-4", "2025-03-01T10:20:00Z", 72, "/min"), "valueQuantity": {"value": "x"}})),
     400, "Bundle.entry[1].resource.valueQuantity.value"),
    ("no patient", body({**vital("8867-4", "2025-03-01T10:20:00Z", 72, "/min"), "subject": {"reference": "Patient/zz"}}),
     422, "Observation.subject"),
    ("unknown unit", body(bundle(patient(), vital("8867-4", "2025-03-01T10:20:00Z", 72, "Hz"))), 422,
     "Bundle.entry[1].resource.valueQuantity.code"),
    ("date without time", body(bundle(patient(), vital("8867-4", "2025-03-01", 72, "/min"))), 422,
     "Bundle.entry[1].resource.effectiveDateTime"),
]


@pytest.mark.parametrize("case, raw, status, path", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_bodies_name_the_element(case, raw, status, path):
    with pytest.raises(FhirError) as caught:
        translate_fhir(raw, CFG, NOW)
    assert (caught.value.status, caught.value.path) == (status, path)
