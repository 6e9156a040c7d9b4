"""Online replay: the log through a real NATS server and the live monitor worker, with the
worker on an event-time clock. Gives the same outputs as offline replay (tests compare them).

The replay runs in a namespace of its own (``rp<random>``: its own streams, consumer and state
bucket), so it can use a shared server (``--nats URL``) without touching live data.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import TypeAdapter

from infusion_monitor.schemas import Rejection, parse_inbound
from infusion_monitor.schemas.base import OutboundEvent, format_time
from infusion_monitor.schemas.outbound import OutboundUnion

from ..runtime.access import NatsAccess, access_for
from ..runtime.embedded import EmbeddedAuth, EmbeddedNats
from ..runtime.names import Names
from ..runtime.settings import Settings
from ..worker.app import DURABLE, run_worker
from ..engine.bus import content_digest
from .offline import HORIZON, LineReport, ReplayResult

_OUTBOUND = TypeAdapter(OutboundUnion)
OnOutput = Callable[[OutboundEvent], Awaitable[None] | None]


def replay_online(stream: Iterable[bytes], settings: Settings, until: datetime | None = None,
                  nats_url: str | None = None) -> ReplayResult:
    return asyncio.run(replay_online_async(list(stream), settings, until, nats_url or settings.nats_url))


async def replay_online_async(
    lines: list[bytes],
    settings: Settings,
    until: datetime | None = None,
    nats_url: str | NatsAccess | None = None,
    *,
    pace: Callable[[datetime | None, datetime], Awaitable[None]] | None = None,
    on_output: OnOutput | None = None,
    timeout: float = 120.0,
    names: Names | None = None,
    worker: NatsAccess | None = None,
) -> ReplayResult:
    """``nats_url``: who publishes the log and drives time (``clock.tick``: the admin); ``worker``:
    who the monitor runs as (default: the same), e.g. the ``monitor`` user of the demo's server."""
    names = names or Names(ns=f"rp{uuid.uuid4().hex[:10]}")
    with tempfile.TemporaryDirectory(prefix="im-replay-") as tmp:
        server = None
        access = access_for(nats_url) if nats_url is not None else None
        if access is None:  # a private server with the product's accounts; the replay is its admin
            server = EmbeddedNats(Path(tmp) / "nats", auth=EmbeddedAuth(Path(tmp) / "credentials")).start()
            access = server.access("admin")
        try:
            async with run_worker(settings, worker or access, names, clock="event") as running:
                nc = await access.connect("admin")
                try:
                    watcher = None
                    if on_output is not None:
                        watcher = await nc.subscribe(f"{names.ns}.alert.>", cb=_callback(on_output))
                    js = nc.jetstream()
                    result, line_of = await _publish(js, names, lines, until, pace)
                    await _wait_until_processed(js, names, running.failed, timeout)
                    if watcher is not None:
                        await nc.flush()
                        await watcher.unsubscribe()
                    result.outputs = await _collect_outputs(js, names)
                    result.reports.extend(await _collect_dead_letters(js, names, line_of))
                    result.reports.sort(key=lambda r: (r.line is None, r.line or 0))
                finally:
                    await nc.close()
        finally:
            if server is not None:
                server.stop()
    return result


def _callback(on_output: OnOutput) -> Callable[[object], Awaitable[None]]:
    async def handle(msg: object) -> None:
        event = _OUTBOUND.validate_json(msg.data)  # type: ignore[attr-defined]
        maybe = on_output(event)
        if maybe is not None:
            await maybe

    return handle


async def _publish(js: JetStreamContext, names: Names, lines: list[bytes], until: datetime | None,
                   pace: Callable[[datetime | None, datetime], Awaitable[None]] | None
                   ) -> tuple[ReplayResult, dict[int, int]]:
    result = ReplayResult()
    line_of: dict[int, int] = {}
    seen: dict[str, str] = {}
    latest: datetime | None = None
    previous: datetime | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        event = parse_inbound(raw)
        if isinstance(event, Rejection):
            ack = await js.publish(names.inbound_unparsed, raw, headers={"Nats-Msg-Id": f"line-{number}"})
            line_of[ack.seq] = number
            continue
        if until is not None and event.occurred_at > until:
            continue
        digest = content_digest(raw)
        if event.event_id in seen and seen[event.event_id] != digest:
            result.reports.append(LineReport(number, "warning", "event_id",
                                             "duplicate event_id with different content: dropped"))
        seen.setdefault(event.event_id, digest)
        if pace is not None:
            await pace(previous, event.occurred_at)
        previous = event.occurred_at
        latest = event.occurred_at if latest is None else max(latest, event.occurred_at)
        subject = names.inbound(event.type, getattr(event, "patient_id", None))
        ack = await js.publish(subject, raw, headers={"Nats-Msg-Id": event.event_id})
        if not ack.duplicate:
            line_of[ack.seq] = number
            result.events += 1
    horizon = until if until is not None else (latest + HORIZON if latest else None)
    if horizon is not None:
        tick = (b'{"type":"clock.tick","event_id":"replay-horizon","occurred_at":"%s","inclusive":true}'
                % format_time(horizon).encode())
        await js.publish(names.inbound("clock.tick", None), tick, headers={"Nats-Msg-Id": "replay-horizon"})
    return result, line_of


async def _wait_until_processed(js: JetStreamContext, names: Names, failed: asyncio.Future, timeout: float) -> None:
    last = (await js.stream_info(names.stream_in)).state.last_seq
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if failed.done():
            raise RuntimeError(f"the monitor worker failed: {failed.result()!r}")
        info = await js.consumer_info(names.stream_in, DURABLE)
        if info.ack_floor.stream_seq >= last and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the monitor did not process the log within {timeout}s")


async def _read_stream(js: JetStreamContext, stream: str) -> list[object]:
    info = await js.stream_info(stream)
    count = info.state.messages
    if not count:
        return []
    sub = await js.subscribe(f"{stream.split('_')[0].lower()}.>", stream=stream, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    messages = []
    try:
        while len(messages) < count:
            messages.append(await sub.next_msg(timeout=10))
    finally:
        await sub.unsubscribe()
    return messages


async def _collect_outputs(js: JetStreamContext, names: Names) -> list[OutboundEvent]:
    ordered: list[tuple[int, OutboundEvent]] = []
    for stream in (names.stream_out, names.stream_alerts):
        for msg in await _read_stream(js, stream):
            order = int((msg.headers or {}).get("Im-Order", "0"))
            ordered.append((order, _OUTBOUND.validate_json(msg.data)))
    ordered.sort(key=lambda pair: pair[0])
    return [event for _, event in ordered]


async def _collect_dead_letters(js: JetStreamContext, names: Names, line_of: dict[int, int]) -> list[LineReport]:
    reports = []
    for msg in await _read_stream(js, names.stream_dlq):
        headers = msg.headers or {}
        line = line_of.get(int(headers.get("Im-Source-Seq", "0")))
        reports.append(LineReport(line, headers.get("Im-Kind", "rejected"), headers.get("Im-Field", ""),
                                  headers.get("Im-Reason", "")))
    return reports
