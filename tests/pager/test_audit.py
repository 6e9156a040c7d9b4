"""``infusion-monitor alerts``: folding the audit trail into one line per alert, with each
destination's delivery state (issue 16)."""

from __future__ import annotations

from infusion_monitor.pager.audit import AlertStatus, fold, render


def _ev(type_: str, **fields) -> dict:
    return {"type": type_, "alert_id": "al-1", "occurred_at": fields.pop("at", "2025-03-03T10:00:00Z"), **fields}


def test_each_destination_shows_its_latest_delivery_state():
    events = [
        _ev("alert.raised", patient_id="pk-1", severity="critical", rule="R7", summary="R7"),
        _ev("page.attempted", destination="pd1", event_action="trigger", delivered=False, error="connect"),
        _ev("alert.delivery", destination="pd1", state="retrying", reason="connect"),
        _ev("alert.delivery", destination="acm", state="sent"),
        _ev("alert.delivery", destination="pd1", state="failed", reason="destination_down"),
        _ev("alert.escalated", at="2025-03-03T10:00:31Z"),
        _ev("alert.delivery", destination="pd2", state="sent"),
        _ev("alert.delivery", destination="acm", state="read"),
        _ev("alert.delivery", destination="acm", state="accepted", by="nurse-7"),
        _ev("alert.acknowledged", by="nurse-7", at="2025-03-03T10:01:00Z"),
    ]
    (status,) = fold(events).values()
    assert status.state == "acknowledged" and status.acknowledged_by == "nurse-7"
    assert status.deliveries == {"pd1": "failed (destination_down)", "acm": "accepted by nurse-7", "pd2": "sent"}
    table = render([status])
    assert "per destination" in table.splitlines()[0]
    assert "pd1 failed (destination_down), acm accepted by nurse-7, pd2 sent" in table


def test_an_alert_without_delivery_reports_shows_a_dash():
    assert AlertStatus("al-2").delivery_text() == "-"
