"""The acknowledgement endpoint (API and PagerDuty v3 webhooks) and the routes file."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from services.pager.ack import ack_app, verify_pagerduty_signature
from services.pager.routes import load_routes, parse_routes, record_only
from tests.pager.fixtures import ROUTES_TOML

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 3, 10, 30, tzinfo=UTC)
KNOWN = {"al-1": ("pk-1", "al-1")}
DEDUP = {"pk-1/s1/discontinue.hypersensitivity/R7": ("pk-1", "al-1")}


def _client(**kwargs):
    published = []

    def locate(alert_id, dedup_key):
        return KNOWN.get(alert_id or "") or DEDUP.get(dedup_key or "")

    async def publish(event):
        published.append(event)

    app = ack_app(locate, publish, destinations=frozenset({"pd1", "pd2"}), now=lambda: NOW, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ack"), published


def _pd_hook(event_type="incident.acknowledged", key="pk-1/s1/discontinue.hypersensitivity/R7"):
    return {"event": {"id": "01DEN1", "event_type": event_type, "occurred_at": "2025-03-03T10:31:00Z",
                      "agent": {"summary": "Dr On Call", "type": "user_reference"},
                      "data": {"id": "PINC1", "type": "incident", "incident_key": key}}}


async def test_api_ack_publishes_a_deterministic_acknowledgement():
    client, published = _client()
    async with client:
        first = await client.post("/pager/ack", json={"alert_id": "al-1", "by": "charge-nurse", "note": "seen"})
        again = await client.post("/pager/ack", json={"alert_id": "al-1", "by": "charge-nurse"})
        unknown = await client.post("/pager/ack", json={"alert_id": "al-x", "by": "n"})
        invalid = await client.post("/pager/ack", json={"by": "n"})
    assert first.status_code == 202 and unknown.status_code == 404 and invalid.status_code == 400
    assert first.json()["event_id"] == again.json()["event_id"]  # the same ack twice: one event
    event = published[0]
    assert (event.type, event.patient_id, event.alert_id, event.by, event.via.value, event.note) == (
        "alert.acknowledged", "pk-1", "al-1", "charge-nurse", "api", "seen")
    assert event.occurred_at == NOW


async def test_api_ack_token():
    client, published = _client(token="s3cret")
    async with client:
        denied = await client.post("/pager/ack", json={"alert_id": "al-1", "by": "n"})
        allowed = await client.post("/pager/ack", json={"alert_id": "al-1", "by": "n"},
                                    headers={"Authorization": "Bearer s3cret"})
    assert (denied.status_code, allowed.status_code, len(published)) == (401, 202, 1)


async def test_pagerduty_webhook_acknowledges_via_pager_naming_the_destination():
    client, published = _client()
    async with client:
        ok = await client.post("/pager/pagerduty/pd1", json=_pd_hook())
        ignored = await client.post("/pager/pagerduty/pd1", json=_pd_hook("incident.annotated"))
        wrong = await client.post("/pager/pagerduty/nope", json=_pd_hook())
        garbage = await client.post("/pager/pagerduty", content=b"{not json")
    assert (ok.status_code, ignored.status_code, wrong.status_code, garbage.status_code) == (202, 202, 404, 400)
    (event,) = published
    assert (event.via.value, event.by, event.model_extra["destination"]) == ("pager", "Dr On Call", "pd1")
    assert event.occurred_at == datetime(2025, 3, 3, 10, 31, tzinfo=UTC)


async def test_pagerduty_signature_is_checked_when_a_secret_is_set():
    client, published = _client(pagerduty_secret="whsec")
    body = json.dumps(_pd_hook()).encode()
    good = "v1=" + hmac.new(b"whsec", body, hashlib.sha256).hexdigest()
    async with client:
        bad = await client.post("/pager/pagerduty/pd1", content=body, headers={"X-PagerDuty-Signature": "v1=00"})
        ok = await client.post("/pager/pagerduty/pd1", content=body,
                               headers={"X-PagerDuty-Signature": f"v1=old, {good}"})
    assert (bad.status_code, ok.status_code, len(published)) == (401, 202, 1)
    assert not verify_pagerduty_signature("whsec", body, None)


def test_documented_routes_file_loads():
    r = load_routes(ROOT / "deploy" / "pager-routes.toml")
    assert [x.name for x in r.routes] == ["emergency", "nurse-north", "nurse", "record-only"]
    assert r.routes[0].tiers[0].repage_after.total_seconds() == 300
    assert record_only().route_for("critical", None).tiers == []


@pytest.mark.parametrize(("change", "message"), [
    (('name = "record-only"\nseverities = ["low", "info"]', 'name = "record-only"\nseverities = ["low"]'),
     "no catch-all route"),
    (('failsafe = "fs"', 'failsafe = "nowhere"'), "unknown destination"),
    (('escalate_after = "PT10M"', 'repage_after = "5m"'), "a failsafe needs escalate_after"),
    (('routing_key_env = "PD1_KEY"', ''), "needs routing_key_env"),
    (('repeats = 1', 'repeats = 1\nrepage_after = "-5m"'), ""),
    (('adapter = "webhook"', 'adapter = "sms"'), "adapter"),
])
def test_bad_routes_are_refused_naming_the_problem(change, message):
    old, new = change
    text = ROUTES_TOML.replace("{base}", "http://x").replace(old, new, 1)
    with pytest.raises((ValidationError, ValueError)) as info:
        parse_routes(text)
    assert message in str(info.value)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("PT5M", 300), (600, 600)])
def test_durations(text, seconds):
    toml = ROUTES_TOML.replace("{base}", "http://x").replace('"PT10M"', json.dumps(text) if isinstance(text, str) else str(text))
    assert parse_routes(toml).routes[0].tiers[1].escalate_after.total_seconds() == seconds
