"""Lab ``ORU^R01`` (LOINC-coded results) -> ``lab.resulted``.

- LOINC: OBX-3's first triplet when its system is ``LN``, else the alternate triplet (4-6), else
  the local code tables (the sender's, then the site's); results the lab monitor does not read
  are acknowledged, counted;
- value OBX-5 (numbers; antibody 58012-6 as positive/negative in its usual spellings); unit
  OBX-6 (UCUM with annotations ignored, ``{cells}/uL`` is ``/uL``; forwarded as the spelling the
  lab rules accept); range OBX-7 (``low-high``, ``low to high``, ``<high``, ``>low``); specimen
  collection OBR-7 (else SPM-17) -> ``occurred_at``; OBR-22 -> ``resulted_at``;
- OBX-11: ``F`` and ``C`` forwarded, ``P`` only when configured. Every result carries
  ``result_key`` (sender, order, LOINC: the same test on the same specimen); a correction
  carries ``corrects`` = that key, so it replaces the earlier value and says so.

Relevance is decided before identity (no test the product reads: ``AA`` even without a patient);
a result row that cannot be mapped is rejected on its own (``AE`` naming it), the others forwarded.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ...engine.ids import stable_id
from ...lab_monitor import codes as lab_codes
from ..config import GatewayConfig
from .common import (
    REQUIRED_MISSING, TABLE_VALUE_NOT_FOUND, MapError, Parsed, Translation, coded, event_id, iso,
    number, parse_time, patient_of, require_patient, value,
)
from .vocab import match_unit

USED_CODES = frozenset(lab_codes.UNITS) | {lab_codes.ANTIBODY}
POSITIVE = frozenset({"POSITIVE", "POS", "DETECTED", "REACTIVE", "+"})
NEGATIVE = frozenset({"NEGATIVE", "NEG", "NOT DETECTED", "NON-REACTIVE", "NONREACTIVE", "UNDETECTED", "-"})
_NUM = r"[-+]?\d+(?:\.\d+)?"
_RANGE = re.compile(rf"^\s*({_NUM})\s*(?:-|–|\.\.|to)\s*({_NUM})\s*$", re.IGNORECASE)
_BELOW = re.compile(rf"^\s*<=?\s*({_NUM})\s*$")
_ABOVE = re.compile(rf"^\s*>=?\s*({_NUM})\s*$")


def loinc_of(parts: tuple[str, ...], local_codes: dict[str, str]) -> str | None:
    if parts[0] and parts[2].upper() == "LN":
        return parts[0]
    if parts[3] and parts[5].upper() == "LN":
        return parts[3]
    for local in (parts[0], parts[3]):
        if local and local.strip().upper() in local_codes:
            return local_codes[local.strip().upper()]
    return None


def reference_range(text: str) -> tuple[float | None, float | None]:
    """``low-high``, ``low to high``, ``<high`` or ``>low``; anything else gives no range."""
    if m := _RANGE.match(text):
        return float(m.group(1)), float(m.group(2))
    if m := _BELOW.match(text):
        return None, float(m.group(1))
    if m := _ABOVE.match(text):
        return float(m.group(1)), None
    return None, None


def lab_unit(code: str, spellings: list[str], local_units: dict[str, str] | None = None) -> str | None:
    """The spelling the lab rules accept for ``code`` that the sent unit names (UCUM annotations
    and case ignored, the sender's local units first); ``None`` when no unit was sent."""
    spellings = [s for s in spellings if s and s.strip()]
    if not spellings:
        return None
    local = [(local_units or {}).get(s.strip().upper(), "") for s in spellings]
    unit = match_unit([s for s in local if s] + spellings, lab_codes.UNITS[code])
    if unit is None:
        raise MapError("OBX", "6", "unit not accepted for this test", TABLE_VALUE_NOT_FOUND)
    return unit


def antibody_value(parts: tuple[str, ...]) -> str:
    for part in parts[:2] + parts[3:5]:
        text = part.strip().upper()
        if text in POSITIVE:
            return "positive"
        if text in NEGATIVE:
            return "negative"
    raise MapError("OBX", "5", "antibody result is not positive or negative", TABLE_VALUE_NOT_FOUND)


def map_lab(parsed: Parsed, config: GatewayConfig, out: Translation) -> None:
    settings = parsed.settings
    spm_time: datetime | None = None
    for spm in parsed.segments("SPM"):
        spm_time = parse_time(value(spm, 17, 1), parsed.zone, ("SPM", "17"))
        break
    statuses = {"F", "C"} | ({"P"} if config.accept_preliminary else set())
    obr = None
    obr_count = obx_count = 0
    collected = resulted = None
    order_error: MapError | None = None
    order: tuple[str, str] = ("", "")
    rows: list[tuple[int, Any, str, str, Any]] = []  # index, OBX, LOINC, status, its OBR's facts
    held = 0  # results the product reads, with a value, held back by their status
    for seg in parsed.message:
        kind = str(seg[0])
        if kind == "OBR":
            obr, obr_count = seg, obr_count + 1
            order_error = None
            try:
                collected = parse_time(value(seg, 7), parsed.zone, ("OBR", "7"))
                resulted = parse_time(value(seg, 22), parsed.zone, ("OBR", "22"))
            except MapError as exc:
                collected = resulted = None
                order_error = MapError(exc.rejection.segment, exc.rejection.field, exc.rejection.reason,
                                       exc.rejection.error_code, segment_index=obr_count)
            order = (value(seg, 3, 1), value(seg, 3, 2)) if value(seg, 3) else (value(seg, 2, 1), value(seg, 2, 2))
            continue
        if kind != "OBX":
            continue
        obx_count += 1
        code_text = "^".join(coded(seg, 3)[:3])
        status = value(seg, 11).upper()
        code = loinc_of(coded(seg, 3), settings.local_codes)
        if code is None or code not in USED_CODES:
            out.ignored += 1
            out.trace("OBX", obx_count, code_text, "ignored", "not a test the product reads")
            continue
        if status not in statuses:
            out.ignored += 1
            held += bool(value(seg, 5))
            out.trace("OBX", obx_count, code_text, "ignored", f"result status {status or 'empty'} is not forwarded")
            continue
        facts = (obr_count, obr is not None and any(order), order, collected or spm_time, resulted, order_error)
        rows.append((obx_count, seg, code, status, facts))
    if not rows:  # nothing the product reads: acknowledged whatever the patient identifier
        if held:
            out.warnings.append("no-event: results the product reads were sent, none with a forwarded status")
        return
    patient = require_patient(patient_of(parsed, config.secret))
    for index, seg, code, status, (obr_index, has_order, order_no, occurred, result_time, error) in rows:
        code_text = "^".join(coded(seg, 3)[:3])
        try:
            if error is not None:
                raise error
            if occurred is None:
                raise MapError("OBR", "7", "no specimen collection time (OBR-7 or SPM-17)", REQUIRED_MISSING,
                               segment_index=max(obr_index, 1))
            if not has_order:
                raise MapError("OBR", "3", "no order number (OBR-3 or OBR-2)", REQUIRED_MISSING,
                               segment_index=max(obr_index, 1))
            event = _result(parsed, seg, index, code, status, order_no, occurred, result_time, patient)
        except MapError as exc:
            rejection = exc.rejection if exc.rejection.segment != "OBX" else exc.rejection.at(index)
            out.reject_row(rejection, code_text)
            continue
        out.events.append(event)
        shown = event["value"] if isinstance(event["value"], str) else f"{event['value']:g} {event.get('unit', '')}"
        out.trace("OBX", index, code_text, "used", f"{code} = {shown.strip()} collected {event['occurred_at']}")


def _result(parsed: Parsed, seg: Any, index: int, code: str, status: str,
            order: tuple[str, str], occurred: datetime, resulted: datetime | None, patient: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "lab.resulted",
        "event_id": event_id(parsed, index, "lab"),
        "occurred_at": iso(occurred),
        "patient_id": patient,
        "code": code,
    }
    if code == lab_codes.ANTIBODY:
        event["value"] = antibody_value(coded(seg, 5))
    else:
        event["value"] = number(value(seg, 5), ("OBX", "5"))
        unit = lab_unit(code, [value(seg, 6, 1), value(seg, 6, 4)], parsed.settings.local_units)
        if unit:
            event["unit"] = unit
        low, high = reference_range(value(seg, 7))
        if low is not None:
            event["reference_low"] = low
        if high is not None:
            event["reference_high"] = high
    if resulted is not None:
        event["resulted_at"] = iso(resulted)
    key = stable_id("labres", parsed.sender, parsed.facility, *order, code)
    event["result_key"] = key
    if status == "C":
        event["corrects"] = key
    if status == "P":
        event["preliminary"] = True
    return event
