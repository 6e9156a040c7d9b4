"""FHIR R4 bodies for gateway tests."""

from __future__ import annotations

import json
from typing import Any

MR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
HOSP_SYSTEM = "urn:oid:1.2.3.4.5.6"
SYSTEMS = {HOSP_SYSTEM: "HOSP"}
VITAL = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]
LABCAT = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]


def patient(pid: str = "p1", mrn: str = "MRN12345") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": [{"type": MR_TYPE, "system": HOSP_SYSTEM, "value": mrn}],
            "name": [{"family": "DOE", "given": ["JANE"]}], "gender": "female", "birthDate": "1985-04-12"}


def loinc(code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": "http://loinc.org", "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def qty(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def bp(at: str, sys_: float, dia: float, subject: str = "urn:uuid:patient-1", oid: str = "bp1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "category": VITAL, "code": loinc("85354-9"),
            "subject": {"reference": subject}, "effectiveDateTime": at,
            "component": [{"code": loinc("8480-6"), "valueQuantity": qty(sys_, "mm[Hg]")},
                          {"code": loinc("8462-4"), "valueQuantity": qty(dia, "mm[Hg]")}]}


def vital(code: str, at: str, value: float, unit: str, subject: str = "urn:uuid:patient-1", oid: str = "v1",
          note: str = "") -> dict[str, Any]:
    obs = {"resourceType": "Observation", "id": oid, "status": "final", "category": VITAL, "code": loinc(code),
           "subject": {"reference": subject}, "effectiveDateTime": at, "valueQuantity": qty(value, unit)}
    if note:
        obs["note"] = [{"text": note}]
    return obs


def administration(status: str, start: str, end: str | None = None, mid: str = "ma1",
                   subject: str = "urn:uuid:patient-1") -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {"resourceType": "MedicationAdministration", "id": mid, "status": status,
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "354770", "display": "natalizumab"}],
                                          "text": "Tysabri 300 mg IV"},
            "subject": {"reference": subject}, "effectivePeriod": period,
            "dosage": {"dose": {"value": 300, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}}


def bundle(*resources: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    entries = []
    for i, res in enumerate(resources):
        url = "urn:uuid:patient-1" if res["resourceType"] == "Patient" else f"urn:uuid:{res['resourceType']}-{i}"
        entries.append({"fullUrl": url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}})
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def notification(*resources: dict[str, Any]) -> dict[str, Any]:
    status = {"resourceType": "Parameters", "parameter": [
        {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
        {"name": "type", "valueCode": "event-notification"}]}
    entries = [{"fullUrl": "urn:uuid:status", "resource": status}]
    for i, res in enumerate(resources):
        url = "urn:uuid:patient-1" if res["resourceType"] == "Patient" else f"urn:uuid:n-{i}"
        entries.append({"fullUrl": url, "resource": res, "request": {"method": "PUT", "url": res["resourceType"]},
                        "response": {"status": "200"}})
    return {"resourceType": "Bundle", "type": "history", "timestamp": "2025-03-01T10:00:00Z", "entry": entries}


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()
