"""``hl7 send --now`` moves a set of messages in time (services/gateway/timeshift.py, issue 17
point 6): every event time the gateway reads moves by exactly the same amount and nothing else
changes, over the whole conformance corpus and the bundled examples; a moved set has fresh
identities, so the same set sent again later is a new story, not a retransmission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infusion_monitor.gateway.lint import FeedReplay
from infusion_monitor.gateway.mapping import pump
from infusion_monitor.gateway.mapping.common import bind, parse
from infusion_monitor.gateway.sender import split_messages
from infusion_monitor.gateway.timeshift import message_time, parse_dtm, shift_dtm, shift_message, shift_tag, shift_to
from tests.gateway import corpus_support as C
from tests.gateway.test_examples import EXAMPLES

HL7_FILES = sorted((C.CORPUS / "hl7").glob("*.hl7")) + sorted(EXAMPLES.glob("*.hl7"))
DELTA = timedelta(days=400, hours=5, minutes=7, seconds=13)


def _time_of(value: object) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _zone(raw: bytes, config) -> object:
    """The zone the gateway reads this message's offset-less times in."""
    return bind(parse(raw), config).zone


@pytest.mark.parametrize("path", HL7_FILES, ids=[p.name for p in HL7_FILES])
def test_every_event_time_moves_by_the_shift_and_nothing_else_changes(path):
    config = C.config(local_lab_codes={"ALT": "1742-6"})
    before, after = FeedReplay(config, C.RECEIVED_AT), FeedReplay(config, C.RECEIVED_AT + DELTA)
    moved_times = events = 0
    for n, raw in enumerate(split_messages(path.read_bytes()), start=1):
        where = f"{path.name} #{n}"
        try:
            zone = _zone(raw, config)
        except Exception:  # noqa: BLE001 - an unparseable message: moved like any other, refused alike
            zone = UTC
        original, shifted = before.hl7(raw), after.hl7(shift_message(raw, DELTA, zone, tag="t1"))
        assert (shifted.ack_code, len(shifted.events)) == (original.ack_code, len(original.events)), where
        assert [w.split(":")[0] for w in shifted.warnings] == [w.split(":")[0] for w in original.warnings], where
        for old, new in zip(original.events, shifted.events, strict=True):
            assert old.keys() == new.keys(), where
            for key, value in old.items():
                if key in C.DERIVED:
                    continue
                if (moment := _time_of(value)) is not None:
                    assert _time_of(new[key]) == moment + DELTA, (where, key)
                    moved_times += 1
                else:
                    assert new[key] == value, (where, key)  # birth dates, values, units, codes, keys
            events += 1
    assert moved_times >= events, path.name  # every event has at least its occurred_at moved
    later = timedelta(days=2)  # pumps that stopped and never restarted end at their STOP's time
    ended = pump.advance(before.book.fork(), config, C.RECEIVED_AT + later)
    ended_moved = pump.advance(after.book.fork(), config, C.RECEIVED_AT + DELTA + later)
    assert [(e["outcome"], _time_of(e["occurred_at"]) + DELTA) for e in ended] == \
        [(e["outcome"], _time_of(e["occurred_at"])) for e in ended_moved]


def test_the_corpus_has_times_in_every_field_the_gateway_reads():
    """The test above is only as good as its corpus: MSH-7, EVN-2, OBR-7, OBR-22, OBX-14 and
    SPM-17 each carry an event time somewhere in it."""
    seen = set()
    for path in HL7_FILES:
        for raw in split_messages(path.read_bytes()):
            for segment in raw.decode("latin-1").split("\r"):
                fields = segment.split("|")
                name = fields[0]
                for number in {"MSH": (7,), "EVN": (2, 6), "OBR": (7, 22), "OBX": (14,), "SPM": (17,)}.get(name, ()):
                    i = number - 1 if name == "MSH" else number
                    if i < len(fields) and any(ch.isdigit() for ch in fields[i]):
                        seen.add(f"{name}-{number}")
    assert {"MSH-7", "EVN-2", "OBR-7", "OBR-22", "OBX-14", "SPM-17"} <= seen


@pytest.mark.parametrize(("text", "delta", "zone", "expected"), [
    ("20250301100200+0100", timedelta(minutes=3), UTC, "20250301100500+0100"),        # offset kept, to the second
    ("202503011002+0100", timedelta(seconds=30), UTC, "20250301100230+0100"),         # seconds added when needed
    ("202503011002", timedelta(hours=1), UTC, "202503011102"),                        # precision kept
    ("20250301100200.123+0100", timedelta(seconds=1), UTC, "20250301100201.123+0100"),
    ("20250330013000", timedelta(hours=1), ZoneInfo("Europe/Berlin"), "20250330033000"),  # the instant: DST starts
    ("20250301", timedelta(days=2, hours=3), UTC, "20250303"),                        # a date: whole days
    ("2025", timedelta(days=400), UTC, "2025"),                                       # a year: left alone
    ("19850412", timedelta(0), UTC, "19850412"),
    ("not a time", timedelta(days=1), UTC, "not a time"),
    ("20250301100200-0330", timedelta(days=-1), UTC, "20250228100200-0330"),
])
def test_one_time_moves_as_the_instant_it_names(text, delta, zone, expected):
    assert shift_dtm(text, delta, zone) == expected


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)),
       st.timedeltas(min_value=timedelta(days=-3000), max_value=timedelta(days=3000)),
       st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]))
def test_a_moved_time_names_the_instant_moved(moment, delta, zone):
    delta = timedelta(seconds=round(delta.total_seconds()))
    text = moment.replace(microsecond=0).strftime("%Y%m%d%H%M%S") + moment.replace(tzinfo=zone).strftime("%z")
    assert parse_dtm(shift_dtm(text, delta, UTC), UTC) == parse_dtm(text, UTC) + delta


def test_a_set_moves_so_the_first_lands_now_and_the_rest_keep_their_spacing():
    messages = [m for path in sorted(EXAMPLES.glob("*.hl7")) for m in split_messages(path.read_bytes())]
    now = datetime(2026, 12, 6, 14, 0, 7, tzinfo=UTC)
    moved, delta = shift_to(messages, now)
    before = [message_time(m) for m in messages]
    after = [message_time(m) for m in moved]
    assert after[0] == now
    assert [b - before[0] for b in before] == [a - after[0] for a in after]
    assert delta == now - before[0]


def test_a_moved_set_has_fresh_identities_and_keeps_its_own_links():
    """Sent twice, a minute apart, the same set is two stories: no control id or order repeats,
    within a set a correction still names its order and a pump its order."""
    messages = [m for path in sorted(EXAMPLES.glob("*.hl7")) for m in split_messages(path.read_bytes())]
    first, _ = shift_to(messages, datetime(2026, 12, 6, 14, 0, tzinfo=UTC))
    again, _ = shift_to(messages, datetime(2026, 12, 6, 14, 1, tzinfo=UTC))
    config = C.config(local_lab_codes={"ALT": "1742-6"})
    replay = FeedReplay(config, datetime(2026, 12, 6, 14, 10, tzinfo=UTC))
    story = [replay.hl7(m) for m in first]
    second = [replay.hl7(m) for m in again]
    assert [t.ack_code for t in story] == [t.ack_code for t in second] == ["AA"] * len(messages)
    assert {t.identity for t in story}.isdisjoint({t.identity for t in second})
    starts = [e for t in story + second for e in t.events if e["type"] == "infusion.started"]
    assert len(starts) == 2 and starts[0]["session_id"] != starts[1]["session_id"]  # one session each
    assert [e for t in second for e in t.events if e["type"] == "lab.resulted" and e.get("corrects")]
    assert shift_tag(datetime(2026, 12, 6, 14, 0, tzinfo=UTC)) != shift_tag(datetime(2026, 12, 6, 14, 0, 1, tzinfo=UTC))
    for m in first:
        control = m.split(b"\r")[0].split(b"|")[9]
        assert len(control) <= 20


async def test_send_now_sends_each_message_at_its_moved_time():
    """The sender's pacing, against a real MLLP receiver on loopback: the first message at once,
    each next one when its moved MSH-7 comes (a clock the test moves as the sender sleeps)."""
    import io
    import structlog

    from infusion_monitor.gateway.mllp import MllpServer
    from infusion_monitor.gateway.sender import send_files

    received: list[tuple[datetime, bytes]] = []
    start = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
    clock = [start]

    async def handler(message: bytes, _connection) -> bytes:
        received.append((clock[0], message))
        control = message.split(b"\r")[0].split(b"|")[9]
        return b"MSH|^~\\&|MONSVC|HOSP|||20261206||ACK|A1|P|2.5.1\rMSA|AA|" + control + b"\r"

    async def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    server = MllpServer(handler, 1_000_000, 30, structlog.get_logger(), peers=["127.0.0.1"])
    port = await server.start("127.0.0.1", 0)
    try:
        out, err = io.StringIO(), io.StringIO()
        code = await send_files(sorted(EXAMPLES.glob("*.hl7")), "127.0.0.1", port, out=out, err=err,
                                now=start, clock=lambda: clock[0], sleep=sleep)
    finally:
        await server.stop()
    assert code == 0 and out.getvalue().count(": AA") == len(received) == 12
    assert all(message_time(message) == at for at, message in received)  # each sent when it was due
    assert received[0][0] == start and received[-1][0] - start == timedelta(minutes=5)
    assert "moved by" in err.getvalue() and "waiting 40 s" in err.getvalue()
