"""Replay with paging: ``replay_lines(..., engine=pager_engine(config, routes))`` reproduces the
escalations exactly on event time, parses acknowledgements in the log, and leaves the other
cores' outputs untouched (the goldens)."""

from __future__ import annotations

import json
from pathlib import Path

from infusion_monitor.schemas import parse_inbound
from infusion_monitor.schemas.parse import Rejection
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.pager import load_routes, pager_engine
from infusion_monitor.replay.offline import replay_lines
from tests.builders import at, event, normal, start, vitals
from tests.pager.fixtures import routes

ROOT = Path(__file__).resolve().parents[2]
PAGER_TYPES = {"page.requested", "alert.escalated", "alert.resolved"}


def _replay(events: list[dict], r=None) -> list[dict]:
    lines = [json.dumps(e).encode() for e in events]
    result = replay_lines(lines, MonitorConfig(), engine=pager_engine(MonitorConfig(), r or routes()))
    assert not [x for x in result.reports if x.level == "rejected"], result.reports
    return [json.loads(line) for line in result.jsonl()]


def _reaction(ack_minute: float | None = None, via: str = "board") -> tuple[list[dict], str]:
    """A session whose reading at +20 min meets R7 (critical); optionally acknowledged."""
    events = [normal(-10), start(0), normal(15), vitals(20, systolic_mmhg=82, spo2_pct=97)]
    if ack_minute is not None:
        events.append(event("alert.acknowledged", ack_minute, alert_id="@", by="dr-a", via=via))
    return events, "@"


def _pages(out: list[dict], alert_id: str | None = None) -> list[tuple[str, str, str, int]]:
    return [(p["occurred_at"], p["destination"], p["event_action"], p["sequence"])
            for p in out if p["type"] == "page.requested" and alert_id in (None, p["alert_id"])]


def _critical_id(out: list[dict]) -> str:
    return next(a["alert_id"] for a in out if a["type"] == "alert.raised" and a["severity"] == "critical")


def test_acknowledgement_and_resolution_lines_parse_for_the_replay():
    ok = parse_inbound(json.dumps(event("alert.acknowledged", 1, alert_id="al-1", by="dr", via="pager")))
    assert not isinstance(ok, Rejection) and ok.type == "alert.acknowledged"
    bad = parse_inbound(json.dumps(event("alert.acknowledged", 1, alert_id="al-1", by="dr", via="fax")))
    assert isinstance(bad, Rejection) and bad.field == "via"
    resolved = parse_inbound(json.dumps(event("alert.resolved", 1, alert_id="al-1", reason="cleared")))
    assert not isinstance(resolved, Rejection)


def test_escalation_and_failsafe_reproduced_on_event_time():
    events, _ = _reaction()
    out = _replay(events)
    critical = _critical_id(out)
    pages = [p for p in _pages(out, critical) if p[2] == "trigger"]
    assert pages == [
        (at(20), "pd1", "trigger", 1),
        (at(25), "pd1", "trigger", 2),
        (at(30), "pd2", "trigger", 1),
        (at(40), "fs", "trigger", 1),
    ]
    escalated = [(e["to_tier"], e["failsafe"]) for e in out if e["type"] == "alert.escalated"]
    assert escalated == [(2, False), (3, True)]
    # the window closes (uneventful readings stop at +20; us: start + 2 h): resolved, pagers told
    resolved = [r for r in out if r["type"] == "alert.resolved"]
    assert (critical, "session_closed") in [(r["alert_id"], r["reason"]) for r in resolved]
    resolved = [r for r in resolved if r["alert_id"] == critical]
    closed_at = next(e["occurred_at"] for e in out if e["type"] == "session.closed")
    assert resolved[0]["occurred_at"] == closed_at
    assert {p[1] for p in _pages(out, critical) if p[2] == "resolve"} == {"pd1", "pd2", "fs"}


def test_acknowledgement_in_the_log_stops_escalation():
    events, _ = _reaction()
    first = _replay(events)
    critical = _critical_id(first)
    events.append(event("alert.acknowledged", 27, alert_id=critical, by="dr-a", via="board"))
    out = _replay(events)
    assert _pages(out, critical)[:3] == [(at(20), "pd1", "trigger", 1), (at(25), "pd1", "trigger", 2),
                               (at(27), "pd1", "acknowledge", 3)]
    assert not [e for e in out if e["type"] == "alert.escalated" and e["alert_id"] == critical]


def test_replay_with_paging_is_byte_identical_and_keeps_the_goldens():
    log = (ROOT / "examples" / "clinic-day.jsonl").read_bytes().splitlines()
    r = load_routes(ROOT / "deploy" / "pager-routes.toml")
    a = replay_lines(log, MonitorConfig(), engine=pager_engine(MonitorConfig(), r))
    b = replay_lines(log, MonitorConfig(), engine=pager_engine(MonitorConfig(), r))
    text = "".join(a.jsonl())
    assert text == "".join(b.jsonl())
    assert any(json.loads(line)["type"] == "page.requested" for line in text.splitlines())
    others = "".join(line + "\n" for line in text.splitlines() if json.loads(line)["type"] not in PAGER_TYPES)
    golden = (ROOT / "tests" / "replay" / "goldens" / "clinic-day.expected.jsonl").read_text()
    assert others == golden


def test_session_alerts_carry_their_site_and_route_by_it():
    """Routing by site end to end: a session alert names the site of its infusion.started, and
    the shipped routes send medium alerts at site-north to that site's nurse station."""
    from pathlib import Path

    from infusion_monitor.engine.config import MonitorConfig
    from infusion_monitor.pager import load_routes, pager_engine
    from infusion_monitor.replay.offline import replay_lines

    root = Path(__file__).resolve().parents[2]
    lines = (root / "examples" / "clinic-day.jsonl").read_bytes().splitlines()
    config = MonitorConfig()
    result = replay_lines(lines, config, engine=pager_engine(config, load_routes(root / "deploy" / "pager-routes.toml")))
    alerts = {e.alert_id: e for e in result.outputs if e.type == "alert.raised"}
    pages = [(alerts[p.alert_id], p.destination) for p in result.outputs if p.type == "page.requested" and p.tier == 1]
    medium = {(a.rule.value, a.site_id, dest) for a, dest in pages if a.severity.value == "medium"}
    assert ("M1", "site-north", "nurse-station-north") in medium  # the site's own route
    assert ("M1", "site-south", "nurse-station") in medium  # no route for the south: the catch-all
    assert ("A4", None, "nurse-station") in medium  # an alert without a session has no site: the catch-all
    assert all(dest == "nurse-station-north" for _, site, dest in medium if site == "site-north")
