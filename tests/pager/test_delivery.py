"""Adapters and HTTP delivery against a real loopback receiver: payload shape per adapter,
idempotency keys, retries while the receiver answers 500 or refuses connections, delivery after
it comes back, order per destination, no duplicates (docs/paging.md, "Delivery")."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import structlog

from services.pager.adapters import build_request, pagerduty_body, webhook_body
from services.pager.delivery import Deliverer, DeliveryFailed, backoff
from services.pager.routes import PAGERDUTY_SEVERITY, Destination
from schemas.vocab import Severity
from tests.pager.fixtures import Driver, ack, alert, closed, routes
from tests.pager.receiver import Receiver

ENV = {"PD1_KEY": "rk-secret-1", "PD2_KEY": "rk-secret-2"}
LOG = structlog.get_logger("test")


def _pages(*events, r=None, until=None):
    d = Driver(r or routes()).send(*events)
    if until is not None:
        d.until(until)
    return d.of_type("page.requested")


def _fast(r, **changes):
    """The same routes with quick retries (bounded; the receiver is on loopback)."""
    dests = {name: d.model_copy(update={"backoff_initial_s": 0.02, "backoff_max_s": 0.1, "timeout_s": 2.0, **changes})
             for name, d in r.destinations.items()}
    return r.model_copy(update={"destinations": dests})


@pytest.mark.parametrize(("severity", "expected"), [
    (Severity.CRITICAL, "critical"), (Severity.HIGH, "error"), (Severity.MEDIUM, "warning"),
    (Severity.LOW, "info"), (Severity.INFO, "info"),
])
def test_pagerduty_severity_mapping(severity, expected):
    assert PAGERDUTY_SEVERITY[severity] == expected


def test_pagerduty_trigger_shape():
    a = alert(0)
    page = _pages(a)[0]
    body = pagerduty_body(page, routes(), "rk-1")
    assert set(body) == {"routing_key", "event_action", "dedup_key", "payload", "links", "client"}
    assert (body["routing_key"], body["event_action"], body["dedup_key"]) == ("rk-1", "trigger", a.dedup_key)
    payload = body["payload"]
    assert payload == {
        "summary": "Systolic 82 mmHg (R7)", "source": "infusion-monitor", "severity": "critical",
        "timestamp": "2025-03-03T10:00:00Z", "component": "discontinue.hypersensitivity", "group": "s1",
        "class": "R7", "custom_details": {
            "alert_id": a.alert_id, "patient_id": "pk-1", "session_id": "s1", "rule": "R7",
            "kind": "discontinue.hypersensitivity", "action": "Stop the infusion", "outside_window": False,
            "tier": 1, "page": 1, "evidence": {"systolic_mmhg": 82}}}
    assert body["links"] == [{"href": "https://board.test/sessions/s1", "text": "Session s1"},
                             {"href": f"https://board.test/alerts/{a.alert_id}", "text": f"Alert {a.alert_id}"}]


def test_pagerduty_source_is_the_site_and_acknowledge_resolve_are_minimal():
    a = alert(0, site="site-north")
    pages = _pages(a, ack(a.alert_id, 1), closed(2))
    trigger, acknowledge, resolve = (pagerduty_body(p, routes(), "rk") for p in pages)
    assert trigger["payload"]["source"] == "site-north"
    assert acknowledge == {"routing_key": "rk", "event_action": "acknowledge", "dedup_key": a.dedup_key}
    assert resolve == {"routing_key": "rk", "event_action": "resolve", "dedup_key": a.dedup_key}


def test_webhook_sends_the_contract_events():
    a = alert(0, Severity.MEDIUM)
    trigger, acknowledge, resolve = _pages(a, ack(a.alert_id, 1, note="on my way"), closed(2))
    assert webhook_body(trigger) == {**trigger.alert}
    assert webhook_body(trigger)["type"] == "alert.raised" and webhook_body(trigger)["dedup_key"] == a.dedup_key
    assert webhook_body(acknowledge)["type"] == "alert.acknowledged" and webhook_body(acknowledge)["note"] == "on my way"
    assert webhook_body(resolve) == {"type": "alert.resolved", "event_id": resolve.lifecycle["event_id"],
                                     "occurred_at": "2025-03-03T10:02:00Z", "patient_id": "pk-1",
                                     "alert_id": a.alert_id, "reason": "session_closed"}


def test_request_headers_and_secrets():
    page = _pages(alert(0))[0]
    dest = Destination(adapter="pagerduty", url="http://x/pd", routing_key_env="PD1_KEY",
                       headers_env={"Authorization": "PD_AUTH"})
    request = build_request(page, dest, routes(), {**ENV, "PD_AUTH": "Token t"})
    assert request.headers["Idempotency-Key"] == page.event_id
    assert request.headers["Authorization"] == "Token t"
    assert request.headers["X-Im-Event-Action"] == "trigger" and request.headers["X-Im-Sequence"] == "1"
    assert b"rk-secret-1" in request.body  # only in the body sent to the destination


def test_backoff_is_exponential_and_capped():
    assert [backoff(n, 0.25, 2.0) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


async def test_delivers_each_adapter_to_a_real_receiver():
    receiver = await Receiver().start()
    try:
        r = _fast(routes(receiver.base))
        a, m = alert(0), alert(0, Severity.MEDIUM, patient="pk-2")
        pages = _pages(a, r=r) + _pages(m, r=r)
        async with httpx.AsyncClient() as client:
            attempts = await Deliverer(r, client, LOG, env=ENV).deliver_all(pages)
        assert [x.delivered for x in attempts] == [True, True]
        got = {x.path: x for x in receiver.accepted()}
        assert got["/pd1"].body["routing_key"] == "rk-secret-1" and got["/pd1"].body["dedup_key"] == a.dedup_key
        assert got["/nurse"].body["type"] == "alert.raised" and got["/nurse"].body["dedup_key"] == m.dedup_key
        assert got["/nurse"].headers["idempotency-key"] == pages[1].event_id
    finally:
        await receiver.stop()


async def test_retries_through_500s_and_refused_connections_then_delivers_in_order_once():
    receiver = Receiver(script=[500, 503, 500])  # not started yet: connections are refused
    r = _fast(routes(receiver.base), max_attempts=200)
    alerts = [alert(0, patient=f"pk-{i}") for i in range(3)]
    pages = [p for a in alerts for p in _pages(a, r=r)]
    async with httpx.AsyncClient() as client:
        deliverer = Deliverer(r, client, LOG, env=ENV)
        attempts: list = []
        delivering = asyncio.create_task(deliverer.deliver_all(pages, attempts=attempts))
        for _ in range(500):  # bounded: until a few refused attempts happened (at most 10 s)
            if sum(1 for x in attempts if x.error == "connect") >= 3:
                break
            await asyncio.sleep(0.02)
        assert not delivering.done()
        await receiver.start()  # back, but answering 500 three times first
        try:
            await asyncio.wait_for(delivering, 30)
        finally:
            await receiver.stop()
    errors = {x.error for x in attempts if not x.delivered and x.status_code is None}
    assert errors == {"connect"}
    assert [x.status_code for x in attempts if x.status_code is not None] == [500, 503, 500, 202, 202, 202]
    received = receiver.accepted()
    assert [x.body["dedup_key"] for x in received] == [a.dedup_key for a in alerts]  # in order
    assert len({x.headers["idempotency-key"] for x in received}) == len(received) == 3  # once each


async def test_gives_up_after_max_attempts_and_refusals_are_not_retried():
    receiver = Receiver(script=[500, 500, 400])
    await receiver.start()
    try:
        r = _fast(routes(receiver.base), max_attempts=2)
        a, b = alert(0), alert(0, patient="pk-2")
        async with httpx.AsyncClient() as client:
            deliverer = Deliverer(r, client, LOG, env=ENV)
            with pytest.raises(DeliveryFailed):
                await deliverer.deliver_all(_pages(a, r=r))
            refused = await deliverer.deliver(_pages(b, r=r)[0], [])
        assert (refused.delivered, refused.status_code, refused.retry) == (False, 400, False)
        assert [x.status for x in receiver.requests] == [500, 500, 400]
    finally:
        await receiver.stop()
