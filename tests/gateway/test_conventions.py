"""Issue 15 on the pure core, beyond the corpus: properties of the vocabulary normalisation and
of message identity, per-sender configuration, identifier types, and the smaller points."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from infusion_monitor.gateway.config import GatewayConfig, SenderConfig
from infusion_monitor.gateway.identity import patient_key
from infusion_monitor.gateway.lint import FeedReplay
from infusion_monitor.gateway.mapping import pump
from infusion_monitor.gateway.mapping.book import Book
from infusion_monitor.gateway.mapping.fhir import FhirError, translate_fhir
from infusion_monitor.gateway.mapping.lab import lab_unit, reference_range
from infusion_monitor.gateway.mapping.router import check_identity, translate
from infusion_monitor.gateway.mapping.vocab import match_unit, mdc_term, ucum_key
from infusion_monitor.gateway.mllp import Connection
from tests.gateway import fhirmsg as F
from tests.gateway.hl7msg import SECRET, config, lab, obx, pump as pump_msg, ts, vitals

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"
KEY = patient_key(SECRET.encode(), "HOSP", "MRN12345")

annotation = st.text(st.characters(blacklist_characters="{}|^~\\&\r\n", blacklist_categories=("Cs",)), max_size=12)


# -- UCUM annotations and MDC spellings (spec: "PCD-01 vocabulary and units") ------------------

@given(annotation, annotation)
def test_ucum_annotations_never_change_the_unit(before, after):
    assert ucum_key(f"{{{before}}}/min") == "/min"
    assert ucum_key(f"{{{before}}}/uL") == ucum_key(f"/uL{{{after}}}") == "/uL"


@pytest.mark.parametrize("spelling, unit", [
    ("{beat}/min", "/min"), ("{beats}/min", "/min"), ("{pulse}/min", "/min"), ("1/min", "/min"),
    ("{cells}/uL", "/uL"), ("x10*9/L", "10*9/L"), ("X10*9/L", "10*9/L"), ("µmol/L", "umol/L"), ("mm[Hg]", "mm[Hg]"),
])
def test_ucum_spellings_of_one_unit(spelling, unit):
    assert ucum_key(spelling) == unit


@given(st.lists(st.sampled_from(["MDC", "EVT", "PUMP", "DELIV", "START"]), min_size=2, max_size=5),
       st.sampled_from(["_", " ", "  ", " _"]), st.booleans(), st.booleans())
def test_mdc_terms_match_whatever_the_spaces_case_or_trial_prefix(words, sep, lower, trial):
    canonical = "_".join(words)
    spelled = sep.join(words)
    if trial:
        spelled = spelled.replace("MDC", "MDCX", 1) if spelled.startswith("MDC") else spelled
    if lower:
        spelled = spelled.lower()
    assert mdc_term(f" {spelled} ") == canonical


def test_lab_units_match_the_spelling_the_lab_rules_accept():
    assert lab_unit("26515-7", ["{cells}/uL"]) == "/uL"
    assert lab_unit("731-0", ["X10*9/L"]) == "10*9/L"
    assert lab_unit("14631-6", ["µmol/L"]) == lab_unit("14631-6", ["UMOL/L"]) == "umol/L"
    assert lab_unit("731-0", [""]) is None
    assert match_unit(["mmol/L"], {"umol/L": 1}) is None


@pytest.mark.parametrize("text, expected", [
    ("4.3 to 6.2", (4.3, 6.2)), ("0.0 TO 0.45", (0.0, 0.45)), ("1.5-7.5", (1.5, 7.5)), ("3 - 21", (3.0, 21.0)),
    ("<40", (None, 40.0)), ("< 40", (None, 40.0)), (">150", (150.0, None)), ("see note", (None, None)),
    ("Recommended: <200; Moderate Risk: 200-239", (None, None)),
])
def test_reference_ranges(text, expected):
    assert reference_range(text) == expected


# -- message identity (spec: "Identity for idempotency") --------------------------------------

def _sender(raw: bytes, msh3: str) -> bytes:
    return raw.replace(b"VITALS_GW^0011223344556677^EUI-64", msh3.encode())


@given(st.integers(min_value=0, max_value=23), st.integers(min_value=0, max_value=59))
def test_a_retransmission_with_a_rebuilt_msh7_gives_the_same_ids(hour, minute):
    first = translate(vitals(obx(2, SPO2, "97", "%"), control="7"), config(), Book(), NOW)
    rebuilt = vitals(obx(2, SPO2, "97", "%"), control="7", msh_at=f"20250301{hour:02d}{minute:02d}00+0000")
    again = check_identity(translate(rebuilt, config(), Book(), NOW), first.digest, Book())
    assert again.ack_code == "AA" and [e["event_id"] for e in again.events] == [e["event_id"] for e in first.events]


@given(st.integers(min_value=0, max_value=99).filter(lambda v: v != 97))
def test_any_other_content_under_a_stored_identity_is_a_conflict(value):
    first = translate(vitals(obx(2, SPO2, "97", "%"), control="7"), config(), Book(), NOW)
    book = Book()
    other = translate(vitals(obx(2, SPO2, str(value), "%"), control="7"), config(), book, NOW)
    assert other.identity == first.identity and other.digest != first.digest
    refused = check_identity(other, first.digest, book)
    assert (refused.ack_code, refused.rejection.segment, refused.rejection.field) == ("AE", "MSH", "10")
    assert refused.events == [] and refused.rejection.error_code == "205" and book.changes == {}


@pytest.mark.parametrize("other", ["VITALS_GW^0011223344550099^EUI-64", "VITALS_GW", "OTHER^0011223344556677^EUI-64"])
def test_every_component_of_msh3_is_part_of_the_identity(other):
    raw = vitals(obx(2, SPO2, "97", "%"), control="1")
    a = translate(raw, config(), Book(), NOW)
    b = translate(_sender(raw, other), config(), Book(), NOW)
    assert a.identity != b.identity and a.events[0]["event_id"] != b.events[0]["event_id"]


def test_msh4_is_part_of_the_identity():
    raw = vitals(obx(2, SPO2, "97", "%"), control="1")
    other = raw.replace(b"|INFCTR|", b"|WARD2|", 1)
    assert translate(raw, config(), Book(), NOW).identity != translate(other, config(), Book(), NOW).identity


def test_a_fully_refused_message_is_not_remembered_so_a_corrected_one_may_reuse_its_control_id():
    replay = FeedReplay(config(), NOW)
    assert replay.hl7(vitals(obx(2, SPO2, "97", "furlongs"), control="9")).ack_code == "AE"
    assert replay.hl7(vitals(obx(2, SPO2, "97", "%"), control="9")).ack_code == "AA"
    assert replay.hl7(vitals(obx(2, SPO2, "95", "%"), control="9")).ack_code == "AE"  # now it is taken


# -- per-sender configuration ---------------------------------------------------------------

def test_sender_entries_match_msh3_components_and_msh4_the_most_specific_winning():
    cfg = config(senders=[
        SenderConfig(name="model", application="VITALS_GW", time_zone="UTC"),
        SenderConfig(name="model at ward 2", application="VITALS_GW", facility="WARD2", time_zone="Asia/Tokyo"),
        SenderConfig(name="one monitor", application="0011223344550099", time_zone="America/New_York"),
        SenderConfig(name="serial in MSH-4", facility="KC575235977G"),
    ])
    app = ("VITALS_GW^0011223344556677^EUI-64", "VITALS_GW", "0011223344556677", "EUI-64")
    assert cfg.profile(app, ("INFCTR",)).name == "model"
    assert cfg.profile(app, ("WARD2",)).name == "model at ward 2"
    assert cfg.profile(("X^0011223344550099", "X", "0011223344550099"), ()).name == "one monitor"
    assert cfg.profile(("",), ("KC575235977G",)).name == "serial in MSH-4"
    assert cfg.profile(("ELSE",), ()).name == ""  # the site's settings


def test_bad_sender_entries_are_refused_at_start():
    with pytest.raises(ValidationError):
        SenderConfig(name="nobody")
    with pytest.raises(ValidationError):
        SenderConfig(application="X", time_zone="Mars/Olympus")
    with pytest.raises(ValidationError):
        SenderConfig(application="X", feed="waveforms")


def test_the_toml_table_loads(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[gateway]\nsite_timezone = "Europe/Berlin"\n[gateway.patient_identifier_types]\n'
                    '"*" = ["MR"]\nHOSP = ["MR", "PI"]\n[[gateway.senders]]\napplication = "MX750"\ntime_zone = "UTC"\n')
    cfg = GatewayConfig.load({"INFUSION_MONITOR_CONFIG": str(path), "INFUSION_MONITOR_PATIENT_KEY_SECRET": SECRET})
    assert cfg.site_profile.accepted_types("hosp") == ("MR", "PI") and cfg.senders[0].time_zone == "UTC"


# -- patient identifier types (spec: "Patient identity and privacy") -------------------------

@pytest.mark.parametrize("pid, types, expected", [
    ("PID|||MRN12345^^^HOSP^PI", {"*": ["MR"]}, None),
    ("PID|||MRN12345^^^HOSP^PI", {"HOSP": ["MR", "PI"]}, KEY),
    ("PID|||MRN12345^^^HOSP^PI", {"OTHER": ["PI"]}, None),  # per assigning authority
    ("PID|||X9^^^HOSP^PI~MRN12345^^^HOSP^MR", {"HOSP": ["MR", "PI"]}, KEY),  # the first listed type wins
    ("PID|||MRN12345^^^HOSP^MR~X9^^^HOSP^PI", {"HOSP": ["PI", "MR"]}, patient_key(SECRET.encode(), "HOSP", "X9")),
    ("PID|||MRN12345^^^HOSP", {"HOSP": ["MR", ""]}, KEY),  # "" accepts an untyped number
])
def test_identifier_types_are_configured_per_assigning_authority(pid, types, expected):
    result = translate(vitals(obx(2, SPO2, "97", "%"), pid=pid), config(patient_identifier_types=types), Book(), NOW)
    assert (result.events[0]["patient_id"] if result.events else None) == expected


def test_fhir_uses_the_same_identifier_types():
    patient = copy.deepcopy(F.patient(mrn="MRN12345"))
    patient["identifier"][0]["type"]["coding"][0]["code"] = "PI"
    body = F.body(F.bundle(patient, F.vital("8867-4", "2025-03-01T10:00:00+00:00", 72, "/min")))
    with pytest.raises(FhirError):
        translate_fhir(body, config(fhir_identifier_systems=F.SYSTEMS), NOW)
    keyed = translate_fhir(body, config(fhir_identifier_systems=F.SYSTEMS,
                                        patient_identifier_types={"HOSP": ["MR", "PI"]}), NOW)
    assert {e["patient_id"] for e in keyed.events} == {KEY}


def test_a_fhir_patient_without_an_accepted_identifier_does_not_sink_the_bundle():
    unkeyed = {**F.patient(pid="p2"), "identifier": [{"system": "urn:other", "value": "N1"}]}
    body = F.body({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p2", "resource": unkeyed},
        {"fullUrl": "urn:uuid:p1", "resource": F.patient()},
        {"fullUrl": "urn:uuid:o1", "resource": F.vital("8867-4", "2025-03-01T10:00:00+00:00", 72, "/min",
                                                       subject="urn:uuid:p1")}]})
    result = translate_fhir(body, config(fhir_identifier_systems=F.SYSTEMS), NOW)
    assert sorted(e["type"] for e in result.events) == ["patient.profile", "vitals.recorded"]
    assert result.ignored == 1 and result.warnings[0].startswith("patient-not-keyed")
    referring = json.loads(body)
    referring["entry"][2]["resource"]["subject"] = {"reference": "urn:uuid:p2"}
    with pytest.raises(FhirError) as refused:  # data about a patient it cannot key is still refused
        translate_fhir(json.dumps(referring).encode(), config(fhir_identifier_systems=F.SYSTEMS), NOW)
    assert refused.value.path.endswith("identifier")


# -- the smaller points (issue 15, item 7) ------------------------------------------------------

def test_a_lab_message_with_nothing_the_product_reads_is_aa_without_an_mr():
    raw = lab(obx(1, "2093-3^Cholesterol^LN", "196", "mg/dL", status="F")).replace(b"^^^HOSP^MR", b"^^^HOSP^PI")
    result = translate(raw, config(), Book(), NOW)
    assert (result.ack_code, result.events, result.ignored) == ("AA", [], 1)


def test_pump_bindings_keyed_by_the_eui64_universal_id_bind():
    cfg = config(pump_bindings={"00a0b1fffe000005": "infusion^chair5^1"})
    book = Book()
    seen = vitals(obx(2, SPO2, "97", "%"), control="GW1").replace(b"INFUSION^CHAIR3^1", b"INFUSION^CHAIR5^1")
    assert translate(seen, cfg, book, NOW).events
    book.commit()
    start = pump_msg("start", "PG1", 5, pid="PID|||", pv1="", device="PUMP5^ACME^00A0B1FFFE000005^EUI-64")
    start = start.replace(b"PUMP5^ACME^00A0B1FFFE000005^EUI-64^^PUMP5^ACME^00A0B1FFFE000005^EUI-64^EUI-64",
                          b"PUMP5^ACME^00A0B1FFFE000005^EUI-64")
    result = translate(start, cfg, book, NOW)
    assert result.ack_code == "AA", result.errors
    assert [(e["type"], e["patient_id"], e["pump_id"]) for e in result.events] == [
        ("infusion.started", KEY, "00A0B1FFFE000005")]


def test_pump_id_is_obx18_1_unless_obx18_4_says_eui64():
    seg = translate(pump_msg("start", "PG2", 5, device="0012210000000001"), config(), Book(), NOW)
    assert seg.events[0]["pump_id"] == "0012210000000001"
    assert pump.device_ids(_obx18("SERIAL77^^^")) == ["SERIAL77"]
    assert pump.device_ids(_obx18("SERIAL77^ACME^00A0B1FFFE000005^EUI-64")) == ["00A0B1FFFE000005", "SERIAL77"]


def _obx18(value: str):
    import hl7
    return hl7.parse(f"MSH|^~\\&|A|B|C|D|{ts()}||ORU^R42|1|P|2.6\rOBX|1||70049^X^MDC|1|||||||X|||||||{value}").segment("OBX")


def test_a_vitals_message_whose_rows_are_all_not_obtained_is_aa_with_a_warning():
    result = translate(vitals(obx(2, SPO2, "8388607", "%", status="X")), config(), Book(), NOW)
    assert (result.ack_code, result.events) == ("AA", [])
    assert [w.split(":")[0] for w in result.warnings] == ["no-event"]


def test_the_zone_mismatch_warning_is_given_once_per_connection():
    connection = Connection(1)
    assert [connection.first("zone-mismatch"), connection.first("zone-mismatch")] == [True, False]
    assert Connection(2).first("zone-mismatch")
