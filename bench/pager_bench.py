"""Publish-to-page latency of the paging bridge (issue 16): the bridge as a separate process
(``python -m infusion_monitor.pager``, wall clock, embedded server), critical alerts published on the
alert stream at a steady rate, each to a healthy ward's webhook; the time from publish to the
request arriving at that webhook, measured in the publishing process.

Three cases, each with a fresh server and bridge, each alert for the healthy ward preceded by
one for a second ward:

- ``second destination healthy``: the second ward answers at once;
- ``second destination down``: nothing listens on its port (connections refused);
- ``second destination hanging``: it accepts connections and never answers (requests time out).

Nothing here is a test: it prints figures (docs/performance.md quotes them).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats

from infusion_monitor.schemas.vocab import AlertKind, Rule, Severity
from infusion_monitor.engine.alerts import make_alert
from infusion_monitor.runtime.children import die_with_parent
from infusion_monitor.runtime.embedded import EmbeddedNats, free_port

from .common import Results, percentile

ROUTES = """
[destinations.ward-a]
adapter = "webhook"
url = "http://127.0.0.1:{a}/ward-a"
[destinations.ward-b]
adapter = "webhook"
url = "http://127.0.0.1:{b}/ward-b"

[[routes]]
name = "ward-a"
severities = ["critical"]
sites = ["site-a"]
  [[routes.tiers]]
  destinations = ["ward-a"]
[[routes]]
name = "ward-b"
severities = ["critical"]
  [[routes.tiers]]
  destinations = ["ward-b"]
[[routes]]
name = "record"
severities = ["high", "medium", "low", "info"]
"""
CASES = ("healthy", "down", "hanging")
TITLE = {"healthy": "second destination healthy", "down": "second destination down (refusing)",
         "hanging": "second destination hanging (timeouts)"}


class Webhook:
    """A minimal HTTP/1.1 receiver (keep-alive): records when each alert first arrived and
    answers 202 (``answer=False``: reads and never answers, like a hung receiver)."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.arrived: dict[str, float] = {}
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = free_port()
        self.connections: dict[asyncio.Task, asyncio.StreamWriter] = {}

    async def start(self) -> Webhook:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.connections.values():
            writer.close()  # the handlers see the end of their stream and return
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=5)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                now = time.perf_counter()
                self.requests += 1
                if not self.answer:
                    continue  # never answers
                alert_id = json.loads(body).get("alert_id")
                if isinstance(alert_id, str):
                    self.arrived.setdefault(alert_id, now)
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.connections.pop(task, None)
            writer.close()


def _alert(patient: str, site: str | None) -> tuple[str, str, bytes]:
    alert = make_alert(patient_id=patient, at=datetime.now(UTC), kind=AlertKind.DISCONTINUE_HYPERSENSITIVITY,
                       severity=Severity.CRITICAL, rule=Rule.R7, condition="R7", summary=f"R7 for {patient}",
                       action="Stop the infusion", evidence={"readings": {"systolic_mmhg": 80}},
                       session_id=f"ses-{patient}", site_id=site)
    return alert.alert_id, f"im.alert.{patient}.alert.raised", alert.model_dump_json(exclude_none=True).encode()


async def _ready(url: str, timeout: float = 60.0) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                await js.consumer_info("IM_ALERTS", "pager")
                return
            except Exception:
                await asyncio.sleep(0.2)
        raise TimeoutError("the bridge did not start")
    finally:
        await nc.close()


async def _measure(url: str, ward_a: Webhook, count: int, rate: float, tag: str) -> list[float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sent: dict[str, float] = {}
    try:
        start = time.perf_counter()
        for i in range(count):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            _, subject_b, data_b = _alert(f"{tag}-b{i:05d}", None)  # the other ward's alert first
            await js.publish(subject_b, data_b, headers={"Nats-Msg-Id": f"{tag}-b{i}"})
            alert_id, subject, data = _alert(f"{tag}-a{i:05d}", "site-a")
            sent[alert_id] = time.perf_counter()
            await js.publish(subject, data, headers={"Nats-Msg-Id": f"{tag}-a{i}"})
        deadline = time.perf_counter() + 15
        while len(ward_a.arrived.keys() & sent.keys()) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await nc.close()
    return [(ward_a.arrived[a] - t) * 1000 for a, t in sent.items() if a in ward_a.arrived]


async def _case(case: str, count: int, rate: float, tmp: Path) -> tuple[list[float], int, int]:
    ward_a = await Webhook().start()
    ward_b = Webhook(answer=case != "hanging")
    if case != "down":
        await ward_b.start()
    tmp.mkdir(parents=True, exist_ok=True)
    routes = tmp / f"routes-{case}.toml"
    routes.write_text(ROUTES.replace("{a}", str(ward_a.port)).replace("{b}", str(ward_b.port)))
    with EmbeddedNats(tmp / f"nats-{case}") as server:
        env = {**os.environ, "INFUSION_MONITOR_LOG_FORMAT": "json", "INFUSION_MONITOR_PAGER_ACK_BIND": "off",
               "INFUSION_MONITOR_DATA_DIR": str(tmp)}
        proc = subprocess.Popen([sys.executable, "-m", "infusion_monitor.pager", "--nats", server.url, "--routes", str(routes)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=die_with_parent())
        try:
            await _ready(server.url)
            latencies = await _measure(server.url, ward_a, count, rate, f"{case}")
            alive = proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    await ward_a.stop()
    await ward_b.stop()
    return latencies, ward_b.requests, int(alive)


def run(count: int, rate: float, runs: int, results: Results, tick=None) -> None:
    with tempfile.TemporaryDirectory(prefix="im-pager-") as tmp:
        for case in CASES:
            p50s, p99s, maxes, got, second, alive = [], [], [], 0, 0, 0
            for r in range(runs):
                lat, requests_b, up = asyncio.run(_case(case, count, rate, Path(tmp) / f"r{r}"))
                p50s.append(percentile(lat, 50))
                p99s.append(percentile(lat, 99))
                maxes.append(max(lat) if lat else float("nan"))
                got, second, alive = got + len(lat), second + requests_b, alive + up
            p50, p99, mx = statistics.median(p50s), statistics.median(p99s), statistics.median(maxes)
            results.add(f"pager: publish-to-page, {TITLE[case]}", f"p50 {p50:.1f} / p99 {p99:.1f} / max {mx:.1f} ms",
                        "p99 <= 1 s", p99 <= 1000,
                        f"{got} of {count * runs} pages over {runs} run(s) at {rate:g} alerts/s; "
                        f"second ward got {second} requests; bridge up at the end in {alive}/{runs}")
            if tick:
                tick(case)
