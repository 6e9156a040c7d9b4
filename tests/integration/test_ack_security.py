"""Issue 14: nobody unauthenticated acknowledges an alert through the pager's endpoint, and a
failure of that endpoint never stops paging. The bridge runs against a real nats-server with
real loopback receivers; every attack is a real HTTP request to its endpoint, and "changes
nothing" is read from the receivers (escalation continues, no acknowledgement is relayed) and
from the alert and audit streams."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import time
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from infusion_monitor.schemas.vocab import AlertKind, Rule, Severity
from infusion_monitor.engine.alerts import make_alert
from infusion_monitor.pager.app import PagerSettings, run_pager
from infusion_monitor.pager.routes import parse_routes
from infusion_monitor.runtime.settings import Settings
from tests.integration.live import connect, stream_messages, wait_for
from tests.pager.receiver import Receiver

pytestmark = pytest.mark.integration
ESCALATE_S = 3

ROUTES = """
[destinations.ward]
adapter = "webhook"
url = "{base}/ward"
[destinations.backup]
adapter = "webhook"
url = "{base}/backup"
[destinations.ops]
adapter = "webhook"
url = "{base}/ops"
[operator]
destinations = ["ops"]
[[routes]]
name = "emergency"
severities = ["critical", "high", "medium", "low", "info"]
  [[routes.tiers]]
  destinations = ["ward"]
  escalate_after = "%ds"
  [[routes.tiers]]
  destinations = ["backup"]
""" % ESCALATE_S


def _alert(patient: str):
    return make_alert(patient_id=patient, at=datetime.now(UTC), kind=AlertKind.DISCONTINUE_HYPERSENSITIVITY,
                      severity=Severity.CRITICAL, rule=Rule.R7, condition="c", summary="R7", action="Stop",
                      evidence={}, session_id=f"ses-{patient}", site_id="site-a")


async def _raise(js, alert) -> None:
    await js.publish(f"im.alert.{alert.patient_id}.alert.raised", alert.model_dump_json(exclude_none=True).encode(),
                     headers={"Nats-Msg-Id": alert.event_id})


def _settings(tmp_path: Path, **changes) -> PagerSettings:
    return replace(PagerSettings(ack_bind="127.0.0.1:0", callers_path=tmp_path / "ack-callers.toml", env={}), **changes)


@contextlib.asynccontextmanager
async def _bridge(nats_server, tmp_path: Path, **changes):
    """The bridge with the routes above, a receiver for its destinations, a NATS client."""
    receiver = await Receiver().start()
    nc, js = await connect(nats_server.url)
    try:
        routes = parse_routes(ROUTES.replace("{base}", receiver.base))
        async with run_pager(Settings(), nats_server.url, routes, pager=_settings(tmp_path, **changes)) as pager:
            yield pager, receiver, js
            assert not pager.failed.done()
    finally:
        await nc.close()
        await receiver.stop()


def _token(tmp_path: Path) -> str:
    return tomllib.loads((tmp_path / "ack-callers.toml").read_text())["callers"]["api"]["token"]


async def _acknowledgements(js) -> list[dict]:
    return [json.loads(m.data) for m in await stream_messages(js, "IM_ALERTS")
            if m.subject.endswith(".alert.acknowledged")]


def _relayed_acks(receiver: Receiver) -> list:
    return [r for r in receiver.requests if r.body.get("type") == "alert.acknowledged"]


async def _paged(receiver: Receiver, path: str, alert_id: str, timeout: float = 20) -> float:
    """Wait for the trigger of ``alert_id`` at ``path``; the monotonic time it arrived."""
    async def arrived():
        return any(r.path == path and r.body.get("alert_id") == alert_id and r.body.get("type") == "alert.raised"
                   for r in receiver.requests)

    await wait_for(arrived, timeout=timeout, every=0.02)
    return time.monotonic()


async def test_forged_and_unauthenticated_acknowledgements_change_nothing(nats_server, tmp_path):
    """Issue 14: a text/plain POST from a foreign Origin naming "Anna K., RN" got 202, stopped
    escalation and reached PagerDuty as an acknowledge. Now every variant is refused, nothing is
    published, no destination hears of it, and the alert escalates on time; the caller with its
    token acknowledges, and the audit names that caller."""
    async with _bridge(nats_server, tmp_path) as (pager, receiver, js):
        alert = _alert("pk-forged")
        await _raise(js, alert)
        raised = await _paged(receiver, "/ward", alert.alert_id)
        forged = {"alert_id": alert.alert_id, "via": "board", "by": "Anna K., RN"}
        attempts = [
            dict(content=json.dumps(forged), headers={"Content-Type": "text/plain", "Origin": "https://evil.example"}),
            dict(json=forged),
            dict(json={"alert_id": alert.alert_id}, headers={"Authorization": "Bearer " + "0" * 43}),
            dict(json={"dedup_key": alert.dedup_key}, headers={"Authorization": "Basic YW5uYTphbm5h"}),
            dict(json=forged, headers={"Authorization": f"Bearer {_token(tmp_path)}"}),  # a caller naming someone else
            dict(json={"alert_id": alert.alert_id},
                 headers={"Authorization": f"Bearer {_token(tmp_path)}", "Origin": "https://evil.example"}),
        ]
        async with httpx.AsyncClient(base_url=pager.ack_url) as http:
            answers = [(await http.post("/pager/ack", **a)).status_code for a in attempts]
        assert answers == [401, 401, 401, 401, 400, 403]
        escalated = await _paged(receiver, "/backup", alert.alert_id)  # escalation continued
        assert escalated - raised >= ESCALATE_S - 0.5
        assert _relayed_acks(receiver) == [] and await _acknowledgements(js) == []

        async with httpx.AsyncClient(base_url=pager.ack_url) as http:
            ok = await http.post("/pager/ack", json={"alert_id": alert.alert_id},
                                 headers={"Authorization": f"Bearer {_token(tmp_path)}"})
        assert ok.status_code == 202
        (ack,) = await wait_for(lambda: _acknowledgements(js))
        assert (ack["by"], ack["via"]) == ("api", "api")  # the credential's principal, not a body's name
        await wait_for(lambda: _async(len(_relayed_acks(receiver)) == 2))  # ward and backup hear of it
        audit = [json.loads(m.data) for m in await stream_messages(js, "IM_AUDIT")]
        assert {a["by"] for a in audit if a["type"] == "alert.acknowledged"} == {"api"}


async def _async(value):
    return value


def _pd_hook(key: str, at: str = "9999-01-01T00:00:00Z") -> bytes:
    return json.dumps({"event": {"id": f"EV-{key}-{at}", "event_type": "incident.acknowledged", "occurred_at": at,
                                 "agent": {"summary": "Mallory"}, "data": {"incident_key": key}}}).encode()


def _sign(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("secret", [None, "whsec-test"])
async def test_an_unsigned_pagerduty_webhook_dated_9999_changes_nothing(nats_server, tmp_path, secret):
    """Issue 14: one unsigned ack dated 9999-01-01 escalated every open alert to the failsafe and
    made the bridge forget them. Without a secret the route is off (404); with one, an unsigned
    or wrongly signed body is refused (401). Escalation goes on at its pace; a nurse's later
    acknowledgement is accepted (202)."""
    async with _bridge(nats_server, tmp_path, pagerduty_webhook_secret=secret) as (pager, receiver, js):
        alert = _alert("pk-pd")
        await _raise(js, alert)
        raised = await _paged(receiver, "/ward", alert.alert_id)
        body = _pd_hook(alert.alert_id)
        async with httpx.AsyncClient(base_url=pager.ack_url, headers={"Content-Type": "application/json"}) as http:
            unsigned = await http.post("/pager/pagerduty/ward", content=body)
            forged = await http.post("/pager/pagerduty/ward", content=body,
                                     headers={"X-PagerDuty-Signature": _sign(body, "guessed")})
        expected = 404 if secret is None else 401
        assert (unsigned.status_code, forged.status_code) == (expected, expected)
        escalated = await _paged(receiver, "/backup", alert.alert_id)
        assert escalated - raised >= ESCALATE_S - 0.5  # not "through all tiers in 10 ms"
        assert await _acknowledgements(js) == [] and _relayed_acks(receiver) == []
        async with httpx.AsyncClient(base_url=pager.ack_url) as http:
            nurse = await http.post("/pager/ack", json={"alert_id": alert.alert_id},
                                    headers={"Authorization": f"Bearer {_token(tmp_path)}"})
        assert nurse.status_code == 202  # the bridge still knows the alert


async def test_a_signed_webhook_dated_9999_is_judged_now_and_moves_no_clock(nats_server, tmp_path):
    """A genuine (signed) acknowledgement carrying a time in the future is recorded at the wall
    clock; the bridge's clock stays put, so the next alert escalates at its own pace."""
    secret = "whsec-test"
    async with _bridge(nats_server, tmp_path, pagerduty_webhook_secret=secret) as (pager, receiver, js):
        first = _alert("pk-sig-1")
        await _raise(js, first)
        await _paged(receiver, "/ward", first.alert_id)
        body = _pd_hook(first.alert_id)
        async with httpx.AsyncClient(base_url=pager.ack_url) as http:
            answer = await http.post("/pager/pagerduty/ward", content=body, headers={
                "Content-Type": "application/json", "X-PagerDuty-Signature": _sign(body, secret)})
        assert answer.status_code == 202
        (ack,) = await wait_for(lambda: _acknowledgements(js))
        assert datetime.fromisoformat(ack["occurred_at"].replace("Z", "+00:00")) <= datetime.now(UTC)
        second = _alert("pk-sig-2")
        await _raise(js, second)
        raised = await _paged(receiver, "/ward", second.alert_id)
        escalated = await _paged(receiver, "/backup", second.alert_id)
        assert escalated - raised >= ESCALATE_S - 0.5
        assert pager.runner.engine.clock is not None and pager.runner.engine.clock.year < 9999


async def test_an_acknowledgement_for_an_unknown_alert_changes_nothing(nats_server, tmp_path):
    async with _bridge(nats_server, tmp_path) as (pager, receiver, js):
        alert = _alert("pk-known")
        await _raise(js, alert)
        await _paged(receiver, "/ward", alert.alert_id)
        before = (await js.stream_info("IM_ALERTS")).state.messages
        async with httpx.AsyncClient(base_url=pager.ack_url) as http:
            for key in ({"alert_id": "al-000000000000000000000000"}, {"dedup_key": "pk-known/ses-x/x/c"}):
                answer = await http.post("/pager/ack", json=key, headers={"Authorization": f"Bearer {_token(tmp_path)}"})
                assert answer.status_code == 404
        await asyncio.sleep(0.5)
        assert (await js.stream_info("IM_ALERTS")).state.messages == before
        await _paged(receiver, "/backup", alert.alert_id)  # the known alert escalates as before


async def test_a_taken_port_never_stops_paging(nats_server, tmp_path):
    """Issue 14: a port conflict on the acknowledgement endpoint crash-looped the bridge and
    nothing was paged. Now it pages, an operator alert says the endpoint is down, and once the
    port is free the endpoint listens and the operator alert is resolved."""
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    try:
        async with _bridge(nats_server, tmp_path, ack_bind=f"127.0.0.1:{port}", ack_retry_s=0.5) as (pager, receiver, js):
            assert pager.ack_url is None
            alert = _alert("pk-port")
            await _raise(js, alert)
            await _paged(receiver, "/ward", alert.alert_id)  # paging goes on

            async def operator_alert():
                return next((r for r in receiver.requests if r.path == "/ops"
                             and r.body.get("kind") == "system.ack_endpoint_down"), None)

            down = await wait_for(operator_alert, timeout=20)
            assert down.body["type"] == "alert.raised" and f"127.0.0.1:{port}" in down.body["summary"]
            squatter.close()

            async def resolved():
                return any(r.path == "/ops" and r.body.get("type") == "alert.resolved"
                           and r.body.get("alert_id") == down.body["alert_id"] for r in receiver.requests)

            await wait_for(resolved, timeout=20)
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"http://127.0.0.1:{port}/pager/ack", json={"alert_id": alert.alert_id},
                                         headers={"Authorization": f"Bearer {_token(tmp_path)}"})
            assert answer.status_code == 202
    finally:
        squatter.close()
