"""IHE PCD-01 (``ORU^R01`` with MDC-coded observations) -> ``vitals.recorded``.

One event per distinct observation time (OBX-14, else the OBR-7 of its order, else MSH-7).
Observations are matched on the MDC reference id text or the numeric code, whichever is present;
units are MDC (``MDC_DIM_...`` or their numeric codes) or UCUM; kPa and degrees F are converted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..config import GatewayConfig
from .common import (
    REQUIRED_MISSING, TABLE_VALUE_NOT_FOUND, MapError, Parsed, Translation, coded, event_id, iso, number,
    parse_time, patient_of, require_patient, value,
)

#: field -> (numeric MDC codes, reference ids)
OBSERVATIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "systolic_mmhg": (frozenset({"150021"}), frozenset({"MDC_PRESS_BLD_NONINV_SYS"})),
    "diastolic_mmhg": (frozenset({"150022"}), frozenset({"MDC_PRESS_BLD_NONINV_DIA"})),
    "heart_rate_bpm": (frozenset({"147842"}), frozenset({"MDC_ECG_CARD_BEAT_RATE", "MDC_ECG_HEART_RATE"})),
    "pulse_rate": (frozenset({"149546"}), frozenset({"MDC_PULS_RATE_NON_INV", "MDC_PULS_OXIM_PULS_RATE"})),
    "spo2_pct": (frozenset({"150456"}), frozenset({"MDC_PULS_OXIM_SAT_O2"})),
    "respiratory_rate_bpm": (frozenset({"151562"}), frozenset({"MDC_RESP_RATE"})),
    "temperature_c": (frozenset(), frozenset({"MDC_TEMP_BODY"})),
}
USED_STATUSES = frozenset({"F", "R", "C"})
IGNORED_STATUSES = frozenset({"X", "D", "W"})

KPA_TO_MMHG = 7.500615758
#: unit spelling (upper case: MDC reference id, MDC numeric code or UCUM) -> (kind, converter)
_IDENTITY = (lambda v: v)
UNITS: dict[str, dict[str, Any]] = {
    "pressure": {
        "MDC_DIM_MMHG": _IDENTITY, "266016": _IDENTITY, "MM[HG]": _IDENTITY, "MMHG": _IDENTITY,
        "MDC_DIM_KILO_PASCAL": lambda v: round(v * KPA_TO_MMHG, 1), "268768": lambda v: round(v * KPA_TO_MMHG, 1),
        "KPA": lambda v: round(v * KPA_TO_MMHG, 1),
    },
    "rate": {
        "MDC_DIM_BEAT_PER_MIN": _IDENTITY, "264864": _IDENTITY, "MDC_DIM_RESP_PER_MIN": _IDENTITY,
        "264928": _IDENTITY, "/MIN": _IDENTITY, "{BEATS}/MIN": _IDENTITY, "{BREATHS}/MIN": _IDENTITY,
        "1/MIN": _IDENTITY, "BPM": _IDENTITY,
    },
    "percent": {"MDC_DIM_PERCENT": _IDENTITY, "262688": _IDENTITY, "%": _IDENTITY},
    "temperature": {
        "MDC_DIM_DEGC": _IDENTITY, "268192": _IDENTITY, "CEL": _IDENTITY,
        "MDC_DIM_FAHR": lambda v: round((v - 32) * 5 / 9, 2), "266560": lambda v: round((v - 32) * 5 / 9, 2),
        "[DEGF]": lambda v: round((v - 32) * 5 / 9, 2),
    },
}
UNIT_KIND = {
    "systolic_mmhg": "pressure", "diastolic_mmhg": "pressure", "heart_rate_bpm": "rate", "pulse_rate": "rate",
    "respiratory_rate_bpm": "rate", "spo2_pct": "percent", "temperature_c": "temperature",
}


def observation_field(parts: tuple[str, ...]) -> str | None:
    """The contract field an OBX-3 names: by MDC reference id text in any position, else by the
    numeric code when the coding system is MDC (or absent)."""
    texts = {p.upper() for p in parts if p}
    for name, (_, refids) in OBSERVATIONS.items():
        if texts & refids:
            return name
    for code_at, system_at in ((0, 2), (3, 5)):
        code, system = parts[code_at], parts[system_at].upper()
        if code and system in ("", "MDC"):
            for name, (codes, _) in OBSERVATIONS.items():
                if code in codes:
                    return name
    return None


def convert_unit(name: str, parts: tuple[str, ...], raw: float, where: tuple[str, str]) -> float:
    table = UNITS[UNIT_KIND[name]]
    spellings = [p.upper() for i, p in enumerate(parts) if p and i in (1, 0, 4, 3)]
    if not spellings:
        raise MapError(*where, "unit missing", REQUIRED_MISSING)
    for spelling in spellings:
        if spelling in table:
            return table[spelling](raw)
    raise MapError(*where, "unknown unit for this observation", TABLE_VALUE_NOT_FOUND)


def map_vitals(parsed: Parsed, config: GatewayConfig, out: Translation) -> None:
    patient = require_patient(patient_of(parsed, config.secret))
    msh_time = parse_time(value(parsed.message.segment("MSH"), 7), config.tz, ("MSH", "7"))
    obr_time: datetime | None = None
    groups: dict[datetime, tuple[int, dict[str, float]]] = {}
    obx_count = 0
    for seg in parsed.message:
        kind = str(seg[0])
        if kind == "OBR":
            obr_time = parse_time(value(seg, 7), config.tz, ("OBR", "7"))
            continue
        if kind != "OBX":
            continue
        obx_count += 1
        position = value(seg, 1) or str(obx_count)
        status = value(seg, 11).upper()
        name = observation_field(coded(seg, 3))
        if name is None or status not in USED_STATUSES:
            if not (status == "X" and not value(seg, 5)):  # device rows carry no value: not counted
                out.ignored += 1
            continue
        where = ("OBX", "5")
        raw = number(value(seg, 5), where)
        reading = convert_unit(name, coded(seg, 6), raw, ("OBX", "6"))
        moment = parse_time(value(seg, 14), config.tz, ("OBX", "14")) or obr_time or msh_time
        if moment is None:
            raise MapError("OBX", "14", "no observation time (OBX-14, OBR-7 or MSH-7)", REQUIRED_MISSING)
        first, fields = groups.setdefault(moment, (obx_count, {}))
        fields.setdefault(name, reading)
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
