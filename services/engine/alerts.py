"""Building ``alert.raised`` events with deterministic ids and dedup keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from infusion_monitor.schemas.outbound import AlertRaised
from infusion_monitor.schemas.vocab import AlertKind, Rule, Severity

from .ids import stable_id


def make_alert(
    *,
    patient_id: str,
    at: datetime,
    kind: AlertKind,
    severity: Severity,
    rule: Rule,
    condition: str,
    summary: str,
    action: str,
    evidence: dict[str, Any],
    session_id: str | None = None,
    site_id: str | None = None,
    pump_id: str | None = None,
    outside_window: bool = False,
    supersedes: str | None = None,
) -> AlertRaised:
    """``condition`` names what this alert is about within (patient, session, kind): two alerts
    with the same condition are the same alert (same ``alert_id`` and ``dedup_key``)."""
    scope = session_id or "-"
    dedup_key = f"{patient_id}/{scope}/{kind.value}/{condition}"
    alert_id = stable_id("al", dedup_key)
    return AlertRaised(
        event_id=stable_id("ev", "alert.raised", alert_id),
        occurred_at=at,
        patient_id=patient_id,
        alert_id=alert_id,
        kind=kind,
        severity=severity,
        rule=rule,
        session_id=session_id,
        site_id=site_id,
        pump_id=pump_id,
        summary=summary,
        action=action,
        evidence=evidence,
        outside_window=outside_window,
        dedup_key=dedup_key,
        supersedes=supersedes,
    )


def minutes_between(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds() / 60, 1)
