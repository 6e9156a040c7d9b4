"""IHE PCD Alert Communication Management, the pure part: ``page.requested`` -> PCD-04
(``ORU^R40``), the alarm manager's ACK -> an outcome, PCD-05 (``ORA^R41`` / ``ORU^R41``) -> a
status. No I/O, no clock: the message bytes depend only on the request, so a retransmission is
byte-identical (same MSH-10). ``docs/paging.md`` ("IHE ACM") has the tables and samples.

One PCD-04 per request, one alert per message:

- ``MSH``: MSH-9 ``ORU^R40^ORU_R40``, MSH-10 ``<alert_id>.<n>`` (the n-th request of this alert
  to this destination: unique per destination, the same on every retransmission), MSH-15/16
  ``AL``/``NE``, MSH-21 ``IHE_PCD_ACM_001``.
- ``PID``: the pseudonymous key only (PID-3, type ``PI``); never a name. Operator alerts: none.
- ``PV1``: PV1-3 the alert's location: site ^ ^ chair/pump (when the alert carries one) ^ facility.
- ``OBR``: OBR-2/3 the alert identifier, OBR-4 ``196616^MDC_EVT_ALARM^MDC``, OBR-7 the alert's
  event time, OBR-29 the alert it supersedes.
- ``OBX`` facets (OBX-4 ``1.0.0.0.<facet>``): 1 event identification (the alert's short text,
  OBX-8 abnormality~priority~type), 2 source (the metric, value, unit and limit that met the
  rule, or the alert source), 3 event phase, 4 alarm state, 5 inactivation state, 6 priority,
  7 alert type, 8 the callback link to the board.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infusion_monitor.schemas.outbound import PageRequested
from infusion_monitor.schemas.vocab import DeliveryState, Rule, Severity

from ..engine.config import MonitorConfig
from ..gateway.mapping.ack import escape
from .minimal import link_back, site_and_chair
from .routes import OPERATOR_KIND_PREFIX, AcmSettings, PagerRoutes

PROFILE = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO"
MESSAGE_TYPE = "ORU^R40^ORU_R40"
SUB_ID = "1.0.0.0"  # OBX-4 prefix: the alert is not tied to one device channel
LOCAL = "99IM"  # coding system of this product's own codes (HL7: local codes start with 99)

# MDC terms (IEEE 11073-10101) of the facets
EVT_ALARM = ("196616", "MDC_EVT_ALARM")
EVT_LO = ("196674", "MDC_EVT_LO_VAL_LT_LIM")
EVT_HI = ("196652", "MDC_EVT_HI_VAL_GT_LIM")
ALERT_SOURCE = ("68480", "MDC_ATTR_ALERT_SOURCE")
EVENT_PHASE = ("68481", "MDC_ATTR_EVENT_PHASE")
ALARM_STATE = ("68482", "MDC_ATTR_ALARM_STATE")
INACTIVATION_STATE = ("68483", "MDC_ATTR_ALARM_INACTIVATION_STATE")
PRIORITY = ("68484", "MDC_ATTR_ALARM_PRIORITY")
ALERT_TYPE = ("68485", "MDC_ATTR_ALERT_TYPE")
CALLBACK = ("IM_CALLBACK", "Board link")

#: metric -> (MDC code, MDC reference id, unit code, unit reference id)
METRICS: dict[str, tuple[str, str, str, str]] = {
    "systolic_mmhg": ("150021", "MDC_PRESS_BLD_NONINV_SYS", "266016", "MDC_DIM_MMHG"),
    "spo2_pct": ("150456", "MDC_PULS_OXIM_SAT_O2", "262688", "MDC_DIM_PERCENT"),
    "temperature_c": ("150364", "MDC_TEMP_BODY", "268192", "MDC_DIM_DEGC"),
}
PHYSIOLOGICAL = frozenset({Rule.R7, Rule.R8, Rule.R9, Rule.R10, Rule.R11, Rule.R12, Rule.R12B, Rule.R13})
PRIORITY_BY_SEVERITY: dict[Severity, str] = {
    Severity.CRITICAL: "PH", Severity.HIGH: "PH", Severity.MEDIUM: "PM", Severity.LOW: "PL", Severity.INFO: "PL",
}
_RANK = {"PL": 0, "PM": 1, "PH": 2}


@dataclass(frozen=True, slots=True)
class Source:
    """The source facet: what met the rule (a metric with its value and limit, or a text)."""

    metric: str | None  # a key of METRICS
    value: float | None
    limit: str  # OBX-7, HL7 range text
    abnormal: str  # OBX-8: L, H or A
    text: str  # the ST source when there is no metric


def control_id(page: PageRequested) -> str:
    """MSH-10: unique per destination, equal on every retransmission of the same request."""
    return f"{page.alert_id}.{page.sequence}"


def alert_of_control_id(control: str) -> str:
    """The alert id in one of our control ids (``<alert_id>.<n>``)."""
    head, _, tail = control.rpartition(".")
    return head if head and tail.isdigit() else control


def priority(severity: Severity | str) -> str:
    return PRIORITY_BY_SEVERITY[Severity(severity)]


def alert_type(alert: dict[str, Any]) -> str:
    """SP physiological for the reaction rules (R7-R13), ST technical for operator alerts,
    SA advisory for the rest."""
    if str(alert.get("kind", "")).startswith(OPERATOR_KIND_PREFIX):
        return "ST"
    try:
        return "SP" if Rule(alert.get("rule")) in PHYSIOLOGICAL else "SA"
    except ValueError:
        return "SA"


def event_phase(page: PageRequested) -> str:
    """start (the first trigger to this destination), escalate / update (the first trigger of an
    alert that supersedes another: escalate when its priority is higher), continue (a re-page),
    update (an acknowledgement), end (a resolution)."""
    if page.event_action == "resolve":
        return "end"
    if page.event_action == "acknowledge":
        return "update"
    if page.sequence > 1:
        return "continue"
    if page.alert.get("supersedes"):
        before = page.superseded_severity
        if before is None or _RANK[priority(page.severity)] > _RANK[priority(before)]:
            return "escalate"
        return "update"
    return "start"


def alarm_states(page: PageRequested) -> tuple[str, str]:
    """(alarm state, inactivation state)."""
    if page.event_action == "resolve":
        return "inactive", "alert-acknowledged" if page.acknowledged_by else "enabled"
    if page.event_action == "acknowledge":
        return "active", "alert-acknowledged"
    return "active", "enabled"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def source_of(alert: dict[str, Any], config: MonitorConfig) -> Source:
    """The metric that met the rule, when a reading did (R7 systolic, R8 SpO2, R13 temperature);
    else the alert source as text (symptoms, or what the rule is about)."""
    evidence = alert.get("evidence") if isinstance(alert.get("evidence"), dict) else {}
    readings = evidence.get("readings") if isinstance(evidence.get("readings"), dict) else {}
    rule = alert.get("rule")
    systolic, spo2, temp = (_number(readings.get(k)) for k in ("systolic_mmhg", "spo2_pct", "temperature_c"))
    if rule == Rule.R7.value and systolic is not None:
        if systolic < config.systolic_low_mmhg:
            return Source("systolic_mmhg", systolic, f">={config.systolic_low_mmhg:g}", "L", "")
        if _number(evidence.get("systolic_fall_pct")) is not None:  # the relative fall met R7
            return Source("systolic_mmhg", systolic, f"fall<={config.systolic_fall_pct}%", "L", "")
    if rule == Rule.R8.value and spo2 is not None and spo2 <= config.spo2_low_pct:
        return Source("spo2_pct", spo2, f">{config.spo2_low_pct:g}", "L", "")
    if rule == Rule.R13.value and temp is not None and temp >= config.fever_c:
        return Source("temperature_c", temp, f"<{config.fever_c:g}", "H", "")
    symptoms = evidence.get("symptoms") if isinstance(evidence.get("symptoms"), list) else []
    parts = [f"{rule} {alert.get('kind', '')}".strip()]
    if symptoms:
        parts.append("symptoms: " + ", ".join(str(s) for s in symptoms))
    subject = evidence.get("subject")
    if isinstance(subject, str) and subject:
        parts.append(subject)
    return Source(None, None, "", "A", "; ".join(parts))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def _fields(*values: str) -> str:
    return "|".join(values).rstrip("|")


def _obx(set_id: int, value_type: str, code: tuple[str, str], value: str, *, unit: str = "", limit: str = "",
         flags: str = "", at: str = "", system: str = "MDC", alternate: str = "") -> str:
    identifier = f"{code[0]}^{code[1]}^{system}" + (f"^{alternate}" if alternate else "")
    return _fields("OBX", str(set_id), value_type, identifier, f"{SUB_ID}.{set_id}", value, unit, limit, flags,
                   "", "", "F", "", "", at)


def location(alert: dict[str, Any], acm: AcmSettings) -> str:
    """PV1-3: site ^ ^ chair/pump ^ facility (empty components when unknown)."""
    site, place = site_and_chair(alert)
    return "^".join([escape(site or ""), "", escape(place or ""), escape(acm.facility)]).rstrip("^")



def pcd04(page: PageRequested, acm: AcmSettings, routes: PagerRoutes, config: MonitorConfig) -> bytes:
    """The ``ORU^R40`` for one request (segments end with ``\\r``; UTF-8)."""
    alert = page.alert
    ident = escape(page.alert_id)
    app = escape(acm.sending_application)
    operator = str(alert.get("kind", "")).startswith(OPERATOR_KIND_PREFIX)
    occurred = datetime.fromisoformat(str(alert.get("occurred_at")).replace("Z", "+00:00"))
    msh = _fields("MSH", "^~\\&", app, escape(acm.sending_facility), escape(acm.receiving_application),
                  escape(acm.receiving_facility), _stamp(page.occurred_at), "", MESSAGE_TYPE, escape(control_id(page)),
                  "P", "2.6", "", "", "AL", "NE", "", "UNICODE UTF-8", "", "", PROFILE)
    segments = [msh]
    if not operator:
        segments.append(_fields("PID", "", "", f"{escape(page.patient_id)}^^^{escape(acm.assigning_authority)}^PI"))
    segments.append(_fields("PV1", "", "O", location(alert, acm)))
    parent = ""
    if alert.get("supersedes"):
        old = escape(str(alert["supersedes"]))
        parent = f"{old}&{app}^{old}&{app}"
    segments.append(_fields("OBR", "1", f"{ident}^{app}", f"{ident}^{app}", f"{EVT_ALARM[0]}^{EVT_ALARM[1]}^MDC",
                            "", "", _stamp(occurred), *[""] * 21, parent))
    source = source_of(alert, config)
    prio, kind = priority(page.severity), alert_type(alert)
    event = EVT_LO if source.abnormal == "L" else EVT_HI if source.abnormal == "H" else EVT_ALARM
    rule_code = f"{escape(str(alert.get('rule', '')))}^{escape(str(alert.get('kind', '')))}^{LOCAL}"
    at = _stamp(occurred)
    segments.append(_obx(1, "ST", event, escape(str(alert.get("summary", ""))), flags=f"{source.abnormal}~{prio}~{kind}",
                         at=at, alternate=rule_code))
    if source.metric is not None and source.value is not None:
        code, name, unit_code, unit_name = METRICS[source.metric]
        segments.append(_obx(2, "NM", (code, name), f"{source.value:g}", unit=f"{unit_code}^{unit_name}^MDC",
                             limit=escape(source.limit), flags=source.abnormal, at=at))
    else:
        segments.append(_obx(2, "ST", ALERT_SOURCE, escape(source.text)))
    alarm_state, inactivation = alarm_states(page)
    segments.append(_obx(3, "ST", EVENT_PHASE, event_phase(page)))
    segments.append(_obx(4, "ST", ALARM_STATE, alarm_state))
    segments.append(_obx(5, "ST", INACTIVATION_STATE, inactivation))
    segments.append(_obx(6, "ST", PRIORITY, prio))
    segments.append(_obx(7, "ST", ALERT_TYPE, kind))
    link = link_back(page, routes)
    if link:
        segments.append(_obx(8, "RP", CALLBACK, f"{escape(link)}^{app}^TEXT^HTML", system=LOCAL))
    return ("\r".join(segments) + "\r").encode("utf-8")


# -- what comes back -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AckResult:
    code: str  # MSA-1: AA / AE / AR (CA / CE / CR in enhanced mode)
    control_id: str  # MSA-2
    text: str = ""  # MSA-3, short


def _split(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", "replace").replace("\r\n", "\r").replace("\n", "\r")
    return [line for line in text.split("\r") if line.strip()]


def parse_ack(raw: bytes) -> AckResult | None:
    """MSA-1 and MSA-2 of an acknowledgement (tolerant: empty MSH fields are common); None if
    it has no MSA."""
    lines = _split(raw)
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 4:
        return None
    sep = lines[0][3]
    for line in lines[1:]:
        if line.startswith("MSA" + sep):
            parts = line.split(sep)
            code = parts[1].strip().upper() if len(parts) > 1 else ""
            control = parts[2].strip() if len(parts) > 2 else ""
            return AckResult(code, control, parts[3].strip()[:120] if len(parts) > 3 else "")
    return None


#: PCD-05 status text (lower case, a word in it) -> state; the first match wins
_STATUS_WORDS: tuple[tuple[str, DeliveryState], ...] = (
    ("undeliver", DeliveryState.UNDELIVERABLE),
    ("not deliver", DeliveryState.UNDELIVERABLE),
    ("reject", DeliveryState.REJECTED),
    ("accept", DeliveryState.ACCEPTED),
    ("read", DeliveryState.READ),
    ("deliver", DeliveryState.DELIVERED),
    ("receiv", DeliveryState.RECEIVED),
    ("cancel", DeliveryState.CANCELLED),
)
STATUS_FIELD = re.compile(r"STATUS", re.IGNORECASE)


def status_state(text: str) -> DeliveryState | None:
    lowered = text.lower()
    for word, state in _STATUS_WORDS:
        if word in lowered:
            return state
    return None


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """One PCD-05: which alert, what happened to it, who, when."""

    control_id: str  # MSH-10 of the PCD-05 (its identity: a retransmission repeats it)
    sender: str  # MSH-3.1
    alert_id: str
    state: DeliveryState
    status_text: str
    by: str | None  # the recipient PRT names (PRT-5: id, else given and family name)
    at: datetime | None  # MSH-7


@dataclass(frozen=True, slots=True)
class StatusRejection:
    ack: str  # AE or AR
    segment: str
    field: str
    reason: str


def parse_pcd05(raw: bytes, tz: Any = UTC) -> AlertStatus | StatusRejection:
    """A PCD-05 (``ORA^R41`` or ``ORU^R41``) -> the status, or why it cannot be used.

    Alert: OBR-3 (or OBR-2) entity id as we sent it (a leading update counter, ``n^id``, is
    skipped), else the alert in MSA-2 (the control id of our PCD-04). Status: an OBX whose
    observation identifier names a status (e.g. ``MDC_ATTR_ALERT_STATUS`` / dissemination
    status), else PRT-3 (action reason, as some alarm managers send it), else PRT-4."""
    from ..gateway.mapping.common import MapError, parse, parse_time, value

    try:
        parsed = parse(raw)
    except MapError as exc:
        rej = exc.rejection
        return StatusRejection("AR", rej.segment, rej.field, rej.reason)
    if parsed.message_type not in ("ORA^R41", "ORU^R41"):
        return StatusRejection("AR", "MSH", "9", f"not a PCD-05 ({parsed.message_type})")
    alert_id = ""
    for obr in parsed.segments("OBR"):
        for field_no in (3, 2):
            first, second = value(obr, field_no, 1), value(obr, field_no, 2)
            candidate = second if first.isdigit() and second.startswith("al-") else first
            if candidate:
                alert_id = candidate
                break
        if alert_id:
            break
    if not alert_id:
        for msa in parsed.segments("MSA"):
            alert_id = alert_of_control_id(value(msa, 2))
    if not alert_id:
        return StatusRejection("AE", "OBR", "3", "no alert identifier (OBR-3, OBR-2 or MSA-2)")
    status_text = ""
    for obx in parsed.segments("OBX"):
        ident = " ".join(value(obx, 3, c) for c in (1, 2, 5))
        if STATUS_FIELD.search(ident):
            status_text = value(obx, 5)
            break
    prts = parsed.segments("PRT")
    if not status_text and prts:
        status_text = value(prts[0], 3, 2) or value(prts[0], 3, 1) or value(prts[0], 4, 2) or value(prts[0], 4, 1)
    state = status_state(status_text)
    if state is None:
        return StatusRejection("AE", "OBX", "5", "no known alert status (received, delivered, read, accepted, "
                               "rejected, undeliverable, cancelled)")
    by = None
    for prt in prts:
        ident, family, given = value(prt, 5, 1), value(prt, 5, 2), value(prt, 5, 3)
        name = " ".join(p for p in (given, family) if p)
        if ident or name:
            by = (ident or name)[:256]
            break
    try:
        at = parse_time(value(parsed.message.segment("MSH"), 7), tz, ("MSH", "7"))
    except MapError:
        at = None
    return AlertStatus(parsed.control_id, parsed.sender, alert_id, state, status_text[:120], by, at)
