"""IHE PCD-01 (``ORU^R01`` with MDC-coded observations) -> ``vitals.recorded``.

One event per distinct observation time (OBX-14, else the OBR-7 of its order, else MSH-7).
Observations are matched on the MDC reference id text or the numeric code, whichever is present
(spaces, any case and the trial ``MDCX_`` prefix allowed; a sender's local codes through its
table); units are MDC (``MDC_DIM_...`` or their numeric codes) or UCUM with annotations ignored
(``{beat}/min`` is ``/min``); kPa and degrees F are converted.

A used row that cannot be mapped (unknown unit, not a number, no time) is rejected on its own:
the message gets ``AE`` naming that OBX, and the other rows are still forwarded. Relevance is
decided before identity: a message with no row the product reads is ``AA`` without a patient.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..config import GatewayConfig
from .common import (
    REQUIRED_MISSING, TABLE_VALUE_NOT_FOUND, MapError, Parsed, Translation, coded, event_id, iso, number,
    parse_time, patient_of, require_patient, value,
)
from .vocab import match_unit, mdc_term

#: field -> (numeric MDC codes, reference ids)
OBSERVATIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "systolic_mmhg": (frozenset({"150021"}), frozenset({"MDC_PRESS_BLD_NONINV_SYS"})),
    "diastolic_mmhg": (frozenset({"150022"}), frozenset({"MDC_PRESS_BLD_NONINV_DIA"})),
    "heart_rate_bpm": (frozenset({"147842"}), frozenset({"MDC_ECG_CARD_BEAT_RATE", "MDC_ECG_HEART_RATE"})),
    "pulse_rate": (frozenset({"149546", "149530"}), frozenset({"MDC_PULS_RATE_NON_INV", "MDC_PULS_OXIM_PULS_RATE"})),
    "spo2_pct": (frozenset({"150456"}), frozenset({"MDC_PULS_OXIM_SAT_O2"})),
    "respiratory_rate_bpm": (frozenset({"151562"}), frozenset({"MDC_RESP_RATE"})),
    # body temperature, whatever the site: MDC_TEMP (150344), MDC_TEMP_BODY (150364) and the
    # site-specific terms (ISO/IEEE 11073-10101 codes as the HL7 PHD IG lists them); never skin,
    # ambient, injectate or blood-gas temperatures
    "temperature_c": (frozenset({"150344", "150364", "150368", "150392", "188420", "188424", "188428", "188452"}),
                      frozenset({"MDC_TEMP", "MDC_TEMP_BODY", "MDC_TEMP_CORE", "MDC_TEMP_ORAL", "MDC_TEMP_TYMP",
                                 "MDC_TEMP_AXIL", "MDC_TEMP_AXILLA", "MDC_TEMP_RECT", "MDC_TEMP_EAR",
                                 "MDC_TEMP_ESOPH", "MDC_TEMP_NASOPH", "MDC_TEMP_BLADDER", "MDC_TEMP_VESIC",
                                 "MDC_TEMP_SUBLING"})),
}
USED_STATUSES = frozenset({"F", "R", "C"})
IGNORED_STATUSES = frozenset({"X", "D", "W"})

KPA_TO_MMHG = 7.500615758


def _same(v: float) -> float:
    return v


def _kpa(v: float) -> float:
    return round(v * KPA_TO_MMHG, 1)


def _fahrenheit(v: float) -> float:
    return round((v - 32) * 5 / 9, 2)


#: unit spelling (MDC reference id, MDC numeric code or UCUM; compared case-insensitively with
#: UCUM annotations ignored) -> converter to the contract's unit
UNITS: dict[str, dict[str, Any]] = {
    "pressure": {"MDC_DIM_MMHG": _same, "266016": _same, "mm[Hg]": _same, "mmHg": _same,
                 "MDC_DIM_KILO_PASCAL": _kpa, "268768": _kpa, "kPa": _kpa},
    "rate": {"MDC_DIM_BEAT_PER_MIN": _same, "264864": _same, "MDC_DIM_RESP_PER_MIN": _same, "264928": _same,
             "/min": _same, "bpm": _same},
    "percent": {"MDC_DIM_PERCENT": _same, "262688": _same, "%": _same},
    "temperature": {"MDC_DIM_DEGC": _same, "268192": _same, "Cel": _same,
                    "MDC_DIM_FAHR": _fahrenheit, "266560": _fahrenheit, "[degF]": _fahrenheit},
}
UNIT_KIND = {
    "systolic_mmhg": "pressure", "diastolic_mmhg": "pressure", "heart_rate_bpm": "rate", "pulse_rate": "rate",
    "respiratory_rate_bpm": "rate", "spo2_pct": "percent", "temperature_c": "temperature",
}


def observation_field(parts: tuple[str, ...], local_codes: dict[str, str] | None = None) -> str | None:
    """The contract field an OBX-3 names: by MDC reference id text in any position (spaces and
    ``MDCX_`` allowed), else by the numeric code when the coding system is MDC (or absent), else
    through the sender's local code table (local code -> MDC reference id)."""
    texts = {mdc_term(p) for p in parts if p}
    for name, (_, refids) in OBSERVATIONS.items():
        if texts & refids:
            return name
    for code_at, system_at in ((0, 2), (3, 5)):
        code, system = parts[code_at].strip(), mdc_term(parts[system_at])
        if code and system in ("", "MDC"):
            for name, (codes, _) in OBSERVATIONS.items():
                if code in codes:
                    return name
    for local in (parts[0], parts[3]):
        target = (local_codes or {}).get(local.strip().upper()) if local.strip() else None
        if target:
            return observation_field((target, "", "MDC", "", "", ""))
    return None


def convert_unit(name: str, parts: tuple[str, ...], raw: float, where: tuple[str, str],
                 local_units: dict[str, str] | None = None) -> float:
    table = UNITS[UNIT_KIND[name]]
    spellings = [p for i, p in enumerate(parts) if p and i in (1, 0, 4, 3)]
    if not spellings:
        raise MapError(*where, "unit missing", REQUIRED_MISSING)
    local = [(local_units or {}).get(s.strip().upper(), "") for s in spellings]
    unit = match_unit([s for s in local if s] + [mdc_term(s) if s.upper().startswith("MDC") else s for s in spellings],
                      table)
    if unit is None:
        raise MapError(*where, "unknown unit for this observation", TABLE_VALUE_NOT_FOUND)
    return table[unit](raw)


def map_vitals(parsed: Parsed, config: GatewayConfig, out: Translation) -> None:
    settings = parsed.settings
    msh_time = parse_time(value(parsed.message.segment("MSH"), 7), parsed.zone, ("MSH", "7"))
    obr_time: datetime | None = None
    obr_error: MapError | None = None
    obr_count = 0
    groups: dict[datetime, tuple[int, dict[str, float]]] = {}
    relevant = valued = 0
    obx_count = 0
    rows: list[tuple[int, Any, str, datetime | None, MapError | None]] = []  # index, OBX, field, its OBR's time
    for seg in parsed.message:
        kind = str(seg[0])
        if kind == "OBR":
            obr_count += 1
            obr_time, obr_error = None, None
            try:
                obr_time = parse_time(value(seg, 7), parsed.zone, ("OBR", "7"))
            except MapError as exc:
                obr_error = MapError("OBR", "7", exc.rejection.reason, exc.rejection.error_code,
                                     segment_index=obr_count)
            continue
        if kind != "OBX":
            continue
        obx_count += 1
        code_text = "^".join(p for p in coded(seg, 3)[:3])
        status = value(seg, 11).upper()
        name = observation_field(coded(seg, 3), settings.local_codes)
        has_value = bool(value(seg, 5))
        valued += has_value
        if not has_value and status in ("X", ""):
            out.trace("OBX", obx_count, code_text, "structure" if name is None else "ignored",
                      "" if name is None else f"status {status or 'empty'}, no value")
            continue
        if name is None:
            out.ignored += 1
            out.trace("OBX", obx_count, code_text, "ignored", "not an observation the product reads")
            continue
        if status not in USED_STATUSES:
            out.ignored += 1
            out.trace("OBX", obx_count, code_text, "ignored", f"result status {status or 'empty'} is not used")
            continue
        relevant += 1
        rows.append((obx_count, seg, name, obr_time, obr_error))
    if not relevant:
        if valued:
            out.warnings.append("no-event: the message has values but none the product can use")
        return
    patient = require_patient(patient_of(parsed, config.secret))
    for index, seg, name, order_time, order_error in rows:
        code_text = "^".join(p for p in coded(seg, 3)[:3])
        try:
            reading = convert_unit(name, coded(seg, 6), number(value(seg, 5), ("OBX", "5")), ("OBX", "6"),
                                   settings.local_units)
            moment = parse_time(value(seg, 14), parsed.zone, ("OBX", "14"))
            if moment is None and order_error is not None:
                raise order_error  # this row needs its OBR's time, and that one is malformed
            moment = moment or order_time or msh_time
            if moment is None:
                raise MapError("OBX", "14", "no observation time (OBX-14, OBR-7 or MSH-7)", REQUIRED_MISSING)
        except MapError as exc:
            rejection = exc.rejection if exc.rejection.segment == "OBR" else exc.rejection.at(index)
            out.reject_row(rejection, code_text)
            continue
        first, fields = groups.setdefault(moment, (index, {}))
        fields.setdefault(name, reading)
        out.trace("OBX", index, code_text, "used", f"{name} = {reading:g} at {iso(moment)}")
    for moment, (first, fields) in groups.items():
        pulse = fields.pop("pulse_rate", None)
        if "heart_rate_bpm" not in fields and pulse is not None:
            fields["heart_rate_bpm"] = pulse  # the pulse rate only when no ECG rate
        if not fields:
            continue
        out.events.append({
            "type": "vitals.recorded", "event_id": event_id(parsed, first, "vitals"),
            "occurred_at": iso(moment), "patient_id": patient, **dict(sorted(fields.items())),
        })
