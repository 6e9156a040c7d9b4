"""Request bodies and headers per adapter (pure: no I/O, no clock).

- ``pagerduty``: the PagerDuty Events API v2 shape (``routing_key``, ``event_action``,
  ``dedup_key`` = the alert id, ``payload`` with ``summary``, ``source``, ``severity``,
  ``component``, ``group``, ``class``, ``custom_details``, and ``links``). Acknowledge and resolve
  carry only ``routing_key``, ``event_action`` and ``dedup_key``, as the API wants.
- ``webhook``: ``type`` (``alert.raised`` for a trigger, again for a re-page;
  ``alert.acknowledged`` / ``alert.resolved``) and ``event_action`` with the alert's kind,
  severity, site, chair, link and id.

Third parties get only what ``minimal.py`` allows (no summary, evidence, session or patient key
unless the destination opts in with ``include_patient_key``).
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

from infusion_monitor.schemas.outbound import PageRequested
from infusion_monitor.schemas.vocab import Severity

from .fhir import communication_request, request_path
from .minimal import minimal_alert, minimal_summary
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


def pagerduty_body(page: PageRequested, routes: PagerRoutes, routing_key: str,
                   destination: Destination | None = None) -> dict[str, Any]:
    """PagerDuty's ``dedup_key`` is the alert id (the incident key its webhooks send back);
    the payload holds only what ``minimal.py`` allows."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": page.event_action,
        "dedup_key": page.alert_id,
    }
    if page.event_action != "trigger":
        return body
    shown = minimal_alert(page, routes, destination or Destination(adapter="pagerduty", url="https://x",
                                                                   routing_key_env="-"))
    details = {**{k: v for k, v in shown.items() if k != "link"}, "tier": page.tier, "page": page.sequence,
               "failsafe": page.failsafe or None}
    body["payload"] = {
        "summary": minimal_summary(page)[:SUMMARY_MAX],
        "source": shown.get("site_id") or routes.source,
        "severity": PAGERDUTY_SEVERITY[Severity(page.severity)],
        "component": shown.get("kind"),
        "class": shown.get("kind"),
        "custom_details": {k: v for k, v in details.items() if v is not None},
    }
    if "site_id" in shown:
        body["payload"]["group"] = shown["site_id"]
    if "link" in shown:
        body["links"] = [{"href": shown["link"], "text": f"Alert {page.alert_id}"}]
    body["client"] = "infusion-monitor"
    return body


def webhook_body(page: PageRequested, routes: PagerRoutes, destination: Destination) -> dict[str, Any]:
    """``type`` (``alert.raised`` for a trigger, ``alert.acknowledged`` / ``alert.resolved``),
    ``event_action``, and the alert as ``minimal.py`` shows it."""
    kind = "alert.raised" if page.event_action == "trigger" or page.lifecycle is None else page.lifecycle["type"]
    body = {"type": kind, "event_action": page.event_action, **minimal_alert(page, routes, destination)}
    if kind == "alert.resolved" and page.lifecycle is not None and page.lifecycle.get("reason"):
        body["reason"] = page.lifecycle["reason"]
    return body


def build_request(page: PageRequested, destination: Destination, routes: PagerRoutes,
                  env: dict[str, str] | None = None) -> Request:
    url, method, content_type = destination.url, "POST", "application/json"
    dedup_key = page.alert_id
    if destination.adapter == "pagerduty":
        body = pagerduty_body(page, routes, destination.routing_key(env), destination)
    elif destination.adapter == "webhook":
        body = webhook_body(page, routes, destination)
    elif destination.adapter == "fhir":
        body = communication_request(page)  # the EHR's record of the alert: its patient by key
        url, method, content_type = f"{destination.url.rstrip('/')}/{request_path(page.alert_id)}", "PUT", "application/fhir+json"
        dedup_key = page.dedup_key
    else:
        raise ValueError(f"adapter {destination.adapter!r} does not speak HTTP")
    headers = {
        **destination.extra_headers(env),
        "Content-Type": content_type,
        "Idempotency-Key": page.event_id,
        "X-Im-Event-Id": page.event_id,
        "X-Im-Alert-Id": _header(page.alert_id),
        "X-Im-Dedup-Key": _header(dedup_key),
        "X-Im-Event-Action": page.event_action,
        "X-Im-Destination": _header(page.destination),
        "X-Im-Tier": str(page.tier),
        "X-Im-Sequence": str(page.sequence),
    }
    return Request(url, headers, json.dumps(body, separators=(",", ":"), sort_keys=True).encode(), method)
