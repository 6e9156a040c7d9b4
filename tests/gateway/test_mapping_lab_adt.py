"""Lab ORU^R01 -> lab.resulted and ADT -> patient.profile on the pure core, plus ACK building
(integrations.md, "Lab ORU^R01", "Patient identity and privacy", "MLLP and acknowledgements")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infusion_monitor.gateway.mapping.ack import build_ack, msh_fields
from infusion_monitor.gateway.mapping.book import Book
from infusion_monitor.gateway.mapping.router import translate
from tests.gateway.hl7msg import adt, config, lab, obx, ts

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def run(raw: bytes, **cfg):
    return translate(raw, config(**cfg), Book(), NOW)


def lab_obx(code: str, value: str, unit: str = "10*9/L", rng: str = "", status: str = "F", kind: str = "NM") -> str:
    return obx(1, code, value, unit, status=status, kind=kind, rng=rng)


LAB_CASES = [
    ("LOINC in the first triplet", lab_obx("731-0^Lymphocytes^LN", "4.2"), {"code": "731-0", "value": 4.2}),
    ("alternate LOINC triplet", lab_obx("LYM^Lymphs^L^731-0^Lymphocytes^LN", "4.2"), {"code": "731-0", "value": 4.2}),
    ("range low-high", lab_obx("751-8^Neutrophils^LN", "3.1", rng="1.5-7.5"),
     {"code": "751-8", "value": 3.1, "reference_low": 1.5, "reference_high": 7.5}),
    ("range <high", lab_obx("1742-6^ALT^LN", "38", unit="U/L", rng="<40"),
     {"code": "1742-6", "value": 38.0, "reference_high": 40.0}),
    ("range >low", lab_obx("777-3^Platelets^LN", "212", rng=">150"),
     {"code": "777-3", "value": 212.0, "reference_low": 150.0}),
    ("missing range", lab_obx("777-3^Platelets^LN", "212"), {"code": "777-3", "value": 212.0}),
    ("UCUM unit kept", lab_obx("1975-2^Bilirubin^LN", "1.1", unit="mg/dL^mg/dL^UCUM"),
     {"code": "1975-2", "value": 1.1, "unit": "mg/dL"}),
    ("antibody Detected (CWE text)", lab_obx("58012-6^Natalizumab Ab^LN", "260373001^Detected^SCT", unit="", kind="CWE"),
     {"code": "58012-6", "value": "positive"}),
    ("antibody Not detected", lab_obx("58012-6^^LN", "Not detected", unit="", kind="ST"),
     {"code": "58012-6", "value": "negative"}),
    ("antibody POS", lab_obx("58012-6^^LN", "POS", unit="", kind="ST"), {"code": "58012-6", "value": "positive"}),
    ("antibody neg lower case", lab_obx("58012-6^^LN", "neg", unit="", kind="ST"), {"code": "58012-6", "value": "negative"}),
    ("antibody Positive", lab_obx("58012-6^^LN", "Positive", unit="", kind="ST"), {"code": "58012-6", "value": "positive"}),
]


@pytest.mark.parametrize("case, line, expected", LAB_CASES, ids=[c[0] for c in LAB_CASES])
def test_lab_mapping(case, line, expected):
    result = run(lab(line))
    assert result.feed == "lab" and result.ack_code == "AA", result.rejection
    [event] = result.events
    assert {k: v for k, v in event.items() if k in expected} == expected
    assert "reference_low" in event or "reference_low" not in expected
    assert event["occurred_at"] == "2025-03-01T08:00:00Z"  # OBR-7, the collection time
    assert event["resulted_at"] == "2025-03-01T10:00:00Z"  # OBR-22


def test_local_code_through_the_configured_table():
    result = run(lab(lab_obx("ALT^ALT^99LAB", "38", unit="U/L")), local_lab_codes={"ALT": "1742-6"})
    assert result.events[0]["code"] == "1742-6"
    assert run(lab(lab_obx("ALT^ALT^99LAB", "38", unit="U/L"))).ignored == 1  # no table: not used


def test_results_not_used_are_counted():
    result = run(lab(lab_obx("718-7^Hemoglobin^LN", "13.1", unit="g/dL"), lab_obx("731-0^^LN", "2.0")))
    assert [e["code"] for e in result.events] == ["731-0"] and result.ignored == 1


@pytest.mark.parametrize("status, forwarded", [("F", True), ("C", True), ("P", False), ("X", False), ("D", False),
                                               ("W", False)])
def test_result_status(status, forwarded):
    assert bool(run(lab(lab_obx("731-0^^LN", "2.0", status=status))).events) is forwarded


def test_preliminary_only_when_configured():
    result = run(lab(lab_obx("731-0^^LN", "2.0", status="P")), accept_preliminary=True)
    assert result.events[0]["preliminary"] is True


def test_correction_replaces_the_final_value_of_the_same_test_and_specimen():
    final = run(lab(lab_obx("751-8^^LN", "3.1"), control="LAB1")).events[0]
    corrected = run(lab(lab_obx("751-8^^LN", "1.3", status="C"), control="LAB7")).events[0]
    assert "corrects" not in final
    assert corrected["corrects"] == final["result_key"]
    assert corrected["event_id"] != final["event_id"]
    other_specimen = run(lab(lab_obx("751-8^^LN", "1.3", status="C"), filler="FIL2^LIS")).events[0]
    assert other_specimen["corrects"] != final["result_key"]


def test_collection_time_from_spm17_when_obr7_is_empty():
    raw = lab(lab_obx("731-0^^LN", "2.0"), collected="", extra=(f"SPM|1|S1||BLD|||||||||||||{ts(-90)}",))
    assert run(raw).events[0]["occurred_at"] == "2025-03-01T08:30:00Z"


LAB_REJECTED = [
    ("unit not accepted", lab(lab_obx("731-0^^LN", "2.0", unit="g/L")), "OBX", "6"),
    ("no collection time", lab(lab_obx("731-0^^LN", "2.0"), collected=""), "OBR", "7"),
    ("antibody neither", lab(lab_obx("58012-6^^LN", "equivocal", unit="", kind="ST")), "OBX", "5"),
    ("value not a number", lab(lab_obx("731-0^^LN", "see note")), "OBX", "5"),
]


@pytest.mark.parametrize("case, raw, segment, field", LAB_REJECTED, ids=[c[0] for c in LAB_REJECTED])
def test_lab_rejections(case, raw, segment, field):
    """The refused row is named (ERR-2); it is the message's only row, so nothing is stored."""
    result = run(raw)
    assert (result.ack_code, result.errors[0].segment, result.errors[0].field) == ("AE", segment, field)
    assert result.events == []


@pytest.mark.parametrize("trigger", ["A04", "A08", "A28", "A31"])
def test_adt_profile_has_birth_date_and_sex_only(trigger):
    [event] = run(adt(trigger)).events
    assert set(event) == {"type", "event_id", "occurred_at", "patient_id", "birth_date", "sex"}
    assert (event["birth_date"], event["sex"]) == ("1985-04-12", "female")


def test_adt_other_triggers_are_acknowledged_and_counted():
    result = run(adt("A01"))
    assert result.ack_code == "AA" and result.events == [] and result.ignored == 1


def test_adt_without_birth_date_is_ae():
    result = run(adt("A04", pid="PID|||MRN12345^^^HOSP^MR||DOE^JANE|||F"))
    assert (result.ack_code, result.rejection.segment, result.rejection.field) == ("AE", "PID", "7")


def test_same_patient_same_key_across_feeds_and_authority_matters():
    a = run(adt("A04")).events[0]["patient_id"]
    b = run(lab(lab_obx("731-0^^LN", "2.0"))).events[0]["patient_id"]
    other = run(adt("A04", pid="PID|||MRN12345^^^OTHER^MR||DOE^JANE||19850412|F")).events[0]["patient_id"]
    assert a == b != other


def test_ack_aa_echoes_the_control_id():
    raw = adt("A04", control="ADT77")
    ack = build_ack(run(raw), msh_fields(raw), NOW).decode().split("\r")
    assert ack[0].startswith("MSH|^~\\&|MONSVC|HOSP|REGADT|INFCTR|")
    assert "|ACK^A04^ACK|" in ack[0]
    assert ack[1] == "MSA|AA|ADT77"


def test_ack_ae_has_an_err_segment_naming_segment_field_and_reason():
    raw = adt("A04", control="ADT78", pid="PID|||MRN12345^^^HOSP^MR||DOE^JANE|||F")
    ack = build_ack(run(raw), msh_fields(raw), NOW).decode().split("\r")
    assert ack[1] == "MSA|AE|ADT78|birth date missing"
    assert ack[2] == "ERR||PID^1^7^1|101^Required field missing^HL70357|E||||birth date missing"


def test_ack_ar_for_garbage():
    raw = b"\x00garbage"
    ack = build_ack(run(raw), msh_fields(raw), NOW).decode().split("\r")
    assert ack[1].startswith("MSA|AR|")
    assert ack[2].startswith("ERR||MSH^1|")
