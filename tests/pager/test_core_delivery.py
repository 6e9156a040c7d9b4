"""The pager core and what became of its requests (docs/paging.md, "Delivery" and "Operator
alerts"): the outbox, a trigger nobody can receive escalates at once, operator alerts with their
own lifecycle, a route's FHIR copy."""

from __future__ import annotations

import pytest

from infusion_monitor.schemas.vocab import Severity
from infusion_monitor.pager.core import DOWN, OPERATOR_KEY
from tests.pager.fixtures import Driver, ack, alert, closed, condition, delivery, minutes, routes


def _pending(d: Driver, patient: str = "pk-1") -> set[str]:
    return {k for a in d.engine.state_of("pager", patient).alerts.values() for k in a.pending}


# -- the outbox -------------------------------------------------------------------------------

def test_every_request_waits_in_the_outbox_until_it_was_taken_or_refused_for_good():
    a = alert(0)
    d = Driver().send(a)
    (trigger,) = d.of_type("page.requested")
    assert _pending(d) == {trigger.event_id}
    d.send(delivery(trigger, "retrying", 0.1, "connect"), delivery(trigger, "failed", 0.5, DOWN))
    escalated = d.of_type("page.requested")[1]  # the failure escalated to tier 2 at once
    assert _pending(d) == {trigger.event_id, escalated.event_id}  # the first is still retried: still owed
    d.send(delivery(trigger, "sent", 1), delivery(escalated, "sent", 1))
    assert _pending(d) == set()
    d.send(ack(a.alert_id, 2))
    acknowledgements = d.of_type("page.requested")[2:]
    assert _pending(d) == {p.event_id for p in acknowledgements}
    for page in acknowledgements:
        d.send(delivery(page, "failed", 2.1, "refused 400"))  # refused for good: not owed any more
    assert _pending(d) == set()


def test_the_outbox_rebuilds_the_same_requests():
    from infusion_monitor.pager.core import page_from

    d = Driver().send(alert(0)).until(12)
    state = d.engine.state_of("pager", "pk-1")
    rebuilt = sorted((page_from(a, e) for a in state.alerts.values() for e in a.pending.values()),
                     key=lambda p: (p.occurred_at, p.destination))
    assert [p.model_dump_json() for p in rebuilt] == [p.model_dump_json() for p in d.of_type("page.requested")]


# -- a trigger nobody can receive escalates at once --------------------------------------------

@pytest.mark.parametrize(("state", "reason", "action", "at", "escalates"), [
    ("failed", DOWN, "from-page", 1, True),          # the destination is down past its cap
    ("failed", "refused 400", "from-page", 1, True),  # refused for good
    ("undeliverable", None, None, 1, True),          # IHE ACM PCD-05
    ("rejected", None, None, 1, True),               # the named recipient rejected it
    ("retrying", "connect", "from-page", 1, False),  # not yet
    ("sent", None, "from-page", 1, False),
    ("delivered", None, None, 1, False),
    ("read", None, None, 1, False),
])
def test_undeliverable_triggers_escalate_at_once(state, reason, action, at, escalates):
    a = alert(0)
    d = Driver().send(a)
    trigger = d.of_type("page.requested")[0]
    d.send(delivery(trigger, state, at, reason, action=action)).until(240)
    escalations = [(e.to_tier, e.occurred_at) for e in d.of_type("alert.escalated")]
    if escalates:  # tier 2 at once, the failsafe 10 min after it (tier 2's own escalate_after)
        assert escalations == [(2, minutes(at)), (3, minutes(at + 10))]
        assert ("pd1", "trigger", 2) not in [(p[1], p[2], p[3]) for p in d.pages()]  # no re-page of the dead tier
    else:
        assert escalations == [(2, minutes(10)), (3, minutes(20))]


def test_only_a_failure_in_the_current_tier_escalates_and_only_once():
    a = alert(0)
    d = Driver().send(a).until(11)  # tier 2 since minute 10
    pd1_trigger = d.of_type("page.requested")[0]
    d.send(delivery(pd1_trigger, "failed", 11.5, DOWN))  # tier 1's destination: too late to matter
    assert [e.to_tier for e in d.of_type("alert.escalated")] == [2]
    pd2_trigger = [p for p in d.of_type("page.requested") if p.destination == "pd2"][0]
    d.send(delivery(pd2_trigger, "failed", 12, DOWN), delivery(pd2_trigger, "undeliverable", 12.5, action=None))
    assert [(e.to_tier, e.failsafe, e.occurred_at) for e in d.of_type("alert.escalated")] == [
        (2, False, minutes(10)), (3, True, minutes(12))]


@pytest.mark.parametrize("after", ["acknowledged", "resolved"])
def test_a_failure_after_the_alert_was_handled_escalates_nothing(after):
    a = alert(0)
    d = Driver().send(a)
    trigger = d.of_type("page.requested")[0]
    d.send(ack(a.alert_id, 1) if after == "acknowledged" else closed(1))
    before = len(d.of_type("alert.escalated"))
    d.send(delivery(trigger, "failed", 2, DOWN))
    assert len(d.of_type("alert.escalated")) == before


def test_a_failed_acknowledge_or_resolve_escalates_nothing():
    a = alert(0)
    d = Driver().send(a, ack(a.alert_id, 1))
    acknowledge = d.of_type("page.requested")[-1]
    d.send(delivery(acknowledge, "failed", 2, DOWN)).until(240)
    assert d.of_type("alert.escalated") == []


def test_a_delivery_report_for_an_unknown_alert_is_a_warning():
    page = Driver().send(alert(0)).of_type("page.requested")[0]
    d = Driver().send(delivery(page, "sent", 1))
    assert [n.reason for n in d.notices] == ["delivery report of an alert the pager does not know"]


# -- operator alerts ---------------------------------------------------------------------------

def test_a_destination_down_raises_one_operator_alert_to_the_failsafe_and_resolves_it():
    d = Driver().send(condition(1, True), condition(2, True))  # the same condition twice: one alert
    (raised,) = d.of_type("alert.raised")
    assert (raised.patient_id, raised.kind.value, raised.rule.value, raised.severity.value) == (
        OPERATOR_KEY, "system.destination_down", "SYS", "high")
    assert raised.dedup_key == "system.destination_down/pd2" and raised.evidence["destination"] == "pd2"
    assert [(p.destination, p.event_action, p.route) for p in d.of_type("page.requested")] == [
        ("fs", "trigger", "operator")]
    d.send(condition(5, False), condition(6, False))  # ends once
    assert [(r.alert_id, r.reason.value, r.by) for r in d.of_type("alert.resolved")] == [
        (raised.alert_id, "cleared", "pager")]
    assert [p.event_action for p in d.of_type("page.requested")] == ["trigger", "resolve"]
    d.send(condition(9, True))  # a new episode: a new alert
    assert len({a.alert_id for a in d.of_type("alert.raised")}) == 2


def test_an_operator_alert_never_goes_to_the_destination_it_is_about():
    d = Driver().send(condition(1, True, subject="fs"))  # the failsafe itself is down
    assert d.of_type("page.requested") == []
    assert any("has no destination left" in n.reason for n in d.notices)


def test_operator_destinations_and_re_pages_are_configurable():
    from infusion_monitor.pager.routes import OperatorRoute

    r = routes(operator=OperatorRoute(destinations=["nurse", "fs"], repage_after="10m", repeats=2))
    d = Driver(r).send(condition(0, True)).until(60)
    assert d.pages() == [(0, "nurse", "trigger", 1), (0, "fs", "trigger", 1), (10, "nurse", "trigger", 2),
                         (10, "fs", "trigger", 2), (20, "nurse", "trigger", 3), (20, "fs", "trigger", 3)]


def test_an_operator_alert_is_acknowledged_like_any_other():
    d = Driver().send(condition(0, True))
    (raised,) = d.of_type("alert.raised")
    d.send(ack(raised.alert_id, 3, patient=OPERATOR_KEY, by="it-oncall"))
    assert d.pages()[-1] == (3, "fs", "acknowledge", 2)


def test_the_operator_route_name_is_reserved():
    from infusion_monitor.pager.routes import parse_routes
    from tests.pager.fixtures import ROUTES_TOML

    with pytest.raises(ValueError, match="reserved"):
        parse_routes(ROUTES_TOML.replace('name = "nurse-north"', 'name = "operator"').replace("{base}", "http://x"))


# -- a route's FHIR copy and superseding ---------------------------------------------------------

def _with_fhir():
    from infusion_monitor.pager.routes import Destination

    r = routes()
    dests = {**r.destinations, "ehr": Destination(adapter="fhir", url="http://127.0.0.1:9/fhir")}
    rts = [rt.model_copy(update={"fhir": "ehr"}) if rt.name == "emergency" else rt for rt in r.routes]
    return routes(destinations=dests, routes=rts)


def test_the_fhir_copy_gets_every_alert_once_and_its_acknowledgement_and_resolution():
    a = alert(0)
    d = Driver(_with_fhir()).send(a).until(12).send(ack(a.alert_id, 13, via="pager", destination="pd2"), closed(20))
    ehr = [(p[0], p[2]) for p in d.pages() if p[1] == "ehr"]
    assert ehr == [(0, "trigger"), (13, "acknowledge"), (20, "resolve")]  # no re-page, no escalation copy


def test_a_failed_fhir_copy_escalates_nothing():
    d = Driver(_with_fhir()).send(alert(0))
    fhir = [p for p in d.of_type("page.requested") if p.destination == "ehr"][0]
    d.send(delivery(fhir, "failed", 1, DOWN)).until(5)
    assert d.of_type("alert.escalated") == []


def test_a_superseding_alert_carries_the_severity_it_replaces():
    high = alert(0, Severity.HIGH, condition="mild")
    critical = alert(2, Severity.CRITICAL, condition="severe", supersedes=high.alert_id)
    d = Driver().send(high, critical)
    first_of_critical = [p for p in d.of_type("page.requested") if p.alert_id == critical.alert_id][0]
    assert first_of_critical.superseded_severity == Severity.HIGH
