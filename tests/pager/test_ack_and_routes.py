"""The acknowledgement endpoint (API and PagerDuty v3 webhooks: issue 14, nobody unauthenticated
acknowledges) and the routes file."""

from __future__ import annotations

import hashlib
import hmac
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from infusion_monitor.pager.ack import ack_app, clamp, verify_pagerduty_signature
from infusion_monitor.pager.callers import Callers
from infusion_monitor.runtime.private import NotPrivate
from infusion_monitor.pager.routes import load_routes, parse_routes, record_only
from tests.pager.fixtures import ROUTES_TOML

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 3, 10, 30, tzinfo=UTC)
KNOWN = {"al-1": ("pk-1", "al-1")}
DEDUP = {"pk-1/s1/discontinue.hypersensitivity/R7": ("pk-1", "al-1")}


TOKEN = "t" * 40
NURSE_CALL = "n" * 40


def _callers(path: Path) -> Callers:
    path.write_text(f"""[callers.api]\nprincipal = "ops-console"\ntoken = "{TOKEN}"\n
[callers.nurse-call]\nprincipal = "nurse-call-system"\nvia = "board"\ntoken = "{NURSE_CALL}"\n""")
    path.chmod(0o600)
    return Callers.load_or_create(path)


def _client(tmp_path: Path | None = None, **kwargs):
    published = []

    def locate(alert_id, dedup_key):
        return KNOWN.get(alert_id or "") or DEDUP.get(dedup_key or "")

    async def publish(event):
        published.append(event)

    if tmp_path is not None and "callers" not in kwargs:
        kwargs["callers"] = _callers(tmp_path / "callers.toml")
    app = ack_app(locate, publish, destinations=frozenset({"pd1", "pd2"}), now=lambda: NOW, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ack"), published


def _pd_hook(event_type="incident.acknowledged", key="pk-1/s1/discontinue.hypersensitivity/R7", at="2025-03-03T10:29:00Z"):
    return {"event": {"id": "01DEN1", "event_type": event_type, "occurred_at": at,
                      "agent": {"summary": "Dr On Call", "type": "user_reference"},
                      "data": {"id": "PINC1", "type": "incident", "incident_key": key}}}


def _signed(body: dict, secret: str = "whsec") -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json",
                 "X-PagerDuty-Signature": "v1=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def test_api_ack_records_the_callers_principal_deterministically(tmp_path):
    client, published = _client(tmp_path)
    async with client:
        first = await client.post("/pager/ack", json={"alert_id": "al-1", "note": "seen"}, headers=BEARER)
        again = await client.post("/pager/ack", json={"alert_id": "al-1"}, headers=BEARER)
        unknown = await client.post("/pager/ack", json={"alert_id": "al-x"}, headers=BEARER)
        invalid = await client.post("/pager/ack", json={}, headers=BEARER)
        board = await client.post("/pager/ack", json={"dedup_key": "pk-1/s1/discontinue.hypersensitivity/R7"},
                                  headers={"Authorization": f"Bearer {NURSE_CALL}"})
    assert (first.status_code, unknown.status_code, invalid.status_code, board.status_code) == (202, 404, 400, 202)
    assert first.json()["event_id"] == again.json()["event_id"]  # the same ack twice: one event
    event = published[0]
    assert (event.type, event.patient_id, event.alert_id, event.by, event.via.value, event.note) == (
        "alert.acknowledged", "pk-1", "al-1", "ops-console", "api", "seen")
    assert event.occurred_at == NOW
    assert (published[-1].by, published[-1].via.value) == ("nurse-call-system", "board")


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({}, {"alert_id": "al-1"}, 401),  # no credential
    ({"Authorization": "Bearer " + "x" * 40}, {"alert_id": "al-1"}, 401),  # a wrong token
    ({"Authorization": TOKEN}, {"alert_id": "al-1"}, 401),  # not a bearer token
    ({**BEARER, "Origin": "https://evil.example"}, {"alert_id": "al-1"}, 403),  # a browser page elsewhere
    ({**BEARER, "Content-Type": "text/plain"}, b'{"alert_id": "al-1"}', 415),  # a "simple" cross-site request
    ({**BEARER, "Content-Type": "application/x-www-form-urlencoded"}, b"alert_id=al-1", 415),
    (BEARER, {"alert_id": "al-1", "by": "Anna K., RN"}, 400),  # who acknowledged is the credential's
    (BEARER, {"alert_id": "al-1", "via": "board"}, 400),
    (BEARER, b"x" * (300 * 1024), 413),
])
async def test_api_ack_refuses_forged_and_unauthenticated_requests_and_publishes_nothing(tmp_path, headers, body, status):
    """Issue 14: a text/plain request from a foreign Origin naming a nurse got 202."""
    client, published = _client(tmp_path)
    async with client:
        if isinstance(body, bytes):
            answer = await client.post("/pager/ack", content=body, headers={"Content-Type": "application/json", **headers})
        else:
            answer = await client.post("/pager/ack", json=body, headers=headers)
    assert answer.status_code == status
    assert published == []


async def test_api_ack_is_off_without_callers_and_the_webhook_without_a_secret(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("# no callers\n")
    empty.chmod(0o600)
    client, published = _client(callers=Callers.load_or_create(empty))
    raw, headers = _signed(_pd_hook())
    async with client:
        ack = await client.post("/pager/ack", json={"alert_id": "al-1"}, headers=BEARER)
        hook = await client.post("/pager/pagerduty/pd1", content=raw, headers={"Content-Type": "application/json"})
        health = await client.get("/healthz")
    assert (ack.status_code, hook.status_code, health.status_code, published) == (404, 404, 200, [])


def test_the_callers_file_is_created_private_and_refused_when_readable_by_others(tmp_path):
    path = tmp_path / "pager" / "ack-callers.toml"
    callers = Callers.load_or_create(path)
    assert len(callers.callers) == 1 and callers.callers[0].principal == "api"
    assert path.stat().st_mode & 0o777 == 0o600
    token = tomllib.loads(path.read_text())["callers"]["api"]["token"]
    assert len(token) >= 40 and callers.identify(f"Bearer {token}") is not None
    assert Callers.load_or_create(path).identify(f"Bearer {token}") is not None  # kept across restarts
    path.chmod(0o644)
    with pytest.raises(NotPrivate):
        Callers.load_or_create(path)


async def test_pagerduty_webhook_acknowledges_via_pager_naming_the_destination():
    client, published = _client(pagerduty_secret="whsec")
    async with client:
        raw, headers = _signed(_pd_hook())
        ok = await client.post("/pager/pagerduty/pd1", content=raw, headers=headers)
        raw, headers = _signed(_pd_hook("incident.annotated"))
        ignored = await client.post("/pager/pagerduty/pd1", content=raw, headers=headers)
        raw, headers = _signed(_pd_hook())
        wrong = await client.post("/pager/pagerduty/nope", content=raw, headers=headers)
        raw, headers = _signed({"garbage": True})
        garbage = await client.post("/pager/pagerduty", content=raw, headers=headers)
        raw, headers = _signed(_pd_hook(key="al-1"))  # the incident key the bridge now sends: the alert id
        by_id = await client.post("/pager/pagerduty/pd2", content=raw, headers=headers)
    assert (ok.status_code, ignored.status_code, wrong.status_code, garbage.status_code, by_id.status_code) == (
        202, 202, 404, 400, 202)
    event = published[0]
    assert (event.via.value, event.by, event.model_extra["destination"]) == ("pager", "Dr On Call", "pd1")
    assert event.occurred_at == datetime(2025, 3, 3, 10, 29, tzinfo=UTC)
    assert (published[1].alert_id, published[1].model_extra["destination"]) == ("al-1", "pd2")


async def test_pagerduty_signature_is_required():
    client, published = _client(pagerduty_secret="whsec")
    raw, headers = _signed(_pd_hook())
    async with client:
        unsigned = await client.post("/pager/pagerduty/pd1", content=raw, headers={"Content-Type": "application/json"})
        bad = await client.post("/pager/pagerduty/pd1", content=raw,
                                headers={"Content-Type": "application/json", "X-PagerDuty-Signature": "v1=00"})
        other_secret = await client.post("/pager/pagerduty/pd1", content=raw, headers=_signed(_pd_hook(), "other")[1])
        rotated = await client.post("/pager/pagerduty/pd1", content=raw,
                                    headers={**headers, "X-PagerDuty-Signature": f"v1=old, {headers['X-PagerDuty-Signature']}"})
    assert (unsigned.status_code, bad.status_code, other_secret.status_code, rotated.status_code, len(published)) == (
        401, 401, 401, 202, 1)
    assert not verify_pagerduty_signature("whsec", raw, None)


@pytest.mark.parametrize(("at", "expected"), [
    ("9999-01-01T00:00:00Z", NOW),  # issue 14: an ack dated 9999 moved the bridge's clock to the end of time
    ("2025-03-03T10:31:00Z", NOW),  # a minute in the future
    ("2025-03-01T10:00:00Z", NOW),  # more than a day old
    ("2025-03-03T10:29:00Z", datetime(2025, 3, 3, 10, 29, tzinfo=UTC)),  # plausible: kept
])
async def test_pagerduty_times_are_clamped_to_the_wall_clock(at, expected):
    client, published = _client(pagerduty_secret="whsec")
    raw, headers = _signed(_pd_hook(at=at))
    async with client:
        assert (await client.post("/pager/pagerduty/pd1", content=raw, headers=headers)).status_code == 202
    assert published[0].occurred_at == expected


@given(st.datetimes(timezones=st.just(UTC)))
def test_clamp_never_returns_a_time_after_now_or_long_before(when):
    got = clamp(when, NOW)
    assert NOW - timedelta(days=1) <= got <= NOW
    assert got == when or got == NOW


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
