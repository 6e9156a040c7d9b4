"""FHIR R4 CommunicationRequest per alert (docs/paging.md, "FHIR"): a valid resource (checked
with fhir.resources), its status through the alert's life, priority from severity, the session
in ``about``, the rule in ``reasonCode``, a conditional update a real receiver gets."""

from __future__ import annotations

import httpx
import pytest
from fhir.resources.R4B.communicationrequest import CommunicationRequest

from infusion_monitor.schemas.vocab import Severity
from infusion_monitor.pager.delivery import HttpTransport
from infusion_monitor.pager.fhir import ALERT_SYSTEM, communication_request, request_path
from infusion_monitor.pager.routes import Destination
from tests.pager.fixtures import Driver, ack, alert, closed, routes
from tests.pager.receiver import Receiver


def _routes(base: str = "http://127.0.0.1:9"):
    r = routes()
    dests = {**r.destinations, "ehr": Destination(adapter="fhir", url=f"{base}/fhir/")}
    everything = [rt.model_copy(update={"fhir": "ehr", "severities": list(Severity)}) if rt.name == "emergency" else rt
                  for rt in r.routes]
    return routes(destinations=dests, routes=everything)


def _fhir_pages(*events, r=None):
    return [p for p in Driver(r or _routes()).send(*events).of_type("page.requested") if p.destination == "ehr"]


@pytest.mark.parametrize(("severity", "priority"), [
    (Severity.CRITICAL, "stat"), (Severity.HIGH, "asap"), (Severity.MEDIUM, "urgent"), (Severity.LOW, "routine"),
    (Severity.INFO, "routine"),
])
def test_priority_follows_severity(severity, priority):
    (page,) = _fhir_pages(alert(0, severity))
    assert communication_request(page)["priority"] == priority


def test_a_valid_resource_about_the_session_with_the_rule_as_reason():
    a = alert(0)
    (page,) = _fhir_pages(a)
    resource = communication_request(page)
    CommunicationRequest.model_validate(resource)  # raises if not valid FHIR R4(B)
    assert resource["identifier"] == [{"system": ALERT_SYSTEM, "value": a.alert_id}]
    assert resource["status"] == "active"
    assert resource["about"][0]["identifier"]["value"] == "s1" and resource["about"][0]["type"] == "Encounter"
    assert resource["reasonCode"][0]["coding"][0]["code"] == "R7"
    assert resource["subject"]["identifier"]["value"] == "pk-1"  # the pseudonymous key, never a name
    assert resource["payload"][0]["contentString"] == a.summary


@pytest.mark.parametrize(("acknowledged", "statuses"), [
    (True, ["active", "completed", "completed"]),
    (False, ["active", "revoked"]),  # resolved before anyone acknowledged it
])
def test_status_through_the_alert_s_life(acknowledged, statuses):
    a = alert(0)
    events = [a, ack(a.alert_id, 2, note="on my way")] if acknowledged else [a]
    pages = _fhir_pages(*events, closed(5))
    resources = [communication_request(p) for p in pages]
    for resource in resources:
        CommunicationRequest.model_validate(resource)
    assert [r["status"] for r in resources] == statuses
    last_notes = [n["text"] for n in resources[-1].get("note", [])]
    if acknowledged:
        assert last_notes == ["Acknowledged by dr-a", "Resolved: session_closed"]
        assert resources[1]["note"][0]["text"] == "Acknowledged by dr-a via board: on my way"
    else:
        assert last_notes == ["Resolved: session_closed"]


def test_a_superseding_alert_replaces_the_earlier_request():
    first = alert(0, Severity.HIGH, condition="mild")
    second = alert(2, Severity.CRITICAL, condition="severe", supersedes=first.alert_id)
    page = next(p for p in _fhir_pages(first, second) if p.alert_id == second.alert_id)
    assert communication_request(page)["replaces"] == [
        {"type": "CommunicationRequest", "identifier": {"system": ALERT_SYSTEM, "value": first.alert_id}}]


async def test_a_real_receiver_gets_a_conditional_update():
    receiver = await Receiver().start()
    try:
        r = _routes(receiver.base)
        (page,) = _fhir_pages(alert(0), r=r)
        async with httpx.AsyncClient() as client:
            outcome = await HttpTransport(r.destinations["ehr"], r, client).send(page)
        (got,) = receiver.accepted()
        assert outcome.delivered
        assert (got.method, got.path) == ("PUT", "/fhir/CommunicationRequest")
        assert f"?{got.query}" == request_path(page.alert_id)[len("CommunicationRequest"):]
        assert got.headers["content-type"] == "application/fhir+json"
        assert got.headers["idempotency-key"] == page.event_id
        assert got.body["resourceType"] == "CommunicationRequest"
    finally:
        await receiver.stop()


def test_a_fhir_destination_is_never_a_pager():
    from infusion_monitor.pager.routes import parse_routes
    from tests.pager.fixtures import ROUTES_TOML

    text = ROUTES_TOML.replace("{base}", "http://x") + '\n[destinations.ehr]\nadapter = "fhir"\nurl = "http://x/fhir"\n'
    with pytest.raises(ValueError, match="not a pager"):
        parse_routes(text.replace('destinations = ["nurse"]', 'destinations = ["ehr"]'))
