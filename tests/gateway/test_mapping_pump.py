"""PCD-10 pump delivery events on the pure core (integrations.md, "PCD-10 pump events"): the
rate-change, pause and grace handling decided on event time, identity without a PID."""

from __future__ import annotations

from datetime import timedelta

from infusion_monitor.gateway.mapping import pump as pump_core
from infusion_monitor.gateway.mapping.book import Book
from infusion_monitor.gateway.mapping.router import translate
from tests.gateway.hl7msg import T0, config, obx, pump, vitals

NO_PID = "PID|||^^^^MR||UNKNOWN"


class Feed:
    """Messages through the core one by one, committing the state like the shell does."""

    def __init__(self, **cfg) -> None:
        self.config = config(**cfg)
        self.book = Book()
        self.received = T0

    def send(self, raw: bytes, received_minutes: float | None = None):
        received = T0 + timedelta(minutes=received_minutes) if received_minutes is not None else self.received
        work = self.book.fork()
        result = translate(raw, self.config, work, received)
        if result.rejection is None:
            work.commit()
        return result

    def wall(self, minutes: float):
        work = self.book.fork()
        events = pump_core.advance(work, self.config, T0 + timedelta(minutes=minutes))
        work.commit()
        return events


def kinds(events) -> list[tuple]:
    return [(e["type"], e.get("outcome"), e["occurred_at"][11:16]) for e in events]


def test_first_start_opens_the_session_and_a_repeat_does_not():
    feed = Feed()
    first = feed.send(pump("start", "P1", 0))
    assert kinds(first.events) == [("infusion.started", None, "10:00")]
    started = first.events[0]
    assert started["pump_id"] == "0012210000000001" and started["drug"] == "natalizumab"
    assert started["session_id"].startswith("ses-")
    assert feed.send(pump("start", "P2", 1)).events == []
    assert feed.send(pump("start", "P1", 0)).events == []  # a retransmission changes nothing


def test_rate_change_is_stop_transitioning_then_start_and_gives_nothing():
    feed = Feed()
    feed.send(pump("start", "P1", 0))
    assert feed.send(pump("stop", "P2", 15, status="transitioning")).events == []
    assert feed.send(pump("start", "P3", 15.05)).events == []
    assert feed.wall(120) == []  # nothing pending


def test_pause_resumed_within_the_grace_gives_nothing():
    feed = Feed()
    feed.send(pump("start", "P1", 0))
    feed.send(pump("stop", "P2", 20, status="not-delivering"))
    assert feed.send(pump("start", "P3", 34)).events == []
    assert feed.send(pump("complete", "P4", 60)).events[0]["outcome"] == "completed"


def test_stop_without_start_ends_stopped_at_the_stop_time_when_the_pump_clock_passes_the_grace():
    feed = Feed()
    feed.send(pump("start", "P1", 0))
    assert feed.send(pump("stop", "P2", 20)).events == []
    assert feed.send(pump("alarm", "P3", 35)).events == []  # exactly at STOP + grace: not past it
    later = feed.send(pump("alarm", "P4", 35.1))  # the pump's event clock moves past it
    assert kinds(later.events) == [("infusion.ended", "stopped", "10:20")]
    assert later.ignored == 1


def test_a_start_after_the_grace_ends_the_session_first_and_is_not_a_resume():
    feed = Feed()
    feed.send(pump("start", "P1", 0))
    feed.send(pump("stop", "P2", 20))
    late = feed.send(pump("start", "P3", 40))
    assert kinds(late.events) == [("infusion.ended", "stopped", "10:20")]
    assert late.ignored == 1


def test_wall_clock_decides_after_both_the_event_grace_and_the_arrival_grace():
    feed = Feed()
    feed.send(pump("start", "P1", 0), received_minutes=0)
    feed.send(pump("stop", "P2", 20), received_minutes=30)  # buffered: arrived 10 min late
    assert feed.wall(36) == []  # event grace over (10:35) but the arrival grace runs to 10:45
    assert kinds(feed.wall(45.5)) == [("infusion.ended", "stopped", "10:20")]
    assert feed.wall(60) == []  # decided once


def test_buffered_out_of_order_start_before_stop_arrival_is_a_resume():
    feed = Feed()
    feed.send(pump("start", "P1", 0))
    feed.send(pump("start", "P3", 25))  # arrives before the STOP it follows
    assert feed.send(pump("stop", "P2", 20)).events == []
    assert feed.wall(300) == []


def test_stop_decision_event_id_is_deterministic():
    def run():
        feed = Feed()
        feed.send(pump("start", "P1", 0))
        feed.send(pump("stop", "P2", 20))
        return feed.wall(90)
    assert run() == run()


def test_complete_ends_completed():
    feed = Feed()
    feed.send(pump("start", "P1", 0))
    assert kinds(feed.send(pump("complete", "P2", 62)).events) == [("infusion.ended", "completed", "11:02")]
    assert feed.send(pump("complete", "P2b", 63)).events == []


def test_another_drug_is_acknowledged_and_counted():
    feed = Feed()
    result = feed.send(pump("start", "P1", 0, drug="Ocrelizumab", order_text="ocrelizumab 600 mg"))
    assert result.ack_code == "AA" and result.events == [] and result.ignored == 1
    no_patient = feed.send(pump("start", "P2", 0, order="ORD9", drug="Saline", order_text="NaCl", pid=NO_PID))
    assert no_patient.ack_code == "AA"


def test_drug_from_the_order_text_any_case():
    feed = Feed()
    assert feed.send(pump("start", "P1", 0, drug="", order_text="TYSABRI 300MG IV")).events


def test_no_patient_is_ae_unless_bound():
    feed = Feed()
    result = feed.send(pump("start", "P1", 0, pid=NO_PID, pv1="PV1||O|INFUSION^CHAIR9^1"))
    assert result.ack_code == "AE" and (result.rejection.segment, result.rejection.field) == ("PID", "3")
    assert "no patient" in result.rejection.reason


def test_pump_without_pid_gets_the_patient_of_its_order():
    feed = Feed()
    start = feed.send(pump("start", "P1", 0))
    stop = feed.send(pump("stop", "P2", 20, pid=""))
    assert stop.ack_code == "AA"
    ended = feed.send(pump("complete", "P3", 60, pid=NO_PID))
    assert ended.events[0]["patient_id"] == start.events[0]["patient_id"]


def test_pump_without_pid_bound_by_location_seen_on_the_monitor_feed():
    feed = Feed()
    seen = feed.send(vitals(obx(2, "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120", "mm[Hg]"), control="V1"))
    started = feed.send(pump("start", "P1", 5, pid=NO_PID))  # same PV1-3 as the monitor's
    assert started.ack_code == "AA"
    assert started.events[0]["patient_id"] == seen.events[0]["patient_id"]


def test_pump_bindings_give_a_location_to_a_pump_that_sends_none():
    feed = Feed(pump_bindings={"0012210000000001": "infusion^chair3^1"})
    seen = feed.send(vitals(obx(2, "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120", "mm[Hg]"), control="V1"))
    started = feed.send(pump("start", "P1", 5, pid=NO_PID, pv1=""))
    assert started.events[0]["patient_id"] == seen.events[0]["patient_id"]


def test_a_stale_location_binding_is_not_used():
    feed = Feed(location_binding_hours=1)
    feed.send(vitals(obx(2, "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120", "mm[Hg]"), control="V1"))
    assert feed.send(pump("start", "P1", 90, pid=NO_PID)).ack_code == "AE"


def test_start_after_the_order_ended_is_ignored():
    feed = Feed()
    feed.send(pump("start", "P1", 0))
    feed.send(pump("complete", "P2", 60))
    late = feed.send(pump("start", "P3", 70))
    assert late.events == [] and late.ignored == 1


def test_no_order_number_is_ae():
    raw = pump("start", "P1", 0).replace(b"OBR|1|ORD555^EMR|P1^PUMP_GW|", b"OBR|1|||")
    result = Feed().send(raw)
    assert result.ack_code == "AE" and result.rejection.segment == "OBR"


def test_names_and_mrn_stay_out_of_state_and_events():
    feed = Feed()
    events = feed.send(pump("start", "P1", 0)).events + feed.send(vitals(obx(2, "150021^^MDC", "120", "mm[Hg]"))).events
    text = repr(events) + repr(feed.book.base)
    for secret in ("DOE", "JANE", "MRN12345", "CHAIR3"):
        assert secret not in text
