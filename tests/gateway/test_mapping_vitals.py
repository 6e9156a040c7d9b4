"""PCD-01 vitals -> vitals.recorded on the pure core, one case per rule or quirk of
integrations.md ("MLLP and acknowledgements", "Time", "PCD-01 vitals")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infusion_monitor.gateway.identity import patient_key
from infusion_monitor.gateway.mapping.book import Book
from infusion_monitor.gateway.mapping.router import translate
from tests.gateway.hl7msg import PCD01, SECRET, config, obx, ts, vitals

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = patient_key(SECRET.encode(), "HOSP", "MRN12345")
SYS = "150021^MDC_PRESS_BLD_NONINV_SYS^MDC"
MMHG = "266016^MDC_DIM_MMHG^MDC"


def run(raw: bytes, **cfg):
    return translate(raw, config(**cfg), Book(), NOW)


def readings(result) -> list[dict]:
    keep = ("systolic_mmhg", "diastolic_mmhg", "heart_rate_bpm", "spo2_pct", "respiratory_rate_bpm", "temperature_c")
    return [{k: v for k, v in e.items() if k in keep} for e in result.events]


CASES = [
    # (quirk of the spec, OBX lines, expected readings of the single event)
    ("MDC code and reference id", [obx(2, SYS, "118", MMHG)], {"systolic_mmhg": 118.0}),
    ("numeric MDC code only", [obx(2, "150021^^MDC", "118", MMHG)], {"systolic_mmhg": 118.0}),
    ("reference id only, in the text component", [obx(2, "^MDC_PRESS_BLD_NONINV_SYS^MDC", "118", MMHG)],
     {"systolic_mmhg": 118.0}),
    ("reference id only, in the identifier component", [obx(2, "MDC_PRESS_BLD_NONINV_SYS", "118", MMHG)],
     {"systolic_mmhg": 118.0}),
    ("unit as numeric MDC code only", [obx(2, SYS, "118", "266016")], {"systolic_mmhg": 118.0}),
    ("UCUM mm[Hg]", [obx(2, SYS, "118", "mm[Hg]^mm[Hg]^UCUM")], {"systolic_mmhg": 118.0}),
    ("kPa converted to mmHg", [obx(2, SYS, "16", "268768^MDC_DIM_KILO_PASCAL^MDC")], {"systolic_mmhg": 120.0}),
    ("UCUM kPa", [obx(2, SYS, "11.2", "kPa^kPa^UCUM")], {"systolic_mmhg": 84.0}),
    ("degrees F converted", [obx(2, "^MDC_TEMP_BODY^MDC", "100.4", "^MDC_DIM_FAHR^MDC")], {"temperature_c": 38.0}),
    ("UCUM [degF]", [obx(2, "^MDC_TEMP_BODY^MDC", "98.6", "[degF]^[degF]^UCUM")], {"temperature_c": 37.0}),
    ("UCUM Cel", [obx(2, "^MDC_TEMP_BODY^MDC", "37.2", "Cel^Cel^UCUM")], {"temperature_c": 37.2}),
    ("MDC_DIM_DEGC", [obx(2, "^MDC_TEMP_BODY^MDC", "37.2", "268192^MDC_DIM_DEGC^MDC")], {"temperature_c": 37.2}),
    ("SpO2 percent, UCUM %", [obx(2, "150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "%")], {"spo2_pct": 97.0}),
    ("respiratory rate /min", [obx(2, "151562^MDC_RESP_RATE^MDC", "16", "/min")], {"respiratory_rate_bpm": 16.0}),
    ("ECG rate preferred over pulse rate",
     [obx(2, "149546^MDC_PULS_RATE_NON_INV^MDC", "90", "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
      obx(3, "147842^MDC_ECG_CARD_BEAT_RATE^MDC", "72", "264864^MDC_DIM_BEAT_PER_MIN^MDC")], {"heart_rate_bpm": 72.0}),
    ("pulse-oximeter rate when no ECG rate",
     [obx(2, "149546^MDC_PULS_OXIM_PULS_RATE^MDC", "88", "/min")], {"heart_rate_bpm": 88.0}),
    ("status F and C used, X/D/W ignored",
     [obx(2, SYS, "118", MMHG, status="F"), obx(3, "150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "70", MMHG, status="C"),
      obx(4, "150456^MDC_PULS_OXIM_SAT_O2^MDC", "50", "%", status="X"),
      obx(5, "151562^MDC_RESP_RATE^MDC", "50", "/min", status="D"),
      obx(6, "147842^MDC_ECG_CARD_BEAT_RATE^MDC", "250", "/min", status="W")],
     {"systolic_mmhg": 118.0, "diastolic_mmhg": 70.0}),
]


@pytest.mark.parametrize("quirk, lines, expected", CASES, ids=[c[0] for c in CASES])
def test_observation_mapping(quirk, lines, expected):
    result = run(vitals(*lines))
    assert result.ack_code == "AA", result.rejection
    assert readings(result) == [expected]
    assert result.events[0]["patient_id"] == KEY


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"], ids=["CR", "LF", "CRLF"])
def test_segment_terminators_all_accepted(sep):
    """Quirk: segments end with \\r, \\n or \\r\\n; the events are the same."""
    result = run(vitals(obx(2, SYS, "118", MMHG), sep=sep))
    assert readings(result) == [{"systolic_mmhg": 118.0}]
    assert result.events == run(vitals(obx(2, SYS, "118", MMHG))).events


@pytest.mark.parametrize("profile", [
    PCD01, "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.2^ISO", "IHE_PCD_001^IHE PCD^^", "^^1.2.3^ISO", "",
], ids=["spec OID", "other OID", "no OID", "OID only, unknown", "no profile"])
def test_msh21_profile_oid_variants_never_rejected(profile):
    """Quirk: MSH-21 OID varies by vendor; match on the namespace text, never reject on it."""
    result = run(vitals(obx(2, SYS, "118", MMHG), profile=profile))
    assert result.feed == "vitals" and result.ack_code == "AA"


def test_time_from_obx14_else_obr7_else_msh7_and_one_event_per_time():
    result = run(vitals(
        obx(2, SYS, "118", MMHG, at=ts(-1)),
        obx(3, "150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "74", MMHG, at=ts(-1)),
        obx(4, "150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "%"),  # no OBX-14: OBR-7
        obr_at=ts(-0.5)))
    assert [(e["occurred_at"], sorted(k for k in e if k.endswith(("mmhg", "pct")))) for e in result.events] == [
        ("2025-03-01T09:59:00Z", ["diastolic_mmhg", "systolic_mmhg"]),
        ("2025-03-01T09:59:30Z", ["spo2_pct"]),
    ]
    no_obr_time = run(vitals(obx(2, SYS, "118", MMHG), obr_at="", msh_at=ts(2)))
    assert no_obr_time.events[0]["occurred_at"] == "2025-03-01T10:02:00Z"  # MSH-7, the weakest


def test_time_without_offset_is_in_the_site_time_zone_when_msh7_has_none_either():
    result = run(vitals(obx(2, SYS, "118", MMHG, at="20250301101430"), msh_at="20250301101500"),
                 site_timezone="Europe/Berlin")
    assert result.events[0]["occurred_at"] == "2025-03-01T09:14:30Z"


def test_time_without_offset_follows_the_offset_msh7_declares():
    """Spec, "Time": HL7 times without an offset are in the sender's zone; MSH-7's offset says it."""
    result = run(vitals(obx(2, SYS, "118", MMHG, at="20250301101430"), msh_at="20250301101500+0000"),
                 site_timezone="Europe/Berlin")
    assert result.events[0]["occurred_at"] == "2025-03-01T10:14:30Z"


def test_same_message_gives_the_same_event_ids():
    raw = vitals(obx(2, SYS, "118", MMHG), control="GW42")
    assert run(raw).events == run(raw).events
    assert run(raw).events[0]["event_id"] != run(vitals(obx(2, SYS, "118", MMHG), control="GW43")).events[0]["event_id"]


def test_no_name_mrn_or_free_text_in_events():
    raw = vitals(obx(2, SYS, "118", MMHG), obx(3, "0^MDC_ATTR_COMMENT^MDC", "patient anxious", "", kind="ST"))
    text = repr(run(raw).events)
    for secret in ("DOE", "JANE", "MRN12345", "HOSP", "anxious", "19850412"):
        assert secret not in text


def test_observations_not_needed_are_counted():
    result = run(vitals(obx(2, SYS, "118", MMHG), obx(3, "157784^MDC_FLOW_FLUID_PUMP^MDC", "5", "mL/h")))
    assert result.ack_code == "AA" and result.ignored == 1 and len(result.events) == 1
    only_unused = run(vitals(obx(2, "157784^MDC_FLOW_FLUID_PUMP^MDC", "5", "mL/h")))
    assert only_unused.ack_code == "AA" and only_unused.events == [] and only_unused.ignored == 1


REJECTED = [
    # (case, message, ACK, segment, field)
    ("no patient identifier", vitals(obx(2, SYS, "118", MMHG), pid="PID|||||DOE^JANE"), "AE", "PID", "3"),
    ("identifier not of type MR", vitals(obx(2, SYS, "118", MMHG), pid="PID|||123^^^HOSP^PI"), "AE", "PID", "3"),
    ("unknown unit", vitals(obx(2, SYS, "118", "cmH2O")), "AE", "OBX", "6"),
    ("missing unit", vitals(obx(2, SYS, "118", "")), "AE", "OBX", "6"),
    ("value not a number", vitals(obx(2, SYS, "high", MMHG)), "AE", "OBX", "5"),
    ("malformed time", vitals(obx(2, SYS, "118", MMHG, at="2025-03-01")), "AE", "OBX", "14"),
    ("no time anywhere", vitals(obx(2, SYS, "118", MMHG), obr_at="", msh_at=""), "AE", "OBX", "14"),
    ("not HL7 at all", b"hello world\r", "AR", "MSH", ""),
    ("no control id", vitals(obx(2, SYS, "118", MMHG), control=""), "AR", "MSH", "10"),
    ("bytes not UTF-8", vitals(obx(2, SYS, "118", MMHG)).replace(b"JANE", b"J\xe4NE"), "AR", "MSH", "18"),
]


@pytest.mark.parametrize("case, raw, ack, segment, field", REJECTED, ids=[c[0] for c in REJECTED])
def test_rejections_name_segment_and_field(case, raw, ack, segment, field):
    result = run(raw)
    assert result.events == []
    assert (result.ack_code, result.errors[0].segment, result.errors[0].field) == (ack, segment, field)


def test_latin1_from_msh18():
    raw = vitals(obx(2, SYS, "118", MMHG)).replace(b"UNICODE UTF-8", b"8859/1").replace(b"JANE", b"J\xe4NE")
    assert run(raw).ack_code == "AA"


def test_impossible_reading_is_forwarded_for_the_monitor_to_drop():
    """The gateway translates; the monitor judges (a faulty SpO2 beside a real reading)."""
    result = run(vitals(obx(2, SYS, "84", MMHG), obx(3, "150456^MDC_PULS_OXIM_SAT_O2^MDC", "250", "%")))
    assert result.ack_code == "AA" and result.events[0]["spo2_pct"] == 250.0
