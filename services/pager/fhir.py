"""Alerts for EHR-side consumers as FHIR R4 ``CommunicationRequest`` resources (the IHE mACM
pattern), pure: ``page.requested`` -> (path, resource). ``docs/paging.md`` ("FHIR").

One resource per alert, identified by ``identifier`` = (``urn:infusion-monitor:alert``, alert id)
and written with a **conditional update** (``PUT [base]/CommunicationRequest?identifier=...``):
the first request creates it, the acknowledgement and the resolution update it, and a retry of
the same request changes nothing.

| alert | CommunicationRequest |
|---|---|
| trigger | ``status`` active |
| acknowledge | ``status`` completed, a note: acknowledged by whom, via what |
| resolve | ``status`` completed if someone acknowledged it, else revoked; a note: why |
| severity | ``priority``: critical stat, high asap, medium urgent, low/info routine |
| session | ``about``: the infusion session (an Encounter, by identifier) |
| rule | ``reasonCode``: the rule id (code), the alert kind (display), the summary (text) |
| patient | ``subject``: the pseudonymous key (by identifier; never a name) |
| supersedes | ``replaces``: the superseded alert's request (by identifier) |
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.outbound import PageRequested
from infusion_monitor.schemas.vocab import Severity

ALERT_SYSTEM = "urn:infusion-monitor:alert"
PATIENT_SYSTEM = "urn:infusion-monitor:patient"
SESSION_SYSTEM = "urn:infusion-monitor:session"
RULE_SYSTEM = "urn:infusion-monitor:rule"
CATEGORY = {"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "alert",
            "display": "Alert"}
FHIR_PRIORITY: dict[Severity, str] = {
    Severity.CRITICAL: "stat", Severity.HIGH: "asap", Severity.MEDIUM: "urgent", Severity.LOW: "routine",
    Severity.INFO: "routine",
}


def request_path(alert_id: str) -> str:
    """The conditional-update path (relative to the FHIR base) of an alert's request."""
    return "CommunicationRequest?identifier=" + quote(f"{ALERT_SYSTEM}|{alert_id}", safe="")


def status_of(page: PageRequested) -> str:
    if page.event_action == "trigger":
        return "active"
    if page.event_action == "acknowledge":
        return "completed"
    return "completed" if page.acknowledged_by else "revoked"


def notes(page: PageRequested) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    life = page.lifecycle or {}
    if page.acknowledged_by:
        via = life.get("via") if page.event_action == "acknowledge" else None
        text = f"Acknowledged by {page.acknowledged_by}" + (f" via {via}" if via else "")
        if page.event_action == "acknowledge" and life.get("note"):
            text += f": {life['note']}"
        out.append({"text": text, **({"time": life["occurred_at"]} if page.event_action == "acknowledge" else {})})
    if page.event_action == "resolve":
        out.append({"time": life.get("occurred_at", format_time(page.occurred_at)),
                    "text": f"Resolved: {life.get('reason', 'resolved')}"})
    return out


def communication_request(page: PageRequested) -> dict[str, Any]:
    """The whole resource as it should be after this request (a PUT replaces it)."""
    alert = page.alert
    summary = str(alert.get("summary", ""))
    resource: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "identifier": [{"system": ALERT_SYSTEM, "value": page.alert_id}],
        "status": status_of(page),
        "category": [{"coding": [CATEGORY]}],
        "priority": FHIR_PRIORITY[Severity(page.severity)],
        "subject": {"type": "Patient", "identifier": {"system": PATIENT_SYSTEM, "value": page.patient_id}},
        "reasonCode": [{"coding": [{"system": RULE_SYSTEM, "code": str(alert.get("rule", "")),
                                    "display": str(alert.get("kind", ""))}], "text": summary}],
        "payload": [{"contentString": summary}],
        "authoredOn": alert.get("occurred_at"),
        "occurrenceDateTime": alert.get("occurred_at"),
    }
    if alert.get("action"):
        resource["payload"].append({"contentString": str(alert["action"])})
    session_id = alert.get("session_id")
    if session_id:
        resource["about"] = [{"type": "Encounter", "identifier": {"system": SESSION_SYSTEM, "value": session_id},
                              "display": f"Infusion session {session_id}"}]
    if alert.get("supersedes"):
        resource["replaces"] = [{"type": "CommunicationRequest",
                                 "identifier": {"system": ALERT_SYSTEM, "value": alert["supersedes"]}}]
    if note := notes(page):
        resource["note"] = note
    return resource
