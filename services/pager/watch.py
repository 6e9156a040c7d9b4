"""The watchdog's shell in the paging bridge: hears heartbeats, checks every second, applies the
conditions (``watchdog.py``), and sends the outbound heartbeat.

- Heartbeats arrive on ``{ns}.health.>`` (core NATS).
- A condition goes to the bridge's runner as an ``operator.condition`` (stored, routed, paged,
  resolved like any alert), except the broker's: while the broker is away nothing can be stored,
  so it is paged directly to the operator destinations, and resolved directly when it is back.
- The outbound heartbeat (``heartbeat_url``, POST every ``heartbeat_every_s``) is sent while the
  bridge is connected and hears the monitor; a monitor for the outside world (a heartbeat check of
  the paging provider, or any uptime service) pages when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from infusion_monitor.schemas.outbound import OperatorCondition, PageRequested, ServiceHeartbeat
from infusion_monitor.schemas.vocab import AlertKind

from ..runtime.names import Names
from .routes import PagerRoutes
from .watchdog import Condition, Watchdog, WatchdogSettings, direct_pages

CHECK_EVERY_S = 1.0
SELF = "pager"


class WatchdogShell:
    def __init__(self, nc: Any, names: Names, settings: WatchdogSettings, routes: PagerRoutes,
                 observe: Callable[[OperatorCondition], Awaitable[None]],
                 submit: Callable[[list[PageRequested]], None], client: httpx.AsyncClient, log: Any,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 failed: asyncio.Future[BaseException] | None = None) -> None:
        self.failed = failed
        self.nc, self.names, self.settings, self.routes = nc, names, settings, routes
        self.observe, self.submit, self.client, self.log, self.now = observe, submit, client, log, now
        self.watchdog = Watchdog(settings, now())
        self.broker_began: datetime | None = None
        self.heartbeats_sent = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None
        self._pending: asyncio.Queue[Condition] = asyncio.Queue()

    async def start(self) -> WatchdogShell:
        self._sub = await self.nc.subscribe(self.names.health_all, cb=self._on_heartbeat)
        self._tasks = [asyncio.create_task(self._check_loop(), name="watchdog-check"),
                       asyncio.create_task(self._apply_loop(), name="watchdog-apply")]
        if self.settings.heartbeat_url:
            self._tasks.append(asyncio.create_task(self._outbound_loop(), name="watchdog-heartbeat"))
        self.log.info("watchdog listening", expect=list(self.settings.expect), silent_after_s=self.settings.silent_after_s,
                      outbound_heartbeat=bool(self.settings.heartbeat_url))
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_heartbeat(self, msg: Any) -> None:
        try:
            heartbeat = ServiceHeartbeat.model_validate_json(msg.data)
        except ValidationError:
            self.log.warning("unreadable heartbeat ignored", subject=msg.subject)
            return
        if heartbeat.service == SELF:
            return  # its own (its death is what the outbound heartbeat tells the outside)
        self._queue(self.watchdog.heartbeat(heartbeat, self.now()))

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            now = self.now()
            self._queue(self.watchdog.check(now))
            for condition in self.watchdog.broker(self.nc.is_connected, now):
                self._direct(condition)

    def _queue(self, conditions: list[Condition]) -> None:
        for condition in conditions:
            self.log.warning("operator condition", kind=condition.kind.value, subject=condition.subject,
                             active=condition.active)
            self._pending.put_nowait(condition)

    async def _apply_loop(self) -> None:
        """Into the bridge's stored state, in order; while the broker is away they wait."""
        while True:
            condition = await self._pending.get()
            while not self.nc.is_connected:
                await asyncio.sleep(0.5)
            try:
                await self.observe(condition.event())
            except Exception as exc:  # the bridge is broken (crash-only): it stops and is restarted
                self.log.critical("operator condition not stored; the bridge stops", error=type(exc).__name__)
                if self.failed is not None and not self.failed.done():
                    self.failed.set_result(exc)
                return

    def _direct(self, condition: Condition) -> None:
        if condition.kind is not AlertKind.SYSTEM_BROKER_UNREACHABLE:
            return
        if condition.active:
            self.broker_began = condition.at
        began = self.broker_began or condition.at
        pages = direct_pages(condition, self.routes, began)
        self.log.critical("broker unreachable: paging the operator destinations directly" if condition.active
                          else "broker back: resolving the direct page", destinations=[p.destination for p in pages])
        self.submit(pages)

    async def _outbound_loop(self) -> None:
        url = self.settings.heartbeat_url
        assert url is not None
        while True:
            now = self.now()
            if self._any_monitor(now):
                try:
                    response = await self.client.post(url, json={"service": "infusion-monitor", "at": now.isoformat()},
                                                      timeout=10.0)
                    self.heartbeats_sent += response.is_success
                    if not response.is_success:
                        self.log.warning("outbound heartbeat refused", status=response.status_code)
                except httpx.HTTPError as exc:
                    self.log.warning("outbound heartbeat not delivered", error=type(exc).__name__)
            await asyncio.sleep(self.settings.heartbeat_every_s)

    def _any_monitor(self, now: datetime) -> bool:
        return self.nc.is_connected and any(
            s.startswith("monitor/") and self.watchdog.hearing(s, now) for s in self.watchdog.seen)
