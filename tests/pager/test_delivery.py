"""Adapters and delivery against real loopback receivers: payload shape per adapter,
idempotency keys, one queue per destination (a refusing or hanging receiver costs the others
nothing), retries with the same key, a destination down past its cap (its requests reported
``failed``, an operator condition raised, retried until it answers), order and no duplicates
(docs/paging.md, "Delivery")."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from datetime import timedelta

import httpx
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from infusion_monitor.schemas.vocab import AlertKind, DeliveryState, Rule, Severity
from infusion_monitor.engine.alerts import make_alert
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.pager.adapters import build_request, pagerduty_body, webhook_body
from infusion_monitor.pager.core import DOWN
from infusion_monitor.pager.delivery import Dispatcher, HttpTransport, backoff, make_dispatcher
from infusion_monitor.pager.routes import PAGERDUTY_SEVERITY, Destination
from tests.pager.fixtures import T0, Driver, Reported, ack, alert, closed, routes
from tests.pager.receiver import Receiver

ENV = {"PD1_KEY": "rk-secret-1", "PD2_KEY": "rk-secret-2"}
LOG = structlog.get_logger("test")


def _pages(*events, r=None, until=None):
    d = Driver(r or routes()).send(*events)
    if until is not None:
        d.until(until)
    return d.of_type("page.requested")


def _fast(r, **changes):
    """The same routes with quick retries and a short cap (bounded; receivers are on loopback)."""
    dests = {name: d.model_copy(update={"backoff_initial_s": 0.02, "backoff_max_s": 0.1, "timeout_s": 2.0,
                                        "give_up_after": timedelta(seconds=1), "max_attempts": 1000, **changes})
             for name, d in r.destinations.items()}
    return r.model_copy(update={"destinations": dests})


async def _until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("severity", "expected"), [
    (Severity.CRITICAL, "critical"), (Severity.HIGH, "error"), (Severity.MEDIUM, "warning"),
    (Severity.LOW, "info"), (Severity.INFO, "info"),
])
def test_pagerduty_severity_mapping(severity, expected):
    assert PAGERDUTY_SEVERITY[severity] == expected


def test_pagerduty_trigger_shape_tells_only_kind_severity_site_chair_link_and_alert_id():
    a = alert(0, site="site-north", evidence={"systolic_mmhg": 82, "pump_id": "pump-N04"})
    page = _pages(a)[0]
    body = pagerduty_body(page, routes(), "rk-1")
    assert set(body) == {"routing_key", "event_action", "dedup_key", "payload", "links", "client"}
    assert (body["routing_key"], body["event_action"], body["dedup_key"]) == ("rk-1", "trigger", a.alert_id)
    assert body["payload"] == {
        "summary": "CRITICAL discontinue.hypersensitivity at site-north, chair pump-N04", "source": "site-north",
        "severity": "critical", "component": "discontinue.hypersensitivity", "group": "site-north",
        "class": "discontinue.hypersensitivity", "custom_details": {
            "alert_id": a.alert_id, "kind": "discontinue.hypersensitivity", "severity": "critical",
            "site_id": "site-north", "chair": "pump-N04", "tier": 1, "page": 1}}
    assert body["links"] == [{"href": f"https://board.test/alerts/{a.alert_id}", "text": f"Alert {a.alert_id}"}]


def test_pagerduty_source_is_the_site_and_acknowledge_resolve_are_minimal():
    a = alert(0, site="site-north")
    pages = _pages(a, ack(a.alert_id, 1), closed(2))
    trigger, acknowledge, resolve = (pagerduty_body(p, routes(), "rk") for p in pages)
    assert trigger["payload"]["source"] == "site-north"
    assert acknowledge == {"routing_key": "rk", "event_action": "acknowledge", "dedup_key": a.alert_id}
    assert resolve == {"routing_key": "rk", "event_action": "resolve", "dedup_key": a.alert_id}


def test_webhook_sends_the_minimal_lifecycle():
    a = alert(0, Severity.MEDIUM)
    trigger, acknowledge, resolve = _pages(a, ack(a.alert_id, 1, note="on my way"), closed(2))
    dest = Destination(adapter="webhook", url="http://x")
    link = f"https://board.test/alerts/{a.alert_id}"
    base = {"alert_id": a.alert_id, "kind": "discontinue.hypersensitivity", "severity": "medium", "link": link}
    assert webhook_body(trigger, routes(), dest) == {"type": "alert.raised", "event_action": "trigger", **base}
    assert webhook_body(acknowledge, routes(), dest) == {"type": "alert.acknowledged", "event_action": "acknowledge", **base}
    assert webhook_body(resolve, routes(), dest) == {"type": "alert.resolved", "event_action": "resolve", **base,
                                                     "reason": "session_closed"}
    opted_in = Destination(adapter="webhook", url="http://x", include_patient_key=True)
    assert webhook_body(trigger, routes(), opted_in)["patient_id"] == "pk-1"


@settings(max_examples=60, deadline=None)
@given(summary=st.text(min_size=1, max_size=80), note=st.text(min_size=1, max_size=40),
       session=st.text(alphabet="0123456789abcdef", min_size=12, max_size=30).map(lambda s: f"ses-{s}"))
def test_third_party_requests_never_carry_the_patient_key_session_summary_or_evidence(summary, note, session):
    """Issue 14, privacy: whatever the alert says, PagerDuty and webhooks get none of it."""
    secret_reading = 87.25
    a = make_alert(patient_id="pk-secret-patient-key", at=T0, kind=AlertKind.DISCONTINUE_HYPERSENSITIVITY,
                   severity=Severity.CRITICAL, rule=Rule.R7, condition="c", summary=summary, action="Stop it",
                   evidence={"systolic_mmhg": secret_reading, "note": note}, session_id=session, site_id="site-a")
    patient = "pk-secret-patient-key"
    for page in _pages(a, ack(a.alert_id, 1, patient=patient, note=note), closed(2, session=session, patient=patient)):
        for dest in (Destination(adapter="pagerduty", url="http://x/pd", routing_key_env="PD1_KEY"),
                     Destination(adapter="webhook", url="http://x/hook")):
            request = build_request(page, dest, routes(), ENV)
            wire = request.body.decode() + json.dumps(request.headers)
            for leaked in ("pk-secret-patient-key", session, str(secret_reading), a.dedup_key):
                assert leaked not in wire, (dest.adapter, page.event_action, leaked)
            if len(summary.strip()) >= 6:
                assert summary not in wire and (len(note.strip()) < 6 or note not in wire)


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
    assert backoff(10_000, 0.25, 15.0) == 15.0  # no overflow however long a destination stays down


# -- HTTP transport: what each answer means ------------------------------------------------------

@pytest.mark.parametrize(("script", "delivered", "retry"), [
    ([200], True, False), ([202], True, False), ([500], False, True), ([503], False, True),
    ([429], False, True), ([408], False, True), ([401], False, True), ([404], False, True),
    ([400], False, False), ([422], False, False),
])
async def test_http_answers_are_classified(script, delivered, retry):
    receiver = await Receiver(script=list(script)).start()
    try:
        r = _fast(routes(receiver.base))
        async with httpx.AsyncClient() as client:
            outcome = await HttpTransport(r.destinations["nurse"], r, client).send(_pages(alert(0, Severity.MEDIUM), r=r)[0])
        assert (outcome.delivered, outcome.retry, outcome.status_code) == (delivered, retry, script[0])
    finally:
        await receiver.stop()


async def test_http_refused_connection_and_timeout_are_retried():
    hanging = Receiver()
    hanging.hold = asyncio.Event()
    await hanging.start()
    r = _fast(routes(f"http://127.0.0.1:{Receiver().port}"), timeout_s=0.3)  # nobody listens there
    try:
        async with httpx.AsyncClient() as client:
            refused = await HttpTransport(r.destinations["nurse"], r, client).send(_pages(alert(0, Severity.MEDIUM), r=r)[0])
            slow = _fast(routes(hanging.base), timeout_s=0.3)
            timed_out = await HttpTransport(slow.destinations["nurse"], slow, client).send(
                _pages(alert(0, Severity.MEDIUM), r=slow)[0])
        assert (refused.delivered, refused.retry, refused.error) == (False, True, "connect")
        assert (timed_out.delivered, timed_out.retry, timed_out.error) == (False, True, "timeout")
    finally:
        hanging.hold.set()
        await hanging.stop()


# -- workers: one queue per destination ------------------------------------------------------------

async def _dispatcher(r, client, reported):
    dispatcher = make_dispatcher(r, client, MonitorConfig(), reported, LOG, env=ENV)
    dispatcher.start()
    return dispatcher


async def test_each_adapter_reaches_a_real_receiver_and_reports_sent():
    receiver = await Receiver().start()
    reported = Reported()
    try:
        r = _fast(routes(receiver.base))
        a, m = alert(0), alert(0, Severity.MEDIUM, patient="pk-2")
        pages = _pages(a, r=r) + _pages(m, r=r)
        async with httpx.AsyncClient() as client:
            dispatcher = await _dispatcher(r, client, reported)
            try:
                dispatcher.submit(pages)
                await _until(lambda: len(reported.states_of(DeliveryState.SENT)) == 2)
            finally:
                await dispatcher.stop()
        got = {x.path: x for x in receiver.accepted()}
        assert got["/pd1"].body["routing_key"] == "rk-secret-1" and got["/pd1"].body["dedup_key"] == a.alert_id
        assert got["/nurse"].body["type"] == "alert.raised" and got["/nurse"].body["alert_id"] == m.alert_id
        assert got["/nurse"].headers["idempotency-key"] == pages[1].event_id
        assert [a.delivered for a in reported.attempts] == [True, True]
    finally:
        await receiver.stop()


async def test_retries_through_500s_and_refused_connections_then_delivers_in_order_once():
    receiver = Receiver(script=[500, 503, 500])  # not started yet: connections are refused
    r = _fast(routes(receiver.base), give_up_after=timedelta(seconds=60))
    alerts = [alert(0, Severity.MEDIUM, patient=f"pk-{i}") for i in range(3)]
    pages = [p for a in alerts for p in _pages(a, r=r)]
    reported = Reported()
    async with httpx.AsyncClient() as client:
        dispatcher = await _dispatcher(r, client, reported)
        try:
            dispatcher.submit(pages)
            dispatcher.submit(pages[:1])  # the same request again: queued once
            await _until(lambda: sum(1 for a in reported.attempts if a.error == "connect") >= 3)
            await receiver.start()  # back, but answering 500 three times first
            await _until(lambda: len(reported.states_of(DeliveryState.SENT)) == 3, timeout=30)
        finally:
            await dispatcher.stop()
            await receiver.stop()
    assert {a.error for a in reported.attempts if not a.delivered and a.status_code is None} == {"connect"}
    assert [a.status_code for a in reported.attempts if a.status_code is not None] == [500, 503, 500, 202, 202, 202]
    received = receiver.accepted()
    assert [x.body["alert_id"] for x in received] == [a.alert_id for a in alerts]  # in order
    assert len({x.headers["idempotency-key"] for x in received}) == len(received) == 3  # once each
    assert [s.state for s in reported.states if s.page.event_id == pages[0].event_id] == [
        DeliveryState.RETRYING, DeliveryState.SENT]
    assert not reported.conditions_active()  # never down: the cap (60 s) was not reached


async def _deliver_two(receiver: Receiver, reported: Reported) -> tuple[Any, Any]:
    """Two medium pages (pk-1 then pk-2) through one dispatcher to the receiver, until both are
    reported; returns them in that order."""
    r = _fast(routes(receiver.base))
    first, second = (_pages(alert(0, Severity.MEDIUM, patient=p), r=r)[0] for p in ("pk-1", "pk-2"))
    async with httpx.AsyncClient() as client:
        dispatcher = await _dispatcher(r, client, reported)
        try:
            dispatcher.submit([first, second])
            await _until(lambda: len(reported.states) == 2)
        finally:
            await dispatcher.stop()
    return first, second


async def test_a_refused_request_is_reported_failed_and_the_queue_goes_on():
    receiver = await Receiver(script=[400]).start()
    reported = Reported()
    try:
        first, second = await _deliver_two(receiver, reported)
        assert [(s.page.event_id, s.state, s.reason) for s in reported.states] == [
            (first.event_id, DeliveryState.FAILED, "refused 400"), (second.event_id, DeliveryState.SENT, None)]
        assert [x.status for x in receiver.requests] == [400, 202]  # not retried
    finally:
        await receiver.stop()


@pytest.mark.parametrize("failure", ["refusing", "hanging", "answering 503"])
async def test_a_failing_destination_costs_the_others_nothing_and_is_marked_down(failure):
    """The healthy destination's pages arrive at once while the other retries; past its cap the
    failing one is down: its queued requests are reported failed (their triggers escalate), an
    operator condition is raised; it is retried until it answers, then everything arrives in
    order, once per key, and the condition ends."""
    healthy = await Receiver().start()
    failing = Receiver(script=[503] * 10_000 if failure == "answering 503" else [])
    if failure == "hanging":
        failing.hold = asyncio.Event()
    if failure != "refusing":
        await failing.start()
    r = _fast(routes(healthy.base), timeout_s=0.3)
    r = r.model_copy(update={"destinations": {**r.destinations, "pd2": r.destinations["pd2"].model_copy(
        update={"url": f"{failing.base}/pd2"})}})
    reported = Reported()
    tier2 = [p for i in range(3) for p in _pages(alert(0, patient=f"pk-f{i}"), r=r, until=10) if p.destination == "pd2"]
    critical = [_pages(alert(0, patient=f"pk-h{i}"), r=r)[0] for i in range(3)]  # to pd1, the healthy one
    async with httpx.AsyncClient() as client:
        dispatcher = await _dispatcher(r, client, reported)
        try:
            dispatcher.submit(tier2)
            started = time.monotonic()
            dispatcher.submit(critical)
            await _until(lambda: len(healthy.accepted()) == 3, timeout=5)
            healthy_s = time.monotonic() - started
            await _until(lambda: reported.conditions_active() == ["pd2"], timeout=15)
            down = {s.page.event_id for s in reported.states_of(DeliveryState.FAILED) if s.reason == DOWN}
            assert down == {p.event_id for p in tier2}  # every queued request reported, each once
            late = _pages(alert(0, patient="pk-late"), r=r, until=10)[-1]
            dispatcher.submit([late])  # arriving while down: reported at once
            await _until(lambda: late.event_id in {s.page.event_id for s in reported.states_of(DeliveryState.FAILED)})
            # it comes back
            if failure == "hanging":
                failing.hold.set()
                failing.hold = None
            elif failure == "answering 503":
                failing.script.clear()
            else:
                await failing.start()
            await _until(lambda: len(failing.unique()) == 4, timeout=15)
            await _until(lambda: ("pd2", False) in reported.conditions[reported.conditions.index(("pd2", True)):],
                         timeout=5)
        finally:
            await dispatcher.stop()
            healthy.hold = None
            await healthy.stop()
            await failing.stop()
    print(f"\nhealthy destination's 3 pages while pd2 is {failure}: {healthy_s * 1000:.0f} ms")
    assert healthy_s < 5.0  # liveness bound only; the benchmark measures the latency
    assert [x.headers["idempotency-key"] for x in failing.unique()] == [p.event_id for p in (*tier2, late)]
    assert set(failing.arrivals) == {p.event_id for p in (*tier2, late)}  # only these keys, whatever the retries
    assert [c for c in reported.conditions if c[0] == "pd1"] in ([], [("pd1", False)])  # pd1 never down
    assert reported.conditions[-1] == ("pd2", False)


async def test_an_unconfigured_destination_is_reported_failed():
    reported = Reported()
    page = _pages(alert(0))[0].model_copy(update={"destination": "gone"})
    Dispatcher({}, reported, LOG).submit([page])
    assert [(s.state, s.reason) for s in reported.states] == [(DeliveryState.FAILED, "unconfigured")]


async def test_a_defect_outside_the_transport_is_reported_failed_and_the_queue_goes_on():
    """A reporter that fails on one attempt record (a defect) must not stop the destination's queue
    silently: the request is reported failed (so its alert escalates) and the next one is sent."""
    receiver = await Receiver().start()

    class Flaky(Reported):
        def attempt(self, attempt: Any) -> None:
            if attempt.page.patient_id == "pk-1":
                raise RuntimeError("a defect in the reporter")
            super().attempt(attempt)

    reported = Flaky()
    try:
        first, second = await _deliver_two(receiver, reported)
        assert [(s.page.event_id, s.state, s.reason) for s in reported.states] == [
            (first.event_id, DeliveryState.FAILED, "internal"), (second.event_id, DeliveryState.SENT, None)]
    finally:
        await receiver.stop()
