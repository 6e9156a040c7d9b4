"""Registration ``ADT^A04``, ``A08``, ``A28``, ``A31`` -> ``patient.profile``.

Only ``birth_date`` (PID-7) and ``sex`` (PID-8, as the FHIR gender code so both feeds agree)
leave the gateway; nothing else from PID.
"""

from __future__ import annotations

from datetime import date

from ..config import GatewayConfig
from .common import (
    DATA_TYPE_ERROR, REQUIRED_MISSING, MapError, Parsed, Translation, event_id, iso, parse_time, patient_of,
    require_patient, value,
)

PROFILE_TRIGGERS = frozenset({"A04", "A08", "A28", "A31"})
SEX = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}


def map_adt(parsed: Parsed, config: GatewayConfig, out: Translation) -> None:
    patient = require_patient(patient_of(parsed, config.secret))
    pid = parsed.segments("PID")[0]
    born = value(pid, 7, 1)
    if not born:
        raise MapError("PID", "7", "birth date missing", REQUIRED_MISSING)
    if len(born) < 8 or not born[:8].isdigit():
        raise MapError("PID", "7", "birth date is not a full date (YYYYMMDD)", DATA_TYPE_ERROR)
    birth_date = f"{born[:4]}-{born[4:6]}-{born[6:8]}"
    try:
        date.fromisoformat(birth_date)
    except ValueError as exc:
        raise MapError("PID", "7", "birth date is not a valid date", DATA_TYPE_ERROR) from exc
    evn = parsed.segments("EVN")
    msh = parsed.message.segment("MSH")
    when = (parse_time(value(evn[0], 6), parsed.zone, ("EVN", "6")) if evn else None) \
        or (parse_time(value(evn[0], 2), parsed.zone, ("EVN", "2")) if evn else None) \
        or parse_time(value(msh, 7), parsed.zone, ("MSH", "7"))
    if when is None:
        raise MapError("MSH", "7", "no message time", REQUIRED_MISSING)
    event = {"type": "patient.profile", "event_id": event_id(parsed, 1, "profile"), "occurred_at": iso(when),
             "patient_id": patient, "birth_date": birth_date}
    sex = SEX.get(value(pid, 8, 1).upper())
    if sex:
        event["sex"] = sex
    out.events.append(event)
    out.trace("PID", 1, "", "used", "birth_date" + (", sex" if sex else ""))
