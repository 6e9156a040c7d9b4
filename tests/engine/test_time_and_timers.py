"""The engine's clock and timers (clinical-rules.md, "Time, order and timers")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from dataclasses import dataclass, field

from infusion_monitor.schemas.inbound import ClockTick
from infusion_monitor.engine.bus import Engine, PatientRecord
from infusion_monitor.engine.config import MonitorConfig

T = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


@dataclass
class Ping:
    event_id: str
    occurred_at: datetime
    type: str = "ping"
    patient_id: str = "p"
    delay_min: int = 10

    def model_dump_json(self) -> str:
        return f"{self.event_id}|{self.occurred_at}|{self.delay_min}"


@dataclass
class Log:
    fired: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (key, due, ctx.now)


class TimerCore:
    """Sets a timer ``delay_min`` after each ping; records when timers fire."""

    name: ClassVar[str] = "t"
    state_model: ClassVar[type] = Log
    handles: ClassVar[frozenset[str]] = frozenset({"ping"})

    def handle(self, st: Log, ev: Any, ctx: Any) -> None:
        ctx.set_timer(ev.occurred_at + timedelta(minutes=ev.delay_min), "k", ev.event_id)

    def fire(self, st: Log, kind: str, key: str, due: datetime, ctx: Any) -> None:
        st.fired.append((key, due, ctx.now))


def _engine():
    return Engine(MonitorConfig(), [TimerCore()])


def _ping(eid: str, minute: int, delay: int = 10):
    return Ping(event_id=eid, occurred_at=T + timedelta(minutes=minute), delay_min=delay)


def _fired(engine):
    return [k for k, *_ in engine.state_of("t", "p").fired]


def test_timer_fires_only_when_clock_moves_past_due():
    engine = _engine()
    engine.handle(_ping("a", 0))  # due 10:10
    engine.handle(_ping("b", 10))  # exactly at due: not past
    assert _fired(engine) == []
    engine.handle(_ping("c", 11))
    assert _fired(engine) == ["a"]


def test_timers_fire_in_due_order_before_the_later_event():
    engine = _engine()
    engine.handle(_ping("late-due", 0, delay=30))
    engine.handle(_ping("early-due", 1, delay=5))
    engine.handle(_ping("z", 60, delay=600))
    assert _fired(engine) == ["early-due", "late-due"]


def test_late_event_with_past_due_timer_fires_at_once_dated_due():
    engine = _engine()
    engine.handle(_ping("x", 100, delay=600))
    engine.handle(_ping("late", 0))  # due 10:10 < clock 11:40
    (key, due, now), = engine.state_of("t", "p").fired
    assert key == "late" and due == T + timedelta(minutes=10) and now == due


def test_clock_tick_advances_and_inclusive_tick_fires_timers_due_at_it():
    engine = _engine()
    engine.handle(_ping("a", 0))
    engine.handle(ClockTick(type="clock.tick", event_id="t1", occurred_at=T + timedelta(minutes=10)))
    assert _fired(engine) == []
    engine.handle(ClockTick(type="clock.tick", event_id="t2", occurred_at=T + timedelta(minutes=10), inclusive=True))
    assert _fired(engine) == ["a"]


def test_advance_to_horizon_is_inclusive():
    engine = _engine()
    engine.handle(_ping("a", 0))
    engine.advance(T + timedelta(minutes=10), inclusive=True)
    assert _fired(engine) == ["a"]


def test_duplicate_event_id_dropped_and_redelivery_by_seq_is_a_no_op():
    engine = _engine()
    assert engine.handle(_ping("a", 0), seq=1).applied
    assert not engine.handle(_ping("a", 0), seq=2).applied  # same id, same content
    step = engine.handle(Ping(event_id="a", occurred_at=T, delay_min=3), seq=3)
    assert not step.applied and step.notices[0].field == "event_id"  # different content: warned
    assert not engine.handle(_ping("b", 1), seq=1).applied  # seq already applied for this patient


def test_state_survives_serialisation_with_pending_timers():
    engine = _engine()
    engine.handle(_ping("a", 0), seq=1)
    records = [PatientRecord.from_json(engine.dump(r)) for r in engine.take_dirty()]
    restored = Engine(MonitorConfig(), [TimerCore()], records, clock=engine.clock, timer_seq=engine.timer_seq)
    restored.handle(_ping("b", 20), seq=2)
    assert _fired(restored) == ["a"]


def test_record_with_an_untouched_slice_saves_again_after_reload():
    engine = _engine()
    engine.handle(_ping("a", 0), seq=1)
    (record,) = engine.take_dirty()
    loaded = PatientRecord.from_json(engine.dump(record))
    loaded.slices["t"] = {"fired": []}  # as loaded: a core this run never called keeps its dict
    assert PatientRecord.from_json(engine.dump(loaded)).slices["t"] == {"fired": []}


class CatchUpCore:
    """On a ``ping`` with delay 0: fires its own timers for key "s" due before 10:30 now."""

    name: ClassVar[str] = "c"
    state_model: ClassVar[type] = Log
    handles: ClassVar[frozenset[str]] = frozenset({"ping"})

    def handle(self, st: Log, ev: Any, ctx: Any) -> None:
        if ev.delay_min:
            ctx.set_timer(ev.occurred_at + timedelta(minutes=ev.delay_min), "a" if ev.delay_min < 20 else "b", "s")
            ctx.set_timer(ev.occurred_at + timedelta(minutes=1), "other", "s")
        else:
            ctx.fire_due(T + timedelta(minutes=30), "s", frozenset({"a", "b"}))

    def fire(self, st: Log, kind: str, key: str, due: datetime, ctx: Any) -> None:
        st.fired.append((kind, due, ctx.now))
        if kind == "a" and due < T + timedelta(minutes=20):  # a timer that sets a later one of its kind
            ctx.set_timer(due + timedelta(minutes=5), "a", "s")


def test_fire_due_fires_a_cores_own_timers_of_a_key_in_due_order_before_a_time():
    engine = Engine(MonitorConfig(), [CatchUpCore()])
    engine.handle(_ping("p1", 0, delay=25))  # "b" at 10:25
    engine.handle(_ping("p2", 0, delay=10))  # "a" at 10:10 (re-sets "a" at 10:15, 10:20); "other" at 10:01
    engine.handle(_ping("p3", 0, delay=0))  # the clock is still 10:00: nothing due by the clock
    fired = [(kind, due.strftime("%H:%M"), now.strftime("%H:%M")) for kind, due, now in engine.state_of("c", "p").fired]
    # "other" is not of the kinds asked for; the "a" timers an "a" sets fire too, in due order
    assert fired == [("a", "10:10", "10:10"), ("a", "10:15", "10:15"), ("a", "10:20", "10:20"),
                     ("b", "10:25", "10:25")]
    assert sorted(k for _, k, _ in engine.records["p"].timers) == ["other"]
