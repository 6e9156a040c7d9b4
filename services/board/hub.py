"""The live board in memory: the projection's engine, a version that moves with every applied
event, and a wake-up for the pages waiting on server-sent events. No I/O here; the service feeds
it, the web app reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from ..engine.bus import Engine
from ..engine.config import MonitorConfig
from .projection import live_engine
from .replay import board_patients
from .state import BoardAlert, BoardPatient
from .view import BoardView, DayView, TimelineView, ViewOptions, build_board, build_day, build_timeline


class BoardHub:
    def __init__(self, config: MonitorConfig, options: ViewOptions = ViewOptions(), clock: str = "wall",
                 engine: Engine | None = None, wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config, self.options, self.clock_mode = config, options, clock
        self.engine = engine or live_engine(config)
        self.wall = wall
        self.version = 0
        self.ready = False  # the history has been read (until then the page says "loading")
        self.closing = False
        self._changed = asyncio.Event()
        self._patients: dict[str, BoardPatient] | None = None

    # -- input (the service) --------------------------------------------------------------

    def apply(self, event: Any, digest: str | None = None) -> bool:
        step = self.engine.handle(event, digest=digest)
        if step.applied:
            self._patients = None
        return step.applied

    def publish_change(self) -> None:
        """Wake every waiting page (call once per applied batch)."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        self.closing = True
        self._changed.set()

    async def wait_change(self, version: int, timeout: float) -> int:
        """Returns as soon as the version moved past ``version`` (or after ``timeout``)."""
        if self.version != version or self.closing:
            return self.version
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            pass
        return self.version

    # -- reading (the web app) ------------------------------------------------------------

    def now(self) -> datetime:
        """The board's moment: the wall clock live; in ``event`` mode the latest event time."""
        if self.clock_mode == "event" and self.engine.clock is not None:
            return self.engine.clock
        return self.wall()

    def patients(self) -> dict[str, BoardPatient]:
        if self._patients is None:
            self._patients = board_patients(self.engine)
        return self._patients

    def board(self) -> BoardView:
        return build_board(self.patients(), self.now(), self.config, self.options)

    def day(self, day: date | None = None) -> DayView:
        now = self.now()
        return build_day(self.patients(), day or now.astimezone(self.config.tz).date(), now, self.config)

    def timeline(self, patient_id: str, session_id: str) -> TimelineView | None:
        return build_timeline(self.patients(), patient_id, session_id, self.now(), self.config, self.options)

    def locate(self, alert_id: str) -> tuple[str, BoardAlert] | None:
        for patient_id, patient in self.patients().items():
            alert = patient.alerts.get(alert_id)
            if alert is not None:
                return patient_id, alert
        return None
