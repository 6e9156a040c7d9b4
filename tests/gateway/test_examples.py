"""Every file in examples/hl7 maps as examples/hl7/README.md says (in order, one state), and
the set is one coherent live story when sent with ``--now``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.gateway.mapping import pump
from infusion_monitor.gateway.mapping.book import Book
from infusion_monitor.gateway.mapping.router import translate
from infusion_monitor.gateway.sender import split_messages
from infusion_monitor.gateway.timeshift import message_time, shift_to
from infusion_monitor.replay.offline import replay_lines
from tests.gateway.hl7msg import config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hl7"
EXPECTED = {
    "01-adt-a04-registration.hl7": [["patient.profile"]],
    "02-vitals-baseline.hl7": [["vitals.recorded", "vitals.recorded"]],
    "03-pump-start.hl7": [["infusion.started"]],
    "04-pump-rate-change.hl7": [[], []],
    "05-pump-pause.hl7": [[], []],
    "06-vitals-reaction.hl7": [["vitals.recorded"]],
    "07-pump-stop.hl7": [[]],
    "08-lab-cbc-liver.hl7": [["lab.resulted"] * 4],
    "09-lab-correction.hl7": [["lab.resulted"]],
    "10-lab-antibody.hl7": [["lab.resulted"]],
}


def test_examples_map_as_documented():
    cfg = config(site_timezone="Europe/Berlin", local_lab_codes={"ALT": "1742-6"})
    book = Book()
    received = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert sorted(p.name for p in EXAMPLES.glob("*.hl7")) == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        got = []
        for raw in split_messages((EXAMPLES / name).read_bytes()):
            work = book.fork()
            result = translate(raw, cfg, work, received)
            assert result.ack_code == "AA", (name, result.rejection)
            work.commit()
            got.append([e["type"] for e in result.events])
        assert got == expected, name
    work = book.fork()
    ended = pump.advance(work, cfg, datetime(2025, 3, 1, 14, 0, tzinfo=UTC))
    assert [(e["outcome"], e["occurred_at"]) for e in ended] == [("stopped", "2025-03-01T09:03:20Z")]


def test_the_examples_tell_one_live_story_when_sent_with_now():
    """``hl7 send examples/hl7/*.hl7 --now`` (issue 17, point 6): moved so the first message is
    now, the set is one session of one patient in about five minutes: registration, baseline
    vitals, the pump starting (a rate change and a short pause are not ends), a reaction that
    raises R7, the nurse stopping the pump, the morning's bloods and an antibody result. While the
    story plays nothing old fires (no M1, M2, R6, S3): the session is open, in its reaction
    window; the pump's stop ends the infusion after the grace; the window closes the session."""
    now = datetime(2026, 12, 6, 14, 0, 7, tzinfo=UTC)
    messages = [m for name in EXPECTED for m in split_messages((EXAMPLES / name).read_bytes())]
    moved, _ = shift_to(messages, now)
    assert message_time(moved[0]) == now and message_time(moved[-1]) - now == timedelta(minutes=5)
    cfg = config(site_timezone="Europe/Berlin", local_lab_codes={"ALT": "1742-6"})
    book = Book()
    events = []
    for raw in moved:
        work = book.fork()
        result = translate(raw, cfg, work, message_time(raw))  # each arrives at its own time, as sent live
        assert result.ack_code == "AA", result.rejection
        work.commit()
        events += result.events
    ended = pump.advance(book.fork(), cfg, now + timedelta(minutes=3, seconds=20) + timedelta(minutes=16))
    assert [(e["outcome"], e["occurred_at"]) for e in ended] == [("stopped", "2026-12-06T14:03:27Z")]
    assert {e["patient_id"] for e in events} == {events[0]["patient_id"]}
    (start,) = [e for e in events if e["type"] == "infusion.started"]
    assert start["occurred_at"] == "2026-12-06T14:01:07Z"

    def outputs(until: datetime | None, extra: list) -> list[tuple[str, str | None]]:
        lines = [json.dumps(e).encode() for e in events + extra]
        result = replay_lines(lines, MonitorConfig(site_timezone="Europe/Berlin"), until=until)
        assert not [r for r in result.reports if r.level != "warning"], result.reports
        return [(o.type, getattr(getattr(o, "rule", None), "value", None)) for o in result.sorted_outputs()]

    during = outputs(now + timedelta(minutes=5), [])
    assert [rule for kind, rule in during if kind == "alert.raised"] == ["L1", "L3", "R15", "R7"]
    assert ("session.closed", None) not in during
    after = outputs(None, ended)  # the rest of the day on event time
    assert [rule for kind, rule in after if kind == "alert.raised"][-1] == "M1"  # nobody charted vitals since
    assert after[-1] == ("session.closed", None)
