"""Bad input at volume (issue: reliability): 10,000 hypothesis-generated malformed or hostile
events through NATS to the real monitor process: it never crashes, every one lands in the
dead-letter stream with a reason, and valid events interleaved with them are all processed."""

from __future__ import annotations

import asyncio
import json
import string

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integration.faults import NAMES, connect, wait_processed
from tests.integration.live import MonitorProcess, alerts, stream_messages

pytestmark = pytest.mark.integration
BATCHES, PER_BATCH = 10, 1000
TEMPLATE = {"type": "vitals.recorded", "event_id": "x", "occurred_at": "2025-03-03T10:00:00Z", "patient_id": "pk-f",
            "systolic_mmhg": 120}
REQUIRED = ["type", "event_id", "occurred_at", "patient_id"]

text = st.text(alphabet=string.printable, max_size=40)
wrong_value = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                        st.dictionaries(text, st.integers(), max_size=2))


def _deep(depth: int) -> bytes:
    return (b'{"type":"vitals.recorded","x":' + b"[" * depth + b"]" * depth + b"}")


@st.composite
def hostile(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "not-object", "missing", "wrong-type", "unknown-type", "huge", "deep",
                                 "impossible", "bad-time", "bad-utf8"]))
    event = dict(TEMPLATE, event_id=f"fz-{draw(st.integers(0, 10**12))}")
    if kind == "bytes":
        raw = draw(st.binary(max_size=120))
        return raw if not raw.strip().startswith(b"{") else b"\xff" + raw
    if kind == "not-object":
        return json.dumps(draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=4), text))).encode()
    if kind == "missing":
        event.pop(draw(st.sampled_from(REQUIRED)))
    elif kind == "wrong-type":
        event[draw(st.sampled_from(REQUIRED))] = draw(wrong_value)
    elif kind == "unknown-type":
        event["type"] = draw(text.filter(lambda t: t not in {"vitals.recorded", "clock.tick"}))
    elif kind == "huge":
        event["event_id"] = "h" * draw(st.integers(300, 60_000))
    elif kind == "deep":
        return _deep(draw(st.integers(200, 5_000)))
    elif kind == "impossible":
        event.pop("systolic_mmhg")
        field, values = draw(st.sampled_from([("spo2_pct", [100.5, -1, 1e9]), ("systolic_mmhg", [19, 301, -5]),
                                              ("heart_rate_bpm", [301, -1]), ("temperature_c", [24.9, 45.1, 1e9])]))
        event[field] = draw(st.sampled_from(values))
    elif kind == "bad-time":
        event["occurred_at"] = draw(st.sampled_from(["2025-03-03T10:00:00", "yesterday", "2025-13-40T99:00:00Z", "1741000000"]))
    elif kind == "bad-utf8":
        return json.dumps(event).encode().replace(b'"pk-f"', b'"pk-\xc3\x28"')
    return json.dumps(event).encode()


def _valid(batch: int) -> list[dict]:
    p = f"pk-fz{batch}"
    return [
        {"type": "vitals.recorded", "event_id": f"v{batch}-0", "occurred_at": "2025-03-03T09:55:00Z", "patient_id": p, "systolic_mmhg": 130},
        {"type": "infusion.started", "event_id": f"v{batch}-1", "occurred_at": "2025-03-03T10:00:00Z", "patient_id": p, "session_id": f"s-fz{batch}"},
        {"type": "vitals.recorded", "event_id": f"v{batch}-2", "occurred_at": "2025-03-03T10:20:00Z", "patient_id": p, "systolic_mmhg": 82},
    ]


def test_ten_thousand_hostile_events(nats_server, tmp_path):
    generated: list[bytes] = []

    # hypothesis draws each hostile event (generation only: no shrinking, no database); they
    # are then sent through NATS in batches with valid events interleaved
    @settings(max_examples=BATCHES * PER_BATCH, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(hostile())
    def collect(raw: bytes) -> None:
        generated.append(raw)

    collect()
    assert len(generated) >= BATCHES * PER_BATCH
    batches = [generated[i * PER_BATCH:(i + 1) * PER_BATCH] for i in range(BATCHES)]
    asyncio.run(_drive(nats_server.url, tmp_path, batches))


async def _drive(url, tmp_path, batches):
    monitor = MonitorProcess(url, tmp_path / "m.log", args=["--clock", "event"]).start()
    nc = await connect([url])
    js = nc.jetstream()
    try:
        await asyncio.sleep(2.0)
        hostile_seqs: set[int] = set()
        for number, batch in enumerate(batches):
            valid = _valid(number)
            every = PER_BATCH // len(valid)
            for i, raw in enumerate(batch):
                if i % every == 0 and i // every < len(valid):  # valid events interleaved
                    event = valid[i // every]
                    await js.publish(NAMES.inbound(event["type"], event["patient_id"]), json.dumps(event).encode(),
                                     headers={"Nats-Msg-Id": event["event_id"]})
                ack = await js.publish("im.in.pk-f.vitals.recorded", raw)  # no Nats-Msg-Id: hostile producers
                hostile_seqs.add(ack.seq)
            # a replayed id with other content: dropped, kept in the dead letters
            replay = dict(_valid(number)[0], systolic_mmhg=99)
            ack = await js.publish(NAMES.inbound("vitals.recorded", replay["patient_id"]), json.dumps(replay).encode())
            hostile_seqs.add(ack.seq)

        async def keep_alive() -> None:
            assert monitor.running(), "the monitor crashed"

        await wait_processed(js, ["monitor"], keep_alive, timeout=300)
        assert monitor.running()
        letters = await stream_messages(js, NAMES.stream_dlq)
        dead_seqs = {int(m.headers["Im-Source-Seq"]) for m in letters}
        assert len(hostile_seqs) >= BATCHES * PER_BATCH
        assert hostile_seqs <= dead_seqs, f"{len(hostile_seqs - dead_seqs)} hostile events missing from the dead letters"
        assert all(m.headers.get("Im-Reason") for m in letters)
        critical = {a["session_id"] for a in await alerts(js) if a["rule"] == "R7"}
        assert critical == {f"s-fz{n}" for n in range(BATCHES)}  # every interleaved valid session alerted
    finally:
        await nc.close()
        assert monitor.stop() == 0  # a clean stop after all that: no crash
