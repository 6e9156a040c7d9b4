"""IHE PCD ACM (docs/paging.md, "IHE ACM"): the PCD-04 mapping facet by facet (table-driven,
rule ids cited), event phases through an alert's life, the ACK, PCD-05 parsing; then the MLLP
transport against a loopback alarm-manager simulator (ACK codes, a silent alarm manager gets the
same bytes and control id again) and the PCD-05 listener on a real socket."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import hl7
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from infusion_monitor.schemas.vocab import AlertKind, DeliveryState, Rule, Severity
from infusion_monitor.engine.alerts import make_alert
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.pager.acm import (
    AlertStatus, StatusRejection, alert_of_control_id, control_id, parse_ack, parse_pcd05, pcd04,
)
from infusion_monitor.pager.acm_listener import AcmStatusListener
from infusion_monitor.pager.delivery import DestinationWorker, MllpTransport
from infusion_monitor.pager.routes import AcmSettings, Destination
from tests.pager.acm_sim import AlarmManager, ack_code
from tests.pager.fixtures import Driver, Reported, ack, alert, cleared, condition, minutes, routes

LOG = structlog.get_logger("test")
ACM = AcmSettings(sending_application="IM_TEST", facility="HOSP")


def _message(page) -> hl7.Message:
    return hl7.parse(pcd04(page, ACM, routes(), MonitorConfig()).decode())


def _obx(msg: hl7.Message, facet: int) -> hl7.Segment:
    return next(s for s in msg.segments("OBX") if str(s[4]) == f"1.0.0.0.{facet}")


def _reaction(rule: Rule, severity: Severity, readings: dict, symptoms: list[str] | None = None,
              kind: AlertKind = AlertKind.DISCONTINUE_HYPERSENSITIVITY, **evidence):
    return make_alert(
        patient_id="pk-1", at=minutes(0), kind=kind, severity=severity, rule=rule, condition=rule.value,
        summary=f"{rule.value} reaction", action="Stop the infusion",
        evidence={"readings": readings, "symptoms": symptoms or [], "rules_met": [rule.value], **evidence},
        session_id="s1", site_id="site-north",
    )


# -- PCD-04, facet by facet ------------------------------------------------------------------------

FACETS = [  # rule, severity, readings, symptoms, extra evidence -> source row, event code, flags, type
    (Rule.R7, Severity.CRITICAL, {"systolic_mmhg": 82}, [], {},
     ("NM", "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "82", "266016^MDC_DIM_MMHG^MDC", ">=90"), "196674", "L~PH~SP"),
    (Rule.R7, Severity.CRITICAL, {"systolic_mmhg": 101}, [], {"systolic_fall_pct": 35.0},  # R7's relative fall
     ("NM", "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "101", "266016^MDC_DIM_MMHG^MDC", "fall<=30%"), "196674", "L~PH~SP"),
    (Rule.R8, Severity.CRITICAL, {"spo2_pct": 91}, [], {},
     ("NM", "150456^MDC_PULS_OXIM_SAT_O2^MDC", "91", "262688^MDC_DIM_PERCENT^MDC", ">92"), "196674", "L~PH~SP"),
    (Rule.R8, Severity.CRITICAL, {"spo2_pct": 97}, ["cyanosis"], {},  # R8 by cyanosis: no metric met it
     ("ST", "68480^MDC_ATTR_ALERT_SOURCE^MDC", "R8 discontinue.hypersensitivity; symptoms: cyanosis", "", ""),
     "196616", "A~PH~SP"),
    (Rule.R9, Severity.CRITICAL, {}, ["syncope"], {},
     ("ST", "68480^MDC_ATTR_ALERT_SOURCE^MDC", "R9 discontinue.hypersensitivity; symptoms: syncope", "", ""),
     "196616", "A~PH~SP"),
    (Rule.R12, Severity.HIGH, {}, ["urticaria"], {},
     ("ST", "68480^MDC_ATTR_ALERT_SOURCE^MDC", "R12 discontinue.hypersensitivity; symptoms: urticaria", "", ""),
     "196616", "A~PH~SP"),
    (Rule.R13, Severity.MEDIUM, {"temperature_c": 38.4}, [], {},
     ("NM", "150364^MDC_TEMP_BODY^MDC", "38.4", "268192^MDC_DIM_DEGC^MDC", "<38"), "196652", "H~PM~SP"),
]


@pytest.mark.parametrize(("rule", "severity", "readings", "symptoms", "extra", "source", "event", "flags"), FACETS)
def test_pcd04_facets_of_the_reaction_rules(rule, severity, readings, symptoms, extra, source, event, flags):
    a = _reaction(rule, severity, readings, symptoms, **extra)
    msg = _message(Driver().send(a).of_type("page.requested")[0])
    ident = _obx(msg, 1)
    assert str(ident[3]).split("^")[0] == event and str(ident[3]).split("^")[3:] == [rule.value, a.kind.value, "99IM"]
    assert str(ident[5]) == f"{rule.value} reaction" and str(ident[8]) == flags
    src = _obx(msg, 2)
    assert (str(src[2]), str(src[3]), msg.unescape(str(src[5])), str(src[6]), msg.unescape(str(src[7]))) == source
    facets = {n: str(_obx(msg, n)[5]) for n in range(3, 8)}
    assert facets == {3: "start", 4: "active", 5: "enabled", 6: flags.split("~")[1], 7: "SP"}
    assert [str(_obx(msg, n)[3]).split("^")[1] for n in range(3, 8)] == [
        "MDC_ATTR_EVENT_PHASE", "MDC_ATTR_ALARM_STATE", "MDC_ATTR_ALARM_INACTIVATION_STATE",
        "MDC_ATTR_ALARM_PRIORITY", "MDC_ATTR_ALERT_TYPE"]


@pytest.mark.parametrize(("kind", "rule", "severity", "priority", "alert_type"), [
    (AlertKind.MONITORING_GAP, Rule.M1, Severity.MEDIUM, "PM", "SA"),
    (AlertKind.LAB_LIVER, Rule.L3, Severity.HIGH, "PH", "SA"),
    (AlertKind.INFUSION_CONTRAINDICATED, Rule.R5, Severity.CRITICAL, "PH", "SA"),
    (AlertKind.ANTIBODY_POSITIVE, Rule.R15, Severity.LOW, "PL", "SA"),
])
def test_pcd04_other_alerts_are_advisory(kind, rule, severity, priority, alert_type):
    a = _reaction(rule, severity, {}, kind=kind)
    r = routes(routes=[rt.model_copy(update={"severities": list(Severity)}) if rt.name == "emergency" else rt
                       for rt in routes().routes])
    page = Driver(r).send(a).of_type("page.requested")[0]
    msg = hl7.parse(pcd04(page, ACM, r, MonitorConfig()).decode())
    assert (str(_obx(msg, 6)[5]), str(_obx(msg, 7)[5])) == (priority, alert_type)


def test_pcd04_header_identity_location_and_callback():
    a = _reaction(Rule.R7, Severity.CRITICAL, {"systolic_mmhg": 82})
    page = Driver().send(a).of_type("page.requested")[0]
    raw = pcd04(page, ACM, routes(), MonitorConfig())
    msg = hl7.parse(raw.decode())
    msh = msg.segment("MSH")
    assert str(msh[9]) == "ORU^R40^ORU_R40" and str(msh[10]) == f"{a.alert_id}.1" == control_id(page)
    assert (str(msh[3]), str(msh[12]), str(msh[15]), str(msh[16])) == ("IM_TEST", "2.6", "AL", "NE")
    assert str(msh[21]).startswith("IHE_PCD_ACM_001^IHE PCD^")
    assert str(msg.segment("PID")) == "PID|||pk-1^^^INFUSION_MONITOR^PI"  # the pseudonymous key only
    assert str(msg.segment("PV1")[3]) == "site-north^^^HOSP"
    obr = msg.segment("OBR")
    assert str(obr[3]) == f"{a.alert_id}^IM_TEST" and str(obr[4]) == "196616^MDC_EVT_ALARM^MDC"
    assert str(obr[7]) == "20250303100000+0000"
    link = _obx(msg, 8)
    assert str(link[2]) == "RP" and str(link[5]).startswith(f"https://board.test/alerts/{a.alert_id}^")
    assert raw.count(b"\r") == len(msg) and b"\n" not in raw
    assert pcd04(page, ACM, routes(), MonitorConfig()) == raw  # the same request: the same bytes


def test_pcd04_through_an_alert_s_life():
    """start; continue for a re-page; update + alert-acknowledged at acknowledgement; end at resolve."""
    a = alert(0)
    d = Driver().send(a).until(6).send(ack(a.alert_id, 7), cleared(a.alert_id, 8))
    pages = [p for p in d.of_type("page.requested") if p.destination == "pd1"]
    rows = []
    for p in pages:
        msg = _message(p)
        rows.append((p.event_action, str(_obx(msg, 3)[5]), str(_obx(msg, 4)[5]), str(_obx(msg, 5)[5]),
                     str(msg.segment("MSH")[10]).rsplit(".", 1)[1]))
    assert rows == [("trigger", "start", "active", "enabled", "1"), ("trigger", "continue", "active", "enabled", "2"),
                    ("acknowledge", "update", "active", "alert-acknowledged", "3"),
                    ("resolve", "end", "inactive", "alert-acknowledged", "4")]


@pytest.mark.parametrize(("old", "new", "phase"), [
    (Severity.MEDIUM, Severity.CRITICAL, "escalate"),  # PM -> PH
    (Severity.HIGH, Severity.CRITICAL, "update"),  # PH -> PH: the same priority, a stronger rule
])
def test_pcd04_superseding_alert_escalates_or_updates_and_names_its_parent(old, new, phase):
    r = routes(routes=[rt.model_copy(update={"severities": list(Severity)}) if rt.name == "emergency" else rt
                       for rt in routes().routes])
    first = alert(0, old, condition="mild")
    second = alert(2, new, condition="severe", supersedes=first.alert_id)
    d = Driver(r).send(first, second)
    by_alert = {p.alert_id: p for p in d.of_type("page.requested") if p.event_action == "trigger"}
    msg = hl7.parse(pcd04(by_alert[second.alert_id], ACM, r, MonitorConfig()).decode())
    assert str(_obx(msg, 3)[5]) == phase
    assert str(msg.segment("OBR")[29]) == f"{first.alert_id}&IM_TEST^{first.alert_id}&IM_TEST"
    resolve = next(p for p in d.of_type("page.requested") if p.alert_id == first.alert_id and p.event_action == "resolve")
    assert str(_obx(hl7.parse(pcd04(resolve, ACM, r, MonitorConfig()).decode()), 3)[5]) == "end"


def test_pcd04_operator_alert_is_technical_and_names_no_patient():
    d = Driver().send(condition(0, True, subject="pd2"))
    msg = _message(d.of_type("page.requested")[0])
    assert "PID" not in [str(s[0]) for s in msg]
    assert str(_obx(msg, 7)[5]) == "ST" and "pd2" in msg.unescape(str(_obx(msg, 2)[5]))


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_pcd04_carries_any_summary_text_intact(summary):
    """Whatever the alert says (delimiters, escapes, non-ASCII), the page text survives HL7."""
    a = make_alert(patient_id="pk-1", at=minutes(0), kind=AlertKind.DISCONTINUE_HYPERSENSITIVITY,
                   severity=Severity.CRITICAL, rule=Rule.R7, condition="x", summary=summary, action="a",
                   evidence={}, session_id="s1")
    msg = _message(Driver().send(a).of_type("page.requested")[0])
    printable = "".join(ch if ch.isprintable() else " " for ch in summary).strip()
    assert msg.unescape(str(_obx(msg, 1)[5])).strip() == printable
    assert len(msg.segments("OBX")) == 8


# -- what comes back ------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (b"MSH|^~\\&|AM|H|IM||20250303||ACK^R40^ACK|X1|P|2.6\rMSA|AA|al-1.1\r", ("AA", "al-1.1")),
    (b"MSH|^~\\&#|||||20191105183942||ACK^R40|||2.7\rMSA|AE|al-1.2|bad\r", ("AE", "al-1.2")),  # empty MSH fields
    (b"MSH|^~\\&|AM\nMSA|AR|al-1.3\n", ("AR", "al-1.3")),
    (b"MSH|^~\\&|AM|H\r", None),
    (b"garbage", None),
])
def test_ack_parsing(raw, expected):
    result = parse_ack(raw)
    assert (None if result is None else (result.code, result.control_id)) == expected


def _pcd05(mtype: str, body: str, sender: str = "AM") -> bytes:
    return (f"MSH|^~\\&|{sender}|HOSP|IM||20250303101500+0000||{mtype}|C42|P|2.6\r" + body).encode()


@pytest.mark.parametrize(("raw", "alert_id", "state", "by"), [
    (_pcd05("ORU^R41^ORU_R41", "OBR|1|al-7^IM|al-7^IM|196616^MDC_EVT_ALARM^MDC\r"
            "PRT||UC|^Accepted|^Alert recipient|nurse-7^Jones^Amy\r"
            "OBX|1|ST|0^MDCX_ATTR_ALERT_DISSEMINATION_STATUS^MDC|1.0.0.0.1|Accepted by recipient||||||F\r"),
     "al-7", DeliveryState.ACCEPTED, "nurse-7"),
    (_pcd05("ORA^R41^ORA_R41", "MSA|AA|al-8.3\rPRT||UC|^Read|^Alert recipient|^Jones^Amy\r"),
     "al-8", DeliveryState.READ, "Amy Jones"),  # ORA^R41: the alert from MSA-2 (our PCD-04 control id)
    (_pcd05("ORA^R41^ORA_R41", "OBR|||1^al-9\rPRT|||Delivered\r"), "al-9", DeliveryState.DELIVERED, None),
    (_pcd05("ORU^R41^ORU_R41", "OBR|1|al-1|al-1\rOBX|1|ST|^ALERT STATUS|1|Undeliverable to endpoint\r"),
     "al-1", DeliveryState.UNDELIVERABLE, None),
    (_pcd05("ORU^R41^ORU_R41", "OBR|1|al-1|al-1\rOBX|1|ST|^ALERT STATUS|1|Rejected\r"),
     "al-1", DeliveryState.REJECTED, None),
    (_pcd05("ORU^R41^ORU_R41", "OBR|1|al-1|al-1\rOBX|1|ST|^ALERT STATUS|1|Received by communication service\r"),
     "al-1", DeliveryState.RECEIVED, None),
])
def test_pcd05_parsing(raw, alert_id, state, by):
    status = parse_pcd05(raw)
    assert isinstance(status, AlertStatus), status
    assert (status.alert_id, status.state, status.by, status.control_id, status.sender) == (alert_id, state, by, "C42", "AM")
    assert status.at is not None and status.at.isoformat() == "2025-03-03T10:15:00+00:00"


@pytest.mark.parametrize(("raw", "ack", "field"), [
    (b"not hl7 at all", "AR", "MSH-"),
    (_pcd05("ADT^A01^ADT_A01", "PID|||x\r"), "AR", "MSH-9"),
    (_pcd05("ORU^R41^ORU_R41", "OBX|1|ST|^ALERT STATUS|1|Accepted\r"), "AE", "OBR-3"),  # which alert?
    (_pcd05("ORU^R41^ORU_R41", "OBR|1|al-1|al-1\rOBX|1|ST|^ALERT STATUS|1|Teleported\r"), "AE", "OBX-5"),
])
def test_pcd05_that_cannot_be_used(raw, ack, field):
    result = parse_pcd05(raw)
    assert isinstance(result, StatusRejection) and result.ack == ack
    assert f"{result.segment}-{result.field}".startswith(field)


def test_control_ids_name_their_alert():
    assert alert_of_control_id("al-0123.12") == "al-0123" and alert_of_control_id("al-0123") == "al-0123"


# -- the MLLP transport against the simulator ------------------------------------------------------

def _acm_destination(sim: AlarmManager, **changes) -> Destination:
    options = dict(timeout_s=0.5, backoff_initial_s=0.02, backoff_max_s=0.1, give_up_after=timedelta(seconds=30),
                   max_attempts=1000, acm=ACM)
    return Destination(adapter="acm", url=sim.url, **{**options, **changes})


@pytest.mark.parametrize(("code", "delivered", "retry"), [("AA", True, False), ("CA", True, False),
                                                          ("AE", False, False), ("AR", False, True)])
async def test_mllp_transport_reads_the_ack(code, delivered, retry):
    sim = await AlarmManager(script=[code]).start()
    try:
        transport = MllpTransport(_acm_destination(sim), routes(), MonitorConfig())
        outcome = await transport.send(Driver().send(alert(0)).of_type("page.requested")[0])
        await transport.close()
        assert (outcome.delivered, outcome.retry) == (delivered, retry)
    finally:
        await sim.stop()


async def test_a_silent_alarm_manager_gets_the_same_message_again_with_the_same_control_id():
    sim = await AlarmManager(script=["silent", "silent"]).start()
    reported = Reported()
    page = Driver().send(alert(0)).of_type("page.requested")[0]
    worker = DestinationWorker("acm", _acm_destination(sim), MllpTransport(_acm_destination(sim), routes(),
                                                                             MonitorConfig()), reported, LOG)
    worker.start()
    try:
        worker.submit(page)
        got = await sim.wait_for(3)
        for _ in range(200):
            if reported.states_of(DeliveryState.SENT):
                break
            await asyncio.sleep(0.02)
    finally:
        await worker.stop()
        await sim.stop()
    assert [r.ack for r in got] == ["silent", "silent", "AA"]
    assert {r.control_id for r in got} == {f"{page.alert_id}.1"}
    assert len({r.raw for r in got}) == 1  # byte-identical retransmissions
    assert [(a.delivered, a.error) for a in reported.attempts] == [(False, "timeout"), (False, "timeout"), (True, None)]
    assert [s.state for s in reported.states] == [DeliveryState.RETRYING, DeliveryState.SENT]


async def test_a_refusing_alarm_manager_is_retried_then_marked_down_past_its_cap():
    sim = AlarmManager()  # not listening: connections refused
    reported = Reported()
    dest = _acm_destination(sim, give_up_after=timedelta(seconds=0.3))
    worker = DestinationWorker("acm", dest, MllpTransport(dest, routes(), MonitorConfig()), reported, LOG)
    worker.start()
    page = Driver().send(alert(0)).of_type("page.requested")[0]
    try:
        worker.submit(page)
        for _ in range(500):
            if reported.conditions_active() == ["acm"]:
                break
            await asyncio.sleep(0.02)
        assert reported.conditions_active() == ["acm"]
        await sim.start()
        await sim.wait_for(1)
        for _ in range(500):
            if not reported.conditions_active():
                break
            await asyncio.sleep(0.02)
    finally:
        await worker.stop()
        await sim.stop()
    assert [(s.state, s.reason) for s in reported.states] == [
        (DeliveryState.RETRYING, "connect"), (DeliveryState.FAILED, "destination_down"), (DeliveryState.SENT, None)]
    assert reported.conditions == [("acm", True), ("acm", False)]


# -- the PCD-05 listener ----------------------------------------------------------------------------

class Stream:
    """Stands in for the alert stream: keeps what the listener publishes (or fails to)."""

    def __init__(self) -> None:
        self.events: list = []
        self.fail = False

    async def publish(self, events: list) -> None:
        if self.fail:
            raise ConnectionError("stream unavailable")
        self.events.extend(events)


async def _listener(stream: Stream, known: dict[str, str], **acm_changes) -> AcmStatusListener:
    settings = ACM.model_copy(update={"status_listen": "127.0.0.1:0", **acm_changes})
    dest = Destination(adapter="acm", url="mllp://127.0.0.1:9", acm=settings)

    def locate(alert_id, dedup_key):
        return (known[alert_id], alert_id) if alert_id in known else None

    listener = AcmStatusListener("acm", dest, locate, stream.publish, LOG)
    await listener.start()
    return listener


async def test_accepted_by_a_named_recipient_acknowledges_under_that_recipient():
    stream, sim = Stream(), AlarmManager()
    listener = await _listener(stream, {"al-1": "pk-1"})
    try:
        answer = await sim.send_status(listener.address, "al-1", "Accepted", recipient=("nurse-7", "Jones", "Amy"))
        again = await sim.send_status(listener.address, "al-1", "Accepted", recipient=("nurse-7", "Jones", "Amy"),
                                      control="AM000001")  # a retransmission of the same PCD-05
    finally:
        await listener.stop()
    assert ack_code(answer) == ack_code(again) == "AA"
    delivery, acknowledged, *repeat = stream.events
    assert (delivery.type, delivery.state, delivery.by, delivery.destination) == (
        "alert.delivery", DeliveryState.ACCEPTED, "nurse-7", "acm")
    assert (acknowledged.type, acknowledged.by, acknowledged.via.value, acknowledged.model_extra["destination"]) == (
        "alert.acknowledged", "nurse-7", "pager", "acm")
    assert [e.event_id for e in repeat] == [delivery.event_id, acknowledged.event_id]  # the stream drops them


@pytest.mark.parametrize(("status", "structure", "recipient", "types"), [
    ("Delivered", "ORU", None, ["alert.delivery"]),
    ("Read", "ORA", ("nurse-7", "Jones", "Amy"), ["alert.delivery"]),
    ("Accepted", "ORU", None, ["alert.delivery"]),  # nobody named: recorded, acknowledges nothing
    ("Accepted", "ORA", ("nurse-7", "Jones", "Amy"), ["alert.delivery", "alert.acknowledged"]),
    ("Undeliverable", "ORU", None, ["alert.delivery"]),
    ("Rejected", "ORA", ("nurse-7", "Jones", "Amy"), ["alert.delivery"]),
])
async def test_each_status_becomes_its_events(status, structure, recipient, types):
    stream, sim = Stream(), AlarmManager()
    listener = await _listener(stream, {"al-1": "pk-1"})
    try:
        answer = await sim.send_status(listener.address, "al-1", status, recipient=recipient, structure=structure)
    finally:
        await listener.stop()
    assert ack_code(answer) == "AA"
    assert [e.type for e in stream.events] == types
    assert stream.events[0].state.value == status.lower()


@pytest.mark.parametrize(("known", "status", "sender", "expected"), [
    ({}, "Delivered", "ALARM_MGR", "AE"),  # an alert the bridge does not know
    ({"al-1": "pk-1"}, "Teleported", "ALARM_MGR", "AE"),  # a status nobody defined
    ({"al-1": "pk-1"}, "Delivered", "SOMEONE_ELSE", "AR"),  # not the configured alarm manager
])
async def test_what_cannot_be_used_is_answered_and_stores_nothing(known, status, sender, expected):
    stream, sim = Stream(), AlarmManager()
    listener = await _listener(stream, known, status_application="ALARM_MGR")
    try:
        answer = await sim.send_status(listener.address, "al-1", status, sender=sender)
    finally:
        await listener.stop()
    assert ack_code(answer) == expected and stream.events == []


async def test_nothing_is_acknowledged_while_nothing_was_stored():
    stream, sim = Stream(), AlarmManager()
    stream.fail = True
    listener = await _listener(stream, {"al-1": "pk-1"})
    try:
        with pytest.raises(ConnectionError):
            await sim.send_status(listener.address, "al-1", "Delivered")
    finally:
        await listener.stop()
    assert listener.counts == {"not_stored": 1}


async def test_an_address_not_allowed_is_closed_unread():
    stream, sim = Stream(), AlarmManager()
    listener = await _listener(stream, {"al-1": "pk-1"}, status_peers=["10.9.9.9"])
    try:
        with pytest.raises(ConnectionError):
            await sim.send_status(listener.address, "al-1", "Accepted", recipient=("nurse-7", "Jones", "Amy"))
    finally:
        await listener.stop()
    assert stream.events == [] and listener.server.refused == {"address not allowed": 1}


async def test_connections_per_address_are_capped():
    """PCD-05 listener hardening (issue 14): one address may hold at most 4 connections."""
    import asyncio

    stream = Stream()
    listener = await _listener(stream, {"al-1": "pk-1"})
    try:
        pairs = [await asyncio.open_connection(*listener.address) for _ in range(10)]
        await asyncio.sleep(0.3)
        closed = 0
        for reader, writer in pairs:
            try:
                closed += await asyncio.wait_for(reader.read(1), 0.1) == b""
            except TimeoutError:
                pass
            writer.close()
        assert closed == 6 and listener.server.refused == {"too many connections from this address": 6}
    finally:
        await listener.stop()
