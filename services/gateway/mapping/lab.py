"""Lab ``ORU^R01`` (LOINC-coded results) -> ``lab.resulted``.

- LOINC: OBX-3's first triplet when its system is ``LN``, else the alternate triplet (4-6), else
  the site's local code table; results the lab monitor does not read are acknowledged, counted;
- value OBX-5 (numbers; antibody 58012-6 as positive/negative in its usual spellings); unit
  OBX-6 (UCUM, checked against the units the lab rules accept); range OBX-7 (``low-high``,
  ``<high``, ``>low``); specimen collection OBR-7 (else SPM-17) -> ``occurred_at``; OBR-22 ->
  ``resulted_at``;
- OBX-11: ``F`` and ``C`` forwarded, ``P`` only when configured. Every result carries
  ``result_key`` (sender, order, LOINC: the same test on the same specimen); a correction
  carries ``corrects`` = that key, so it replaces the earlier value and says so.
"""

from __future__ import annotations

import re
from datetime import datetime

from ...engine.ids import stable_id
from ...lab_monitor import codes as lab_codes
from ..config import GatewayConfig
from .common import (
    REQUIRED_MISSING, TABLE_VALUE_NOT_FOUND, MapError, Parsed, Translation, coded, event_id, iso,
    number, parse_time, patient_of, require_patient, value,
)

USED_CODES = frozenset(lab_codes.UNITS) | {lab_codes.ANTIBODY}
POSITIVE = frozenset({"POSITIVE", "POS", "DETECTED", "REACTIVE", "+"})
NEGATIVE = frozenset({"NEGATIVE", "NEG", "NOT DETECTED", "NON-REACTIVE", "NONREACTIVE", "UNDETECTED", "-"})
_NUM = r"[-+]?\d+(?:\.\d+)?"
_RANGE = re.compile(rf"^\s*({_NUM})\s*(?:-|–|\.\.)\s*({_NUM})\s*$")
_BELOW = re.compile(rf"^\s*<=?\s*({_NUM})\s*$")
_ABOVE = re.compile(rf"^\s*>=?\s*({_NUM})\s*$")


def loinc_of(parts: tuple[str, ...], config: GatewayConfig) -> str | None:
    if parts[0] and parts[2].upper() == "LN":
        return parts[0]
    if parts[3] and parts[5].upper() == "LN":
        return parts[3]
    for local in (parts[0], parts[3]):
        if local and local in config.local_lab_codes:
            return config.local_lab_codes[local]
    return None


def reference_range(text: str) -> tuple[float | None, float | None]:
    """``low-high``, ``<high`` or ``>low``; anything else gives no range."""
    if m := _RANGE.match(text):
        return float(m.group(1)), float(m.group(2))
    if m := _BELOW.match(text):
        return None, float(m.group(1))
    if m := _ABOVE.match(text):
        return float(m.group(1)), None
    return None, None


def antibody_value(parts: tuple[str, ...]) -> str:
    for part in parts[:2] + parts[3:5]:
        text = part.strip().upper()
        if text in POSITIVE:
            return "positive"
        if text in NEGATIVE:
            return "negative"
    raise MapError("OBX", "5", "antibody result is not positive or negative", TABLE_VALUE_NOT_FOUND)


def map_lab(parsed: Parsed, config: GatewayConfig, out: Translation) -> None:
    patient = require_patient(patient_of(parsed, config.secret))
    spm_time: datetime | None = None
    for spm in parsed.segments("SPM"):
        spm_time = parse_time(value(spm, 17, 1), config.tz, ("SPM", "17"))
        break
    statuses = {"F", "C"} | ({"P"} if config.accept_preliminary else set())
    obr = None
    collected = resulted = None
    order: tuple[str, str] = ("", "")
    obx_count = 0
    for seg in parsed.message:
        kind = str(seg[0])
        if kind == "OBR":
            obr = seg
            collected = parse_time(value(seg, 7), config.tz, ("OBR", "7"))
            resulted = parse_time(value(seg, 22), config.tz, ("OBR", "22"))
            order = (value(seg, 3, 1), value(seg, 3, 2)) if value(seg, 3) else (value(seg, 2, 1), value(seg, 2, 2))
            continue
        if kind != "OBX":
            continue
        obx_count += 1
        status = value(seg, 11).upper()
        code = loinc_of(coded(seg, 3), config)
        if code is None or code not in USED_CODES or status not in statuses:
            out.ignored += 1
            continue
        occurred = collected or spm_time
        if occurred is None:
            raise MapError("OBR", "7", "no specimen collection time (OBR-7 or SPM-17)", REQUIRED_MISSING)
        if obr is None or not any(order):
            raise MapError("OBR", "3", "no order number (OBR-3 or OBR-2)", REQUIRED_MISSING)
        event = {
            "type": "lab.resulted",
            "event_id": event_id(parsed, obx_count, "lab"),
            "occurred_at": iso(occurred),
            "patient_id": patient,
            "code": code,
        }
        if code == lab_codes.ANTIBODY:
            event["value"] = antibody_value(coded(seg, 5))
        else:
            event["value"] = number(value(seg, 5), ("OBX", "5"))
            unit = value(seg, 6, 1) or value(seg, 6, 4)
            if unit and unit not in lab_codes.UNITS[code]:
                raise MapError("OBX", "6", "unit not accepted for this test", TABLE_VALUE_NOT_FOUND)
            if unit:
                event["unit"] = unit
            low, high = reference_range(value(seg, 7))
            if low is not None:
                event["reference_low"] = low
            if high is not None:
                event["reference_high"] = high
        if resulted is not None:
            event["resulted_at"] = iso(resulted)
        key = stable_id("labres", parsed.sender, *order, code)
        event["result_key"] = key
        if status == "C":
            event["corrects"] = key
        if status == "P":
            event["preliminary"] = True
        out.events.append(event)
