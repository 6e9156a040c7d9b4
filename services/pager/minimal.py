"""What a third-party pager is told about an alert (privacy by default, issue 14): its kind,
severity, site, chair, a link back to the board and the alert id; the patient key only when the
destination opts in (``include_patient_key``). Never the summary, the evidence (readings,
symptoms), the session id or the dedup key (which holds the patient key and the session).
Operator alerts (``system.*``: about the product, never a patient) carry their summary, action
and evidence too: the operator needs to know what is down. Pure: no I/O."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from infusion_monitor.schemas.outbound import PageRequested

from .routes import OPERATOR_KIND_PREFIX, Destination, PagerRoutes


def site_and_chair(alert: dict[str, Any]) -> tuple[str | None, str | None]:
    """The alert's site (``site_id``, else in the evidence) and chair (``pump_id`` or
    ``chair_id``, on the alert or in its evidence), when it carries them."""
    evidence = alert.get("evidence") if isinstance(alert.get("evidence"), dict) else {}

    def first(*keys: str) -> str | None:
        for key in keys:
            value = alert.get(key) or evidence.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    return first("site_id"), first("pump_id", "chair_id")


def link_back(page: PageRequested, routes: PagerRoutes) -> str | None:
    """The link to the alert on the board (``alert_url``), else to its session (``session_url``)."""
    if routes.alert_url:
        return routes.alert_url.format(alert_id=quote(page.alert_id, safe=""))
    session_id = page.alert.get("session_id")
    if routes.session_url and session_id:
        return routes.session_url.format(session_id=quote(session_id, safe=""))
    return None


def minimal_alert(page: PageRequested, routes: PagerRoutes, destination: Destination) -> dict[str, Any]:
    """The alert as a third party sees it."""
    site, chair = site_and_chair(page.alert)
    out: dict[str, Any] = {"alert_id": page.alert_id, "kind": page.alert.get("kind"), "severity": page.severity,
                           "site_id": site, "chair": chair, "link": link_back(page, routes)}
    if destination.include_patient_key:
        out["patient_id"] = page.patient_id
    if _operator(page):
        out.update({k: page.alert.get(k) for k in ("rule", "summary", "action", "evidence")})
    return {k: v for k, v in out.items() if v is not None}


def _operator(page: PageRequested) -> bool:
    return str(page.alert.get("kind", "")).startswith(OPERATOR_KIND_PREFIX)


def minimal_summary(page: PageRequested) -> str:
    """``CRITICAL discontinue.hypersensitivity at site-north, chair pump-N04`` (no clinical detail)."""
    if _operator(page):
        return str(page.alert.get("summary") or page.alert.get("kind"))
    site, chair = site_and_chair(page.alert)
    where = ", ".join(part for part in (site, f"chair {chair}" if chair else None) if part)
    return f"{page.severity.upper()} {page.alert.get('kind', 'alert')}" + (f" at {where}" if where else "")
