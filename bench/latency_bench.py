"""Alert latency: vitals published at a steady rate to the monitor service (a separate
process, wall clock, embedded server), one alert-triggering reading per second among them;
publish-to-alert-received time measured in the publishing process."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import nats

from infusion_monitor.runtime.children import die_with_parent
from infusion_monitor.runtime.embedded import EmbeddedNats
from infusion_monitor.runtime.names import Names

from .common import Results, percentile
from .workload import now, session_starts

TICK_S = 0.01
NAMES = Names()


def _reading(pid: str, n: int, systolic: int) -> tuple[str, bytes]:
    event_id = f"{pid}-r{n}"
    event = {"type": "vitals.recorded", "event_id": event_id, "patient_id": pid, "session_id": f"ses-{pid}",
             "occurred_at": now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
             "systolic_mmhg": systolic, "heart_rate_bpm": 72, "spo2_pct": 97}
    return event_id, json.dumps(event, separators=(",", ":")).encode()


async def _wait_caught_up(js, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await js.consumer_info(NAMES.stream_in, "monitor")
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.1)


async def _measure(url: str, rate: int, seconds: float, tag: str, patients: int = 300) -> list[float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def on_alert(msg) -> None:
        received = time.perf_counter()
        reading = json.loads(msg.data).get("evidence", {}).get("reading_event_id")
        if reading in sent:
            latencies.append(received - sent.pop(reading))

    await nc.subscribe(f"{NAMES.ns}.alert.>", cb=on_alert)
    alerting = int(seconds) + 2
    starts = session_starts(patients, now() - timedelta(minutes=2), prefix=f"{tag}b") + \
        session_starts(alerting, now() - timedelta(minutes=2), prefix=f"{tag}a")
    for type_, payload, event_id in starts:
        await js.publish(NAMES.inbound(type_, event_id.rsplit("-", 1)[0]), payload, headers={"Nats-Msg-Id": event_id})
    await _wait_caught_up(js)

    pending: list[asyncio.Future] = []
    start = time.perf_counter()
    sent_count, alerts_sent, n = 0, 0, 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent_count < due:
            pid = f"{tag}b-{sent_count % patients:05d}"
            event_id, payload = _reading(pid, sent_count, 118 + sent_count % 7)
            pending.append(await js.publish_async(NAMES.inbound("vitals.recorded", pid), payload,
                                                  headers={"Nats-Msg-Id": event_id}))
            sent_count += 1
        if elapsed >= alerts_sent:  # one alert-triggering reading per second
            pid = f"{tag}a-{alerts_sent:05d}"
            event_id, payload = _reading(pid, n, 80)
            sent[event_id] = time.perf_counter()
            pending.append(await js.publish_async(NAMES.inbound("vitals.recorded", pid), payload,
                                                  headers={"Nats-Msg-Id": event_id}))
            alerts_sent += 1
        if len(pending) > 1000:
            await asyncio.gather(*pending)
            pending = []
        await asyncio.sleep(TICK_S)
    await asyncio.gather(*pending)
    deadline = time.perf_counter() + 10
    while sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await nc.close()
    return [x * 1000 for x in latencies]


def run(rates: list[int], seconds: float, runs: int, results: Results, tick=None) -> None:
    with tempfile.TemporaryDirectory(prefix="im-lat-") as tmp:
        with EmbeddedNats(Path(tmp) / "nats") as server:
            env = {**os.environ, "INFUSION_MONITOR_LOG_FORMAT": "json", "INFUSION_MONITOR_DATA_DIR": tmp}
            worker = subprocess.Popen([sys.executable, "-m", "infusion_monitor.cli.main", "service", "monitor",
                                       "--nats", server.url], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, preexec_fn=die_with_parent())
            try:
                time.sleep(2.0)
                for rate in rates:
                    p50s, p99s, maxes, counts = [], [], [], []
                    for r in range(runs):
                        lat = asyncio.run(_measure(server.url, rate, seconds, f"l{rate}x{r}"))
                        p50s.append(percentile(lat, 50))
                        p99s.append(percentile(lat, 99))
                        maxes.append(max(lat) if lat else float("nan"))
                        counts.append(len(lat))
                    p50, p99, mx = statistics.median(p50s), statistics.median(p99s), statistics.median(maxes)
                    target = "p99 <= 50 ms" if rate == 2000 else ""
                    results.add(f"alert latency at {rate:,} events/s", f"p50 {p50:.1f} / p99 {p99:.1f} / max {mx:.1f} ms",
                                target, (p99 <= 50) if rate == 2000 else None,
                                f"{sum(counts)} alerts over {runs} runs of {seconds:g} s; per-run p99: "
                                + ", ".join(f"{v:.1f}" for v in p99s))
                    if tick:
                        tick(f"{rate:,} events/s")
            finally:
                worker.terminate()
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:  # a loaded machine: do not let the bench hang
                    worker.kill()
                    worker.wait(10)
