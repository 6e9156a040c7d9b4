"""Helpers for tests against a real nats-server: the monitor as a real process, publishing with
plain nats-py on the documented subjects, reading the alert and dead-letter streams."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from nats.js.errors import NotFoundError

ROOT = Path(__file__).resolve().parents[2]


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL if it has not exited within 15 s (bounded); the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class MonitorProcess:
    """``infusion-monitor service monitor`` in a child process (wall clock, like production)."""

    def __init__(self, url: str, log_path: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.url, self.log_path, self.env, self.args = url, log_path, env or {}, args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MonitorProcess:
        env = {**os.environ, "INFUSION_MONITOR_LOG_FORMAT": "json", **self.env}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infusion_monitor.cli.main", "service", "monitor", "--nats", self.url, *self.args],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc)
        self.log.close()
        return self.proc.returncode


def now_minus(minutes: float) -> str:
    """An RFC 3339 time ``minutes`` before now (negative: in the future)."""
    moment = datetime.now(UTC) - timedelta(minutes=minutes)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def publish(js: Any, event: dict[str, Any], msg_id: bool = True) -> None:
    patient = event.get("patient_id", "_")
    subject = f"im.in.{patient}.{event['type']}"
    headers = {"Nats-Msg-Id": event["event_id"]} if msg_id else None
    await js.publish(subject, json.dumps(event).encode(), headers=headers)


async def stream_messages(js: Any, stream: str) -> list[Any]:
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    out = []
    if not info.state.messages:
        return out
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        try:
            out.append(await js.get_msg(stream, seq))
        except NotFoundError:
            continue
    return out


async def alerts(js: Any) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in await stream_messages(js, "IM_ALERTS")]


async def outputs(js: Any, type_: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(m.data) for m in await stream_messages(js, "IM_OUT")) if e["type"] == type_]


async def consumer_caught_up(js: Any) -> bool:
    """Every inbound message handled and acked (acks follow the state write)."""
    info = await js.consumer_info("IM_IN", "monitor")
    last = (await js.stream_info("IM_IN")).state.last_seq
    return info.ack_floor.stream_seq >= last and info.num_ack_pending == 0


async def monitor_ready(js: Any) -> bool:
    try:
        await js.consumer_info("IM_IN", "monitor")
        return True
    except Exception:
        return False


async def wait_for(predicate, timeout: float = 20.0, every: float = 0.1):
    """Poll an async predicate until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(every)


async def connect(url: str) -> tuple[Any, Any]:
    nc = await nats.connect(url)
    return nc, nc.jetstream()
