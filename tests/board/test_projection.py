"""The board's pure projection and view on event time (issue #9): phases of the reaction window,
countdowns, the vitals-due warning before M1, alert states and pre-infusion flags. Table-driven:
each case is a log (tests/builders.py, minutes from T0) and a moment, and what the chair tile
shows then. Built with ``board_at`` = the monitor's cores + the projection in one offline engine,
so the M1/M2/close the tile anticipates are the monitor's own."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from infusion_monitor.schemas import parse_inbound
from infusion_monitor.schemas.vocab import PolicyProfile
from infusion_monitor.board.projection import BoardProjection, live_engine
from infusion_monitor.board.replay import board_at, board_patients, render_board_at
from infusion_monitor.board.view import ViewOptions, build_board, build_day, build_timeline, render_text
from infusion_monitor.engine.config import MonitorConfig
from tests.builders import T0, at, end, event, lab, normal, profile, replay, routine_session, start, vitals

US, EU = MonitorConfig(), MonitorConfig(profile=PolicyProfile.EU)


def _lines(events):
    return [json.dumps(e).encode() for e in events]


def tile_at(events, minutes, config=US, options=ViewOptions()):
    view, _ = board_at(_lines(events), config, T0 + timedelta(minutes=minutes), options)
    tiles = view.tiles
    return tiles[0] if len(tiles) == 1 else tiles


@dataclass
class PhaseCase:
    name: str
    events: list
    minutes: float
    phase: str
    clock: str | None  # the phase clock's text
    config: MonitorConfig = US
    note: str = ""


BASE = [normal(-10), start(0, pump_id="pump-N04", site_id="site-north", infusion_number=3)]
PHASES = [
    PhaseCase("baseline: the first 5 min, baseline being fixed", BASE, 2, "baseline", "3 min left"),
    PhaseCase("infusing: elapsed since start", [*BASE, normal(15), normal(30)], 42, "infusing", "42 min elapsed"),
    PhaseCase("infusing over an hour", [*BASE, *(normal(m) for m in range(15, 80, 15))], 75, "infusing", "1 h 15 min elapsed"),
    PhaseCase("observation (us): window = max(t0+120, end+60)", [*BASE, normal(30), end(60), normal(65)], 70,
              "observation", "50 min left", note="ended 11:00"),
    PhaseCase("observation (us) after a long infusion: end + 60", [*BASE, normal(30), normal(60), end(90), normal(95)], 100,
              "observation", "50 min left"),
    PhaseCase("observation (eu): end + 60 min", [*BASE, normal(30), end(30), normal(35)], 40, "observation", "50 min left",
              config=EU),
    PhaseCase("infusion 13+, keep_observation off (us): window = t0 + 120", [
        normal(-10), start(0, infusion_number=13), normal(30), normal(60), end(90), normal(95)], 100,
        "observation", "20 min left", config=MonitorConfig(keep_observation=False)),
    PhaseCase("no end by t0+180 (M2): timed from t0+180", [*BASE, *(normal(m) for m in range(15, 181, 15))], 200,
              "observation", "40 min left", note="no end charted (M2)"),
    PhaseCase("closed with the monitor's outcome", routine_session(), 125, "closed", None, note="closed 12:00"),
]


@pytest.mark.parametrize("case", PHASES, ids=lambda c: c.name)
def test_phase_and_countdown(case: PhaseCase):
    tile = tile_at(case.events, case.minutes, case.config)
    assert tile.phase == case.phase
    assert (tile.phase_clock.text if tile.phase_clock else None) == case.clock
    assert case.note in tile.phase_note


def test_closed_tile_shows_the_outcome_then_leaves_the_board_but_not_the_day():
    log = [*routine_session(), normal(-10, "pk-2"), start(0, "s2", "pk-2"), vitals(20, "pk-2", systolic_mmhg=80)]
    log += [end(60, "s2", "pk-2"), *(normal(m, "pk-2") for m in (75, 90, 105))]
    tiles = tile_at(log, 125)
    outcomes = {t.patient_id: (t.phase, t.outcome, t.outcome_text) for t in tiles}
    assert outcomes == {"pk-1": ("closed", "uneventful", "uneventful"),
                        "pk-2": ("closed", "discontinue.hypersensitivity", "hypersensitivity: discontinue")}
    later = T0 + timedelta(minutes=120 + 31)
    view, patients = board_at(_lines(log), US, later)
    assert view.tiles == []  # 30 min after the close (default) the tile is gone
    day = build_day(patients, T0.date(), later, US)
    rows = {r.patient_id: r for s in day.sites for r in s.rows}
    assert rows["pk-2"].outcome == "discontinue.hypersensitivity" and rows["pk-2"].alerts_by_severity["critical"] == 1
    assert rows["pk-1"].outcome_text == "uneventful" and day.sites[0].reactions == 1


@dataclass
class DueCase:
    name: str
    events: list
    minutes: float
    state: str
    text: str
    options: ViewOptions = field(default_factory=ViewOptions)


READ10 = [*BASE, normal(10)]
ENHANCED = [profile(), lab(-100 * 1440, "58012-6", "positive"), lab(-50 * 1440, "58012-6", "positive"),
            normal(-10), start(0), normal(10)]
DUE = [
    DueCase("well before: next vitals by (last reading + 30 min)", READ10, 34, "ok", "Next vitals by 10:40"),
    DueCase("5 min before M1 (default): warning", READ10, 35, "soon", "Vitals due in 5 min (by 10:40)"),
    DueCase("warning counts down", READ10, 38.5, "soon", "Vitals due in 1 min (by 10:40)"),
    DueCase("a configured 10 min warning", READ10, 31, "soon", "Vitals due in 9 min (by 10:40)",
            ViewOptions(vitals_due_warning_minutes=10)),
    DueCase("past due: overdue (M1 fired)", READ10, 43, "overdue", "Vitals overdue by 3 min (M1 30 min)"),
    DueCase("no reading since t0: counted from t0", BASE, 26, "soon", "Vitals due in 4 min (by 10:30)"),
    DueCase("persistent antibodies: 15 min (enhanced)", ENHANCED, 21, "soon", "Vitals due in 4 min (by 10:25)"),
    DueCase("due after the window closes: none required", [*BASE, normal(30), end(60), *(normal(m) for m in (75, 92))],
            95, "none", "no further vitals required by M1"),
]


@pytest.mark.parametrize("case", DUE, ids=lambda c: c.name)
def test_vitals_due_warning(case: DueCase):
    tile = tile_at(case.events, case.minutes, options=case.options)
    assert (tile.vitals_due_state, tile.vitals_due_text) == (case.state, case.text)


@pytest.mark.parametrize("last_reading", [10, 25, 40])
def test_overdue_moment_is_the_monitors_m1(last_reading):
    """The board's due time is exactly when the monitor's M1 fires (same rule, same config)."""
    log = [*BASE, normal(last_reading)]
    m1 = [a for a in json.loads("[" + ",".join(e.model_dump_json() for e in replay(log, until=at(200)).outputs
                                             if e.type == "alert.raised") + "]")
              if a["rule"] == "M1" and a["occurred_at"] > at(last_reading)][0]
    tile = tile_at(log, last_reading + 1)
    assert tile.vitals_due_at == datetime.fromisoformat(m1["occurred_at"].replace("Z", "+00:00"))


@dataclass
class AlertCase:
    name: str
    events: list
    minutes: float
    open: list[tuple[str, str]]  # (severity, rule), most severe first
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    worst: str | None = None


def _ack(minutes, rule, by="Anna K., RN"):
    return ("ack", minutes, rule, by)


ALERTS = [
    AlertCase("R7 critical open", [*BASE, vitals(20, systolic_mmhg=82)], 21, [("critical", "R7")], worst="critical"),
    AlertCase("R12 then R7: the escalation supersedes", [*BASE, vitals(20, symptoms=["urticaria"]),
                                                          vitals(25, systolic_mmhg=82)], 26, [("critical", "R7")],
              worst="critical"),
    AlertCase("most severe first", [normal(-10), start(0), vitals(10, temperature_c=38.4),
                                    vitals(20, symptoms=["wheeze"])], 21,
              [("critical", "R11"), ("medium", "R13")], worst="critical"),
    AlertCase("acknowledged: off the open list, who and when kept",
              [*BASE, vitals(20, systolic_mmhg=82), _ack(22, "R7")], 23, [], [("critical", "R7")]),
    AlertCase("resolved (cleared): off the tile", [*BASE, vitals(20, symptoms=["headache"]), ("resolve", 22, "R13")],
              23, []),
    AlertCase("pre-infusion alerts open with the session", [profile(birth_date="2010-01-01"), normal(-10), start(0)], 1,
              [("high", "P1")], worst="high"),
]


def _materialise(events):
    """Turn ("ack"/"resolve", minutes, rule) markers into lifecycle lines naming the alert the log raised."""
    out = []
    for e in events:
        if isinstance(e, tuple):
            kind, minutes, rule = e[0], e[1], e[2]
            raised = [a for a in json.loads("[" + ",".join(x.model_dump_json() for x in replay(out).outputs
                                                            if x.type == "alert.raised") + "]") if a["rule"] == rule]
            alert = raised[-1]
            if kind == "ack":
                out.append(event("alert.acknowledged", minutes, alert_id=alert["alert_id"], by=e[3], via="board"))
            else:
                out.append(event("alert.resolved", minutes, alert_id=alert["alert_id"], reason="cleared", by="dr"))
        else:
            out.append(e)
    return out


@pytest.mark.parametrize("case", ALERTS, ids=lambda c: c.name)
def test_alert_states(case: AlertCase):
    tile = tile_at(_materialise(case.events), case.minutes)
    assert [(a.severity, a.rule) for a in tile.open_alerts] == case.open
    assert [(a.severity, a.rule) for a in tile.acknowledged_alerts] == case.acknowledged
    assert tile.worst == case.worst
    for a in tile.acknowledged_alerts:
        assert a.acknowledged_by == "Anna K., RN" and a.acknowledged_at is not None


def test_escalation_is_shown_on_the_open_alert():
    from infusion_monitor.schemas.outbound import AlertEscalated

    log = [*BASE, vitals(20, systolic_mmhg=82)]
    view, _ = board_at(_lines(log), US, T0 + timedelta(minutes=21))
    alert = view.tiles[0].open_alerts[0]
    engine = live_engine(US)
    for line in _lines(log):
        engine.handle(parse_inbound(line))
    for out in replay(log, until=at(21)).outputs:
        engine.handle(out)
    engine.handle(AlertEscalated(event_id="esc-1", occurred_at=T0 + timedelta(minutes=30), patient_id="pk-1",
                                 alert_id=alert.alert_id, dedup_key="d", severity="critical", route="r", from_tier=1,
                                 to_tier=2, destinations=["backup"]))
    tile = build_board(board_patients(engine), T0 + timedelta(minutes=31), US).tiles[0]
    assert tile.open_alerts[0].escalation == "tier 2"


def test_per_destination_delivery_state_is_shown_on_the_alert():
    """Issue 16: what became of each destination's copy (alert.delivery), the latest per
    destination by event time, through the same parse path the live board uses."""
    from infusion_monitor.schemas.outbound import AlertDelivery
    from infusion_monitor.schemas.vocab import DeliveryState
    from infusion_monitor.board.service import parse_message
    from infusion_monitor.runtime.names import Names

    log = [*BASE, vitals(20, systolic_mmhg=82)]
    view, _ = board_at(_lines(log), US, T0 + timedelta(minutes=21))
    alert_id = view.tiles[0].open_alerts[0].alert_id
    engine = live_engine(US)
    for line in _lines(log):
        engine.handle(parse_inbound(line))
    for out in replay(log, until=at(21)).outputs:
        engine.handle(out)

    def delivered(n, dest, state, minute, by=None):
        event = AlertDelivery(type="alert.delivery", event_id=f"d{n}", occurred_at=T0 + timedelta(minutes=minute),
                              patient_id="pk-1", alert_id=alert_id, destination=dest, state=DeliveryState(state), by=by)
        parsed = parse_message("im.alert.pk-1.alert.delivery", event.model_dump_json().encode(), Names())
        engine.handle(parsed)

    delivered(1, "pd1", "retrying", 20.1)
    delivered(2, "pd1", "sent", 20.2)
    delivered(3, "acm", "sent", 20.1)
    delivered(4, "acm", "accepted", 20.6, by="nurse-7")
    delivered(5, "acm", "delivered", 20.4)  # arrived late, happened earlier: does not undo "accepted"
    tile = build_board(board_patients(engine), T0 + timedelta(minutes=21), US).tiles[0]
    assert tile.open_alerts[0].deliveries == ("acm accepted by nurse-7", "pd1 sent")
    before = tile.revision
    delivered(6, "pd2", "failed", 20.8)
    tile = build_board(board_patients(engine), T0 + timedelta(minutes=21), US).tiles[0]
    assert tile.open_alerts[0].deliveries[-1] == "pd2 failed" and tile.revision != before  # the page refreshes
    assert "[paged: acm accepted by nurse-7; pd1 sent; pd2 failed]" in render_text(
        build_board(board_patients(engine), T0 + timedelta(minutes=21), US), US)


@pytest.mark.parametrize("events, flags", [
    ([profile(birth_date="2010-01-01"), normal(-10), start(0)], ["Under 18"]),
    ([profile(birth_date="1950-01-01"), normal(-10), start(0)], ["Over 65"]),
    ([profile(pregnant=True), normal(-10), start(0)], ["Pregnant"]),
    ([profile(concomitant_therapies=["Interferon beta-1a"]), normal(-10), start(0)], ["Combination therapy"]),
    ([*routine_session(), vitals(30, symptoms=["urticaria"]), normal(-10 + 86 * 1440), start(86 * 1440, "s2")],
     ["Contraindicated: hypersensitivity", "Re-exposure after gap"]),
    (ENHANCED, ["Persistent antibodies: vitals every 15 min"]),
], ids=["P1", "P2", "P3", "P6", "R5+R17", "P5"])
def test_pre_infusion_flags(events, flags):
    starts = [e for e in events if e["type"] == "infusion.started"]
    t = (datetime.fromisoformat(starts[-1]["occurred_at"].replace("Z", "+00:00")) - T0).total_seconds() / 60 + 1
    tile = tile_at(events, t)
    tile = tile if not isinstance(tile, list) else [x for x in tile if x.session_id == starts[-1]["session_id"]][0]
    assert [f.text for f in tile.flags] == flags


def test_timeline_lists_events_and_alerts_in_order():
    log = _materialise([*BASE, normal(15), vitals(20, systolic_mmhg=82), _ack(22, "R7"), end(25, outcome="stopped"),
                        normal(40)])
    _, patients = board_at(_lines(log), US, T0 + timedelta(minutes=45))
    view = build_timeline(patients, "pk-1", "s1", T0 + timedelta(minutes=45), US)
    kinds = [e.kind for e in view.entries]
    assert kinds == ["infusion.started", "vitals.recorded", "vitals.recorded", "alert.raised", "alert.acknowledged",
                     "infusion.ended", "vitals.recorded"]
    assert [e.at for e in view.entries] == sorted(e.at for e in view.entries)
    assert "acknowledged by Anna K., RN (via board)" in view.entries[4].text
    assert build_timeline(patients, "pk-1", "nope", T0, US) is None


@pytest.mark.parametrize("order", ["inputs then outputs", "outputs then inputs", "shuffled across streams"])
def test_live_order_across_streams_gives_the_replay_board(order):
    """Live, the inbound, alert and output streams arrive in no fixed order relative to each other:
    the projection fed any interleaving (each stream in its own order) shows the same board."""
    lines = open("examples/clinic-day.jsonl", "rb").read().splitlines()
    for moment in ("2025-03-03T09:40:00+00:00", "2025-03-03T11:10:00+00:00"):
        t = datetime.fromisoformat(moment)
        expected = render_board_at(lines, US, t)
        inputs = [e for e in (parse_inbound(line) for line in lines) if not hasattr(e, "field") and e.occurred_at <= t]
        from infusion_monitor.replay.offline import replay_lines

        outputs = [o for o in replay_lines(lines, US, until=t).outputs if o.type in BoardProjection.handles]
        alerts = [o for o in outputs if o.type.startswith("alert.")]
        others = [o for o in outputs if not o.type.startswith("alert.")]
        if order == "inputs then outputs":
            feed = [*inputs, *alerts, *others]
        elif order == "outputs then inputs":
            feed = [*others, *alerts, *inputs]
        else:
            rng, streams, feed = random.Random(9), [list(inputs), list(alerts), list(others)], []
            while any(streams):
                s = rng.choice([s for s in streams if s])
                feed.append(s.pop(0))
        engine = live_engine(US)
        for e in feed:
            engine.handle(e)
        assert render_text(build_board(board_patients(engine), t, US), US) == expected


def test_board_at_is_deterministic_and_names_no_one():
    lines = open("examples/clinic-day.jsonl", "rb").read().splitlines()
    t = datetime.fromisoformat("2025-03-03T09:40:00+00:00")
    text = render_board_at(lines, US, t)
    assert text == render_board_at(lines, US, t)
    assert text.startswith("Board at 2025-03-03T09:40:00Z")
    assert "pump-N04     pk-91d2f7    #3   ses-20250303-N04-1  POST-INFUSION OBSERVATION 1 h 20 min left" in text
    assert "[CRITICAL] R7 open" in text
    assert "birth" not in text.lower() and "1987" not in text  # no profile details beyond the key


def test_board_core_is_not_among_the_monitor_cores():
    from infusion_monitor.cores import all_cores

    assert "board" not in {c.name for c in all_cores()}


def test_a_session_replayed_from_weeks_back_is_kept_after_its_close_timeline_still_there():
    """Issue 17 point 8: messages dated long ago (a feed replayed, the bundled examples) closed at
    once on the live board's wall clock and the session was forgotten (timeline 404). A closed
    session is kept for the board's memory from when the board learned of the close."""
    log = [*BASE, end(60), normal(90)]
    engine = live_engine(US)
    wall = T0 + timedelta(days=400)
    engine.advance(wall)  # the live board runs on the wall clock, far past these events
    for line in _lines(log):
        engine.handle(parse_inbound(line))
    for out in replay(log, until=at(200)).outputs:  # the monitor's outputs, session.closed among them
        engine.handle(out)
    engine.handle(parse_inbound(json.dumps(start(400 * 24 * 60, session="s-today"))))  # its next session
    assert build_timeline(board_patients(engine), "pk-1", "s1", wall, US) is not None
