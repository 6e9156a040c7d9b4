"""A fault drill: a multi-patient log streamed into a real nats-server in chunks while faults
are injected between chunks; afterwards the outputs, by id, must equal the offline replay."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import nats

from bench.generate import generate
from infusion_monitor.schemas import Rejection, parse_inbound
from infusion_monitor.schemas.base import format_time
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.replay.offline import replay_lines
from infusion_monitor.runtime.names import Names

NAMES = Names()
CHECKED = ("alert.raised", "antibody_test.due", "session.closed")


def drill_log(events: int, seed: int = 11) -> tuple[list[bytes], bytes]:
    """The log (hundreds of sessions, reactions, labs, due dates) and its closing horizon tick."""
    lines = [line.encode() for line in generate(events, seed=seed)]
    latest = max(e.occurred_at for e in map(parse_inbound, lines) if not isinstance(e, Rejection))
    horizon = latest + timedelta(hours=24)
    tick = json.dumps({"type": "clock.tick", "event_id": "drill-horizon", "occurred_at": format_time(horizon),
                       "inclusive": True}).encode()
    return lines, tick


def golden_ids(lines: list[bytes], tick: bytes) -> dict[str, set[str]]:
    result = replay_lines([*lines, tick], MonitorConfig())
    ids: dict[str, set[str]] = {t: set() for t in CHECKED}
    for event in result.outputs:
        if event.type in ids:
            ids[event.type].add(event.event_id)
    return ids


async def publish(js: Any, lines: list[bytes], attempts: int = 20) -> None:
    """Publish with Nats-Msg-Id = event_id, retrying (the server may be restarting)."""
    for attempt in range(attempts):
        try:
            futures = []
            for raw in lines:
                event = json.loads(raw)
                subject = NAMES.inbound(event["type"], event.get("patient_id"))
                futures.append(await js.publish_async(subject, raw, headers={"Nats-Msg-Id": event["event_id"]}))
            await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)


async def live_ids(js: Any) -> tuple[dict[str, set[str]], Counter[str]]:
    ids: dict[str, set[str]] = {t: set() for t in CHECKED}
    counts: Counter[str] = Counter()
    for stream in (NAMES.stream_alerts, NAMES.stream_out):
        info = await js.stream_info(stream)
        sub = await js.subscribe(f"{'im.alert' if stream == NAMES.stream_alerts else 'im.out'}.>", stream=stream,
                                 ordered_consumer=True)
        try:
            for _ in range(info.state.messages):
                msg = await sub.next_msg(timeout=10)
                event = json.loads(msg.data)
                if event["type"] in ids:
                    ids[event["type"]].add(event["event_id"])
                    counts[event["event_id"]] += 1
        finally:
            await sub.unsubscribe()
    return ids, counts


async def wait_processed(js: Any, durables: list[str], keep_alive: Callable[[], Awaitable[None]],
                         timeout: float = 180) -> None:
    """Every instance's consumer has acked the whole inbound stream (acks follow checkpoints)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await keep_alive()
        try:
            last = (await js.stream_info(NAMES.stream_in)).state.last_seq
            done = True
            for durable in durables:
                info = await js.consumer_info(NAMES.stream_in, durable)
                done &= info.ack_floor.stream_seq >= last and info.num_ack_pending == 0 and info.num_pending == 0
            if done:
                return
        except Exception:
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError("the monitor instances did not finish the stream in time")


async def connect(urls: list[str]) -> Any:
    return await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)


def chunks(lines: list[bytes], count: int) -> list[list[bytes]]:
    size = -(-len(lines) // count)
    return [lines[i:i + size] for i in range(0, len(lines), size)]


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


__all__ = ["chunks", "connect", "drill_log", "golden_ids", "live_ids", "publish", "seeded", "wait_processed",
           "datetime"]
