"""FHIR R4 (parsed with ``fhir.resources``' R4B models) -> contract events.

Accepts one resource or a Bundle (``transaction``, ``batch``, ``collection``, or a subscription
notification: ``history``/``subscription-notification`` whose status entry is skipped).

- Observation ``vital-signs`` (LOINC 8480-6/8462-4, also as components of 85354-9; 8867-4;
  2708-6/59408-5; 9279-1; 8310-5; UCUM units) -> ``vitals.recorded``, one per patient and time;
- Observation ``laboratory`` -> ``lab.resulted`` (the HL7 lab rules: LOINC, units, range,
  corrections, antibody spellings);
- MedicationAdministration for natalizumab: ``in-progress`` -> ``infusion.started``;
  ``completed`` / ``stopped`` -> ``infusion.ended``;
- Patient -> ``patient.profile`` (``birthDate``, ``gender``).

The patient key is the HL7 one: HMAC over the assigning authority and the identifier of type
``MR`` (the authority is the configured HL7 name of the identifier's ``system``). A subject must
carry such an identifier or point at a Patient in the same Bundle (or a contained one).
A whole body is stored or rejected (``FhirError`` names the element path): never half of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from infusion_monitor.schemas import Rejection as ContractRejection
from infusion_monitor.schemas import parse_inbound

from ...engine.ids import stable_id
from ...lab_monitor import codes as lab_codes
from ..config import GatewayConfig
from ..identity import patient_key
from .common import MapError, iso
from .lab import NEGATIVE, POSITIVE, USED_CODES, lab_unit, reference_range
from .pump import is_natalizumab
from .vocab import match_unit

LOINC = "http://loinc.org"
VITAL_CODES = {
    "8480-6": "systolic_mmhg", "8462-4": "diastolic_mmhg", "8867-4": "heart_rate_bpm",
    "2708-6": "spo2_pct", "59408-5": "spo2_pct", "9279-1": "respiratory_rate_bpm", "8310-5": "temperature_c",
}
BP_PANEL = "85354-9"
KPA_TO_MMHG = 7.500615758
#: UCUM units per field (compared with annotations removed: ``{beats}/min`` is ``/min``)
VITAL_UNITS: dict[str, dict[str, Any]] = {
    "systolic_mmhg": {"mm[Hg]": None, "mmHg": None, "kPa": lambda v: round(v * KPA_TO_MMHG, 1)},
    "diastolic_mmhg": {"mm[Hg]": None, "mmHg": None, "kPa": lambda v: round(v * KPA_TO_MMHG, 1)},
    "heart_rate_bpm": {"/min": None},
    "respiratory_rate_bpm": {"/min": None},
    "spo2_pct": {"%": None},
    "temperature_c": {"Cel": None, "[degF]": lambda v: round((v - 32) * 5 / 9, 2)},
}
NATALIZUMAB_RXNORM = frozenset({"354770", "354771"})
NOTIFICATION_STATUS = frozenset({"Parameters", "SubscriptionStatus"})
SUPPORTED_BUNDLES = frozenset({"transaction", "batch", "collection", "history", "subscription-notification", "message"})
MR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"


class FhirError(Exception):
    def __init__(self, path: str, reason: str, status: int = 422, code: str = "processing") -> None:
        super().__init__(reason)
        self.path, self.reason, self.status, self.code = path, reason, status, code


@dataclass
class FhirTranslation:
    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0
    resource_type: str = ""
    warnings: list[str] = field(default_factory=list)  # logged and counted by the shell


@dataclass(frozen=True)
class Entry:
    path: str
    resource: dict[str, Any]
    full_url: str


def _path(root: str, loc: tuple[Any, ...]) -> str:
    text = root
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def validate(body: bytes) -> dict[str, Any]:
    """JSON and the R4B model; ``FhirError`` (status 400) names the element."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FhirError("", "body is not JSON", 400, "structure") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise FhirError("resourceType", "a FHIR resource needs a resourceType", 400, "structure")
    root = data["resourceType"]
    try:
        model = get_fhir_model_class(root)
    except (KeyError, ValueError) as exc:
        raise FhirError(f"{root}.resourceType", "unknown resource type", 400, "not-supported") from exc
    if root == "Bundle":
        for i, entry in enumerate(data.get("entry") or []):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict):
                try:
                    get_fhir_model_class(str(inner.get("resourceType")))
                except (KeyError, ValueError) as exc:
                    raise FhirError(f"Bundle.entry[{i}].resource.resourceType", "unknown resource type",
                                    400, "not-supported") from exc
    try:
        model.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise FhirError(_path(root, tuple(err["loc"])), reason, 400, "invalid") from exc
    except Exception as exc:  # the models raise other errors for some malformed shapes
        raise FhirError(root, f"invalid resource ({type(exc).__name__})", 400, "invalid") from exc
    return data


def _entries(data: dict[str, Any]) -> list[Entry]:
    if data["resourceType"] != "Bundle":
        return [Entry(data["resourceType"], data, "")]
    kind = data.get("type", "")
    if kind not in SUPPORTED_BUNDLES:
        raise FhirError("Bundle.type", f"bundle type {kind!r} is not accepted", 422, "not-supported")
    found = []
    for i, entry in enumerate(data.get("entry") or []):
        resource = entry.get("resource")
        method = (entry.get("request") or {}).get("method", "")
        if not resource or method == "DELETE" or resource["resourceType"] in NOTIFICATION_STATUS:
            continue
        found.append(Entry(f"Bundle.entry[{i}].resource", resource, entry.get("fullUrl", "")))
    return found


def _digest(resource: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resource, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _identity(entry: Entry) -> str:
    res = entry.resource
    if res.get("id"):
        return f"{res['resourceType']}/{res['id']}"
    for ident in res.get("identifier") or []:
        if ident.get("value"):
            return f"{res['resourceType']}#{ident.get('system', '')}|{ident['value']}"
    if entry.full_url:
        return entry.full_url
    raise FhirError(f"{entry.path}.id", "the resource needs an id, an identifier or a fullUrl")


def _time(text: str | None, path: str) -> datetime:
    if not text:
        raise FhirError(path, "a date-time is required")
    if "T" not in text:
        raise FhirError(path, "a date-time with a time of day is required")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FhirError(path, "malformed date-time") from exc
    if moment.tzinfo is None:
        raise FhirError(path, "a date-time with an offset is required")
    return moment


def _codes(concept: dict[str, Any] | None, system: str | None = None) -> list[str]:
    return [c.get("code", "") for c in (concept or {}).get("coding") or []
            if c.get("code") and (system is None or c.get("system") == system)]


def _texts(concept: dict[str, Any] | None) -> list[str]:
    concept = concept or {}
    return [t for t in [concept.get("text", "")] + [c.get("display", "") for c in concept.get("coding") or []]
            + [c.get("code", "") for c in concept.get("coding") or []] if t]


class Patients:
    """Resolves a subject reference to the patient key (bundle entries, contained, identifier)."""

    def __init__(self, entries: list[Entry], config: GatewayConfig) -> None:
        self.config = config
        self.index: dict[str, dict[str, Any]] = {}
        for entry in entries:
            res = entry.resource
            if res["resourceType"] == "Patient":
                if entry.full_url:
                    self.index[entry.full_url] = res
                if res.get("id"):
                    self.index[f"Patient/{res['id']}"] = res

    def key_from_identifiers(self, identifiers: list[dict[str, Any]]) -> str | None:
        """The HL7 rule: the identifier whose type (v2 table 0203) the site accepts for its
        authority (``MR`` unless configured; the first accepted type present wins), or one with
        no type whose ``system`` is listed in ``fhir_identifier_systems``."""
        settings = self.config.site_profile
        candidates: list[tuple[int, int, str, str]] = []
        for n, ident in enumerate(identifiers):
            if not ident.get("value"):
                continue
            type_codes = [c.upper() for c in _codes(ident.get("type"))]
            system = ident.get("system", "")
            authority = (self.config.fhir_identifier_systems.get(system)
                         or (ident.get("assigner") or {}).get("display")
                         or ((ident.get("assigner") or {}).get("identifier") or {}).get("value")
                         or system)
            accepted = settings.accepted_types(authority)
            ranks = [accepted.index(c) for c in type_codes if c in accepted]
            if not type_codes and system in self.config.fhir_identifier_systems:
                ranks = [0]
            if ranks:
                candidates.append((min(ranks), n, authority, ident["value"]))
        if not candidates:
            return None
        _, _, authority, number = min(candidates)
        return patient_key(self.config.secret, authority, number)

    def of_patient(self, resource: dict[str, Any], path: str) -> str:
        key = self.key_from_identifiers(resource.get("identifier") or [])
        if key is None:
            raise FhirError(f"{path}.identifier", "no identifier of an accepted type (MR unless configured)")
        return key

    def resolve(self, owner: dict[str, Any], element: str, path: str) -> str:
        ref = owner.get(element)
        where = f"{path}.{element}"
        if not ref:
            raise FhirError(where, "no patient")
        if ref.get("identifier"):
            key = self.key_from_identifiers([ref["identifier"]])
            if key is not None:
                return key
        target = ref.get("reference", "")
        if target.startswith("#"):
            for contained in owner.get("contained") or []:
                if contained.get("id") == target[1:] and contained.get("resourceType") == "Patient":
                    return self.of_patient(contained, f"{path}.contained")
        patient = self.index.get(target)
        if patient is None and target:
            patient = next((p for url, p in self.index.items() if url.endswith("/" + target)), None)
        if patient is not None:
            return self.of_patient(patient, where)
        raise FhirError(where, "the patient must carry an identifier of type MR or be a Patient in the same Bundle")


def translate_fhir(body: bytes, config: GatewayConfig, received_at: datetime) -> FhirTranslation:
    data = validate(body)
    out = FhirTranslation(resource_type=data["resourceType"])
    entries = _entries(data)
    patients = Patients(entries, config)
    vitals: dict[tuple[str, datetime], tuple[str, dict[str, float]]] = {}
    for entry in entries:
        kind = entry.resource["resourceType"]
        if kind == "Observation":
            _observation(entry, config, patients, vitals, out)
        elif kind == "MedicationAdministration":
            _administration(entry, patients, out)
        elif kind == "Patient":
            _patient(entry, patients, received_at, out)
        else:
            out.ignored += 1
    for (patient, moment), (identity, fields) in vitals.items():
        out.events.append({"type": "vitals.recorded", "event_id": stable_id("fhir", identity, iso(moment), "vitals"),
                           "occurred_at": iso(moment), "patient_id": patient, **dict(sorted(fields.items()))})
    for event in out.events:
        result = parse_inbound(json.dumps(event))
        if isinstance(result, ContractRejection):
            raise FhirError(result.field, f"event does not meet the contract: {result}")
    return out


def _category(resource: dict[str, Any]) -> set[str]:
    return {code for concept in resource.get("category") or [] for code in _codes(concept)}


def _effective(resource: dict[str, Any], path: str) -> datetime:
    if resource.get("effectiveDateTime"):
        return _time(resource["effectiveDateTime"], f"{path}.effectiveDateTime")
    if resource.get("effectiveInstant"):
        return _time(resource["effectiveInstant"], f"{path}.effectiveInstant")
    if resource.get("effectivePeriod"):
        return _time(resource["effectivePeriod"].get("start"), f"{path}.effectivePeriod.start")
    raise FhirError(f"{path}.effective[x]", "a date-time is required")


def _quantity(owner: dict[str, Any], path: str) -> tuple[float, str]:
    qty = owner.get("valueQuantity")
    if not qty or qty.get("value") is None:
        raise FhirError(f"{path}.valueQuantity", "a quantity with a value is required")
    return float(qty["value"]), qty.get("code") or qty.get("unit") or ""


def _observation(entry: Entry, config: GatewayConfig, patients: Patients,
                 vitals: dict[tuple[str, datetime], tuple[str, dict[str, float]]], out: FhirTranslation) -> None:
    res, path = entry.resource, entry.path
    categories = _category(res)
    loinc = _codes(res.get("code"), LOINC)
    is_vital = "vital-signs" in categories or (not categories and any(c in VITAL_CODES or c == BP_PANEL for c in loinc))
    if is_vital:
        if res.get("status") not in ("final", "amended", "corrected", "preliminary"):
            out.ignored += 1
            return
        found: dict[str, tuple[float, str, str]] = {}
        for code in loinc:
            if code in VITAL_CODES and res.get("valueQuantity"):
                found[VITAL_CODES[code]] = (*_quantity(res, path), f"{path}.valueQuantity")
        for i, comp in enumerate(res.get("component") or []):
            for code in _codes(comp.get("code"), LOINC):
                if code in VITAL_CODES and comp.get("valueQuantity"):
                    cpath = f"{path}.component[{i}]"
                    found[VITAL_CODES[code]] = (*_quantity(comp, cpath), f"{cpath}.valueQuantity")
        if not found:
            out.ignored += 1
            return
        patient = patients.resolve(res, "subject", path)
        moment = _effective(res, path)
        identity, fields = vitals.setdefault((patient, moment), (f"{_identity(entry)}@{_digest(res)}", {}))
        for name, (raw, unit, upath) in found.items():
            table = VITAL_UNITS[name]
            known = match_unit([unit], table)
            if known is None:
                raise FhirError(f"{upath}.code", "unknown unit for this observation")
            convert = table[known]
            fields.setdefault(name, convert(raw) if convert else raw)
        return
    code = next((c for c in loinc if c in USED_CODES), None)
    if code is None or ("laboratory" not in categories and categories):
        out.ignored += 1
        return
    statuses = {"final", "amended", "corrected"} | ({"preliminary"} if config.accept_preliminary else set())
    if res.get("status") not in statuses:
        out.ignored += 1
        return
    patient = patients.resolve(res, "subject", path)
    moment = _effective(res, path)
    event: dict[str, Any] = {"type": "lab.resulted", "occurred_at": iso(moment), "patient_id": patient, "code": code}
    if code == lab_codes.ANTIBODY:
        texts = [t.upper() for t in _texts(res.get("valueCodeableConcept"))] + [str(res.get("valueString", "")).upper()]
        if any(t in POSITIVE for t in texts):
            event["value"] = "positive"
        elif any(t in NEGATIVE for t in texts):
            event["value"] = "negative"
        else:
            raise FhirError(f"{path}.value[x]", "antibody result is not positive or negative")
    else:
        value, sent_unit = _quantity(res, path)
        try:
            unit = lab_unit(code, [sent_unit])
        except MapError as exc:
            raise FhirError(f"{path}.valueQuantity.code", exc.rejection.reason) from exc
        event["value"] = value
        if unit:
            event["unit"] = unit
        ranges = res.get("referenceRange") or []
        if ranges:
            low, high = reference_range(ranges[0].get("text") or "")
            if (ranges[0].get("low") or {}).get("value") is not None:
                low = float(ranges[0]["low"]["value"])
            if (ranges[0].get("high") or {}).get("value") is not None:
                high = float(ranges[0]["high"]["value"])
            if low is not None:
                event["reference_low"] = low
            if high is not None:
                event["reference_high"] = high
    if res.get("issued"):
        event["resulted_at"] = iso(_time(res["issued"], f"{path}.issued"))
    identity = _identity(entry)
    key = stable_id("labres", "fhir", identity, code)
    event["result_key"] = key
    if res.get("status") in ("amended", "corrected"):
        event["corrects"] = key
    event["event_id"] = stable_id("fhir", identity, _digest(res), "lab")
    out.events.append(event)


def _administration(entry: Entry, patients: Patients, out: FhirTranslation) -> None:
    res, path = entry.resource, entry.path
    medication = res.get("medicationCodeableConcept")
    texts = _texts(medication)
    if res.get("medicationReference"):
        texts.append(res["medicationReference"].get("display", ""))
        target = res["medicationReference"].get("reference", "")
        for contained in res.get("contained") or []:
            if target == f"#{contained.get('id')}" and contained.get("resourceType") == "Medication":
                texts.extend(_texts(contained.get("code")))
    if not any(is_natalizumab(t) or t in NATALIZUMAB_RXNORM for t in texts):
        out.ignored += 1
        return
    status = res.get("status")
    if status not in ("in-progress", "completed", "stopped"):
        out.ignored += 1  # on-hold (a pause), not-done, entered-in-error ...
        return
    patient = patients.resolve(res, "subject", path)
    identity = _identity(entry)
    session = stable_id("ses", "fhir", identity)
    period = res.get("effectivePeriod") or {}
    if status == "in-progress":
        at = _time(period.get("start") or res.get("effectiveDateTime"), f"{path}.effectivePeriod.start")
        event: dict[str, Any] = {"type": "infusion.started", "session_id": session, "drug": "natalizumab"}
        dose = (res.get("dosage") or {}).get("dose") or {}
        if dose.get("value") is not None and (dose.get("code") or dose.get("unit")) == "mg":
            event["dose_mg"] = float(dose["value"])
    else:
        at = _time(period.get("end") or res.get("effectiveDateTime"), f"{path}.effectivePeriod.end")
        event = {"type": "infusion.ended", "session_id": session, "outcome": status}
    event.update({"event_id": stable_id("fhir", identity, status), "occurred_at": iso(at), "patient_id": patient})
    out.events.append(event)


def _patient(entry: Entry, patients: Patients, received_at: datetime, out: FhirTranslation) -> None:
    """A Patient the gateway cannot key (no accepted identifier) is not needed on its own: it is
    counted with a warning, and the Bundle's other resources are stored. A resource whose
    subject is that Patient is still refused (its data could not be keyed)."""
    res, path = entry.resource, entry.path
    if patients.key_from_identifiers(res.get("identifier") or []) is None:
        out.ignored += 1
        out.warnings.append(f"patient-not-keyed: {path} has no identifier of an accepted type; no profile")
        return
    key = patients.of_patient(res, path)
    if not res.get("birthDate") or len(res["birthDate"]) != 10:
        out.ignored += 1  # identity only (no full birth date): used to resolve subjects, no profile
        return
    updated = (res.get("meta") or {}).get("lastUpdated")
    at = _time(updated, f"{path}.meta.lastUpdated") if updated else received_at
    event = {"type": "patient.profile", "event_id": stable_id("fhir", _identity(entry), _digest(res), "profile"),
             "occurred_at": iso(at), "patient_id": key, "birth_date": res["birthDate"]}
    if res.get("gender"):
        event["sex"] = res["gender"]
    out.events.append(event)
