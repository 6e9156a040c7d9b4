"""Live throughput: the monitor worker consuming a pre-loaded stream of vitals (durable
consumer, acks, state persisted to the KV bucket) beside a raw nats-py pull consumer that only
acks, on the same embedded server in the same run."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats

from infusion_monitor.runtime.embedded import EmbeddedNats
from infusion_monitor.runtime.names import Names
from infusion_monitor.runtime.settings import Settings
from infusion_monitor.runtime.streams import ensure_consumer, ensure_streams, worker_consumer
from infusion_monitor.worker.app import BATCH, run_worker

from .common import Results
from .workload import session_starts, vitals

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


async def _preload(js, names: Names, events) -> None:
    pending = []
    for type_, payload, event_id in events:
        patient = event_id.split("-")[0] + "-" + event_id.split("-")[1]
        pending.append(await js.publish_async(names.inbound(type_, patient), payload, headers={"Nats-Msg-Id": event_id}))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


async def _raw_rate(js, names: Names, total: int) -> float:
    """A raw nats-py pull consumer that only acks: the fastest the same machine does."""
    await ensure_consumer(js, names.stream_in, worker_consumer("raw", f"{names.ns}.in.>", BATCH * 2))
    sub = await js.pull_subscribe_bind("raw", names.stream_in)
    seen = 0
    start = time.perf_counter()
    deadline = start + 300
    while seen < total and time.perf_counter() < deadline:
        try:
            msgs = await sub.fetch(BATCH, timeout=1.0)
        except TimeoutError:
            continue
        for m in msgs:
            await m.ack()
        seen += len(msgs)
    return seen / (time.perf_counter() - start)


async def _monitor_rate(url: str, names: Names, total: int) -> float:
    start = time.perf_counter()
    async with run_worker(Settings.load(env={}), url, names, clock="event") as worker:
        deadline = time.perf_counter() + 600
        while worker.runner.processed < total and time.perf_counter() < deadline:
            if worker.failed.done():
                raise RuntimeError(repr(worker.failed.result()))
            await asyncio.sleep(0.05)
        return worker.runner.processed / (time.perf_counter() - start)


async def _one_run(url: str, patients: int, readings: int, run: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        events = session_starts(patients, T0) + vitals(patients, readings, T0)
        raw_names, mon_names = Names(f"rawb{run}"), Names(f"monb{run}")
        for names in (raw_names, mon_names):
            await ensure_streams(js, names)
            await _preload(js, names, events)
        raw = await _raw_rate(js, raw_names, len(events))
    finally:
        await nc.close()
    mon = await _monitor_rate(url, mon_names, len(events))
    return raw, mon


def run(readings: int, runs: int, results: Results, patients: int = 2000, tick=None) -> None:
    raws, mons, ratios = [], [], []
    with tempfile.TemporaryDirectory(prefix="im-bench-") as tmp:
        with EmbeddedNats(Path(tmp) / "nats") as server:
            for i in range(runs):
                raw, mon = asyncio.run(_one_run(server.url, patients, readings, i))
                raws.append(raw)
                mons.append(mon)
                ratios.append(mon / raw)
                if tick:
                    tick(f"run {i + 1}")
    total = readings + 2 * patients
    results.add("live: raw nats-py pull + ack", f"{statistics.median(raws):,.0f} msg/s", "", None,
                f"{total:,} messages pre-loaded; runs: " + ", ".join(f"{v:,.0f}" for v in raws))
    results.add("live: monitor worker", f"{statistics.median(mons):,.0f} events/s", "", None,
                "durable consumer, engine, outputs, KV state, acks; runs: " + ", ".join(f"{v:,.0f}" for v in mons))
    ratio = statistics.median(ratios)
    results.add("live monitor / raw", f"{ratio:.0%}", ">= 50 %", ratio >= 0.5,
                "same server, same run; per-run ratios: " + ", ".join(f"{v:.0%}" for v in ratios))
