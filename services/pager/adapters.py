"""Request bodies and headers per adapter (pure: no I/O, no clock).

- ``pagerduty``: the PagerDuty Events API v2 shape (``routing_key``, ``event_action``,
  ``dedup_key``, ``payload`` with ``summary``, ``source``, ``severity``, ``timestamp``,
  ``component``, ``group``, ``class``, ``custom_details``, and ``links``). Acknowledge and resolve
  carry only ``routing_key``, ``event_action`` and ``dedup_key``, as the API wants.
- ``webhook``: the contract's event itself: ``alert.raised`` for a trigger (a re-page sends it
  again), ``alert.acknowledged`` / ``alert.resolved`` for acknowledge / resolve.
- ``fhir``: a FHIR R4 ``CommunicationRequest`` (``fhir.py``), ``PUT`` as a conditional update.

(``acm`` is not HTTP: ``acm.py`` builds its HL7 messages.)

Every request carries ``Idempotency-Key`` = the ``page.requested`` event id (the same on every
retry and after a restart) and ``X-Im-*`` headers naming the action, dedup key, tier and sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from schemas.outbound import PageRequested
from schemas.vocab import Severity

from .fhir import communication_request, request_path
from .routes import PAGERDUTY_SEVERITY, Destination, PagerRoutes

SUMMARY_MAX = 1024  # PagerDuty truncates longer summaries


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


def _header(text: str) -> str:
    return quote(text, safe="/:-_.=@+ ")


def pagerduty_body(page: PageRequested, routes: PagerRoutes, routing_key: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": page.event_action,
        "dedup_key": page.dedup_key,
    }
    if page.event_action != "trigger":
        return body
    alert = page.alert
    site = alert.get("site_id") or (alert.get("evidence") or {}).get("site_id")
    session_id = alert.get("session_id")
    details = {
        "alert_id": page.alert_id,
        "patient_id": page.patient_id,
        "session_id": session_id,
        "rule": alert.get("rule"),
        "kind": alert.get("kind"),
        "action": alert.get("action"),
        "outside_window": alert.get("outside_window"),
        "supersedes": alert.get("supersedes"),
        "tier": page.tier,
        "page": page.sequence,
        "failsafe": page.failsafe or None,
        "evidence": alert.get("evidence", {}),
    }
    body["payload"] = {
        "summary": str(alert.get("summary", ""))[:SUMMARY_MAX],
        "source": site if isinstance(site, str) and site else routes.source,
        "severity": PAGERDUTY_SEVERITY[Severity(page.severity)],
        "timestamp": alert.get("occurred_at"),
        "component": alert.get("kind"),
        "group": session_id or page.patient_id,
        "class": alert.get("rule"),
        "custom_details": {k: v for k, v in details.items() if v is not None},
    }
    links = []
    if routes.session_url and session_id:
        links.append({"href": routes.session_url.format(session_id=quote(session_id, safe="")),
                      "text": f"Session {session_id}"})
    if routes.alert_url:
        links.append({"href": routes.alert_url.format(alert_id=page.alert_id), "text": f"Alert {page.alert_id}"})
    if links:
        body["links"] = links
    body["client"] = "infusion-monitor"
    return body


def webhook_body(page: PageRequested) -> dict[str, Any]:
    """The contract's event: the alert for a trigger, the lifecycle event otherwise."""
    if page.event_action == "trigger" or page.lifecycle is None:
        return page.alert
    return page.lifecycle


def build_request(page: PageRequested, destination: Destination, routes: PagerRoutes,
                  env: dict[str, str] | None = None) -> Request:
    url, method, content_type = destination.url, "POST", "application/json"
    if destination.adapter == "pagerduty":
        body = pagerduty_body(page, routes, destination.routing_key(env))
    elif destination.adapter == "webhook":
        body = webhook_body(page)
    elif destination.adapter == "fhir":
        body = communication_request(page)
        url, method, content_type = f"{destination.url.rstrip('/')}/{request_path(page.alert_id)}", "PUT", "application/fhir+json"
    else:
        raise ValueError(f"adapter {destination.adapter!r} does not speak HTTP")
    headers = {
        **destination.extra_headers(env),
        "Content-Type": content_type,
        "Idempotency-Key": page.event_id,
        "X-Im-Event-Id": page.event_id,
        "X-Im-Alert-Id": _header(page.alert_id),
        "X-Im-Dedup-Key": _header(page.dedup_key),
        "X-Im-Event-Action": page.event_action,
        "X-Im-Destination": _header(page.destination),
        "X-Im-Tier": str(page.tier),
        "X-Im-Sequence": str(page.sequence),
    }
    return Request(url, headers, json.dumps(body, separators=(",", ":"), sort_keys=True).encode(), method)
