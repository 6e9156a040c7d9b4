"""Heartbeats: every service says every few seconds that it is alive, where it stands and what
went wrong (architecture.md rule 9, "Its own death pages someone"). The paging bridge's watchdog
(``services/pager/watchdog.py``) listens; a heartbeat that stops is the alarm.

Sent on core NATS (not stored: only the latest matters), the first one at once, so every start
is seen (a service restarted again and again is noticed by its changing ``started_at``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from infusion_monitor.schemas.outbound import ServiceHeartbeat

from .names import Names

HEARTBEAT_S = 5.0  # INFUSION_MONITOR_HEARTBEAT_S

Status = Callable[[], Awaitable[dict[str, Any]]]


def heartbeat_interval(env: dict[str, str] | None = None) -> float:
    env = dict(os.environ if env is None else env)
    return float(env.get("INFUSION_MONITOR_HEARTBEAT_S", str(HEARTBEAT_S)))


def instance_name(default: str = "0") -> str:
    """A stable name for this instance (``INFUSION_MONITOR_INSTANCE``): the same after a restart."""
    return os.environ.get("INFUSION_MONITOR_INSTANCE", default)


class Heartbeats:
    """Publishes ``ServiceHeartbeat`` for one service until stopped. ``status`` returns the fields
    that change (position, lag, last_error, counters); it must not raise (a failure is reported)."""

    def __init__(self, nc: Any, names: Names, service: str, instance: str, status: Status,
                 every_s: float | None = None, log: Any = None) -> None:
        self.nc, self.subject, self.status, self.log = nc, names.health(service, instance), status, log
        self.service, self.instance = service, instance
        self.every_s = every_s if every_s is not None else heartbeat_interval()
        self.started_at = datetime.now(UTC)
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Heartbeats:
        self._task = asyncio.create_task(self._run(), name=f"{self.service}-heartbeat")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def beat(self) -> None:
        try:
            fields = await self.status()
        except Exception as exc:  # noqa: BLE001 - a heartbeat says so rather than stop
            fields = {"last_error": f"status unavailable: {type(exc).__name__}"}
        heartbeat = ServiceHeartbeat(service=self.service, instance=self.instance, started_at=self.started_at,
                                     at=datetime.now(UTC), every_s=self.every_s, **fields)
        await self.nc.publish(self.subject, heartbeat.model_dump_json(exclude_none=True).encode())
        self.sent += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # noqa: BLE001 - the broker may be away: the next beat tries again
                if self.log is not None:
                    self.log.warning("heartbeat not sent", error=type(exc).__name__)
            await asyncio.sleep(self.every_s)
