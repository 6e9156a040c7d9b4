"""Arrival order survives a lost delivery: a message delivered to a client that never acks it
(a lost fetch, a crashed worker) is read from the stream before anything newer is handled."""

from __future__ import annotations

import json

import nats
import pytest

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.replay.offline import replay_lines
from infusion_monitor.runtime.names import Names
from infusion_monitor.runtime.settings import Settings
from infusion_monitor.runtime.streams import ensure_consumer, ensure_streams, worker_consumer
from infusion_monitor.worker.app import BATCH, DURABLE, run_worker
from tests.builders import end, normal, start, vitals
from tests.integration.live import wait_for

pytestmark = pytest.mark.integration


async def test_stolen_delivery_is_handled_first_from_the_stream(nats_server):
    names = Names()
    events = [normal(-5), start(0), vitals(20, symptoms=["stridor"]), end(30, outcome="stopped"), normal(40)]
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await ensure_streams(js, names)
        await ensure_consumer(js, names.stream_in, worker_consumer(DURABLE, "im.in.>", BATCH * 2))
        for e in events:
            await js.publish(names.inbound(e["type"], e["patient_id"]), json.dumps(e).encode(),
                             headers={"Nats-Msg-Id": e["event_id"]})
        thief = await js.pull_subscribe_bind(DURABLE, names.stream_in)
        stolen = await thief.fetch(2, timeout=2)  # delivered, never acked: lost until ack_wait
        assert [m.metadata.sequence.stream for m in stolen] == [1, 2]

        async with run_worker(Settings(), nats_server.url, names, clock="event") as worker:
            async def all_handled():
                return worker.runner.processed >= len(events)

            await wait_for(all_handled, timeout=20)
            assert worker.runner.gap_filled == 2
            outputs = await _alerts(js)
        offline = replay_lines([json.dumps(e).encode() for e in events], MonitorConfig(),
                               until=None).sorted_outputs()
        expected = [e.alert_id for e in offline if e.type == "alert.raised" and e.occurred_at <= _t(events[-1])]
        assert [a["alert_id"] for a in outputs] == expected  # R11 in the session: the start came first
        assert any(a["rule"] == "R11" and a["session_id"] == "s1" for a in outputs)
    finally:
        await nc.close()


def _t(event):
    from datetime import datetime

    return datetime.fromisoformat(event["occurred_at"])


async def _alerts(js):
    from tests.integration.live import alerts

    return await alerts(js)
