"""Pacing a replay on event time: ``speedup`` times faster than real time (the demo's
``--speedup``).

``PaceSchedule`` is the pure part: for each event time, the number of real seconds after the
first event at which it is due. Event time between the first event and this one counts
``1 / speedup`` second per second, except quiet stretches longer than ``skip_quiet_over`` (the
months between a patient's history and the clinic day), which take no time at all. An event
older than one already seen (out of order) is due at once. ``pacer`` sleeps until each event's
due moment on a monotonic clock: the schedule is absolute, so a slow publish is caught up and
never adds up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

SKIP_QUIET_OVER = timedelta(hours=6)

Pace = Callable[[datetime | None, datetime], Awaitable[None]]


class PaceSchedule:
    def __init__(self, speedup: float, skip_quiet_over: timedelta = SKIP_QUIET_OVER) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive (0 means no pacing at all: no schedule)")
        self.speedup, self.skip = speedup, skip_quiet_over
        self.latest: datetime | None = None
        self.played = timedelta(0)  # event time played so far (quiet stretches left out)

    def due(self, event_time: datetime) -> float:
        """Real seconds after the first event at which ``event_time`` is due (advances the schedule)."""
        if self.latest is None:
            self.latest = event_time
        elif event_time > self.latest:
            if event_time - self.latest <= self.skip:
                self.played += event_time - self.latest
            self.latest = event_time
        return self.played / timedelta(seconds=1) / self.speedup


def pacer(speedup: float, skip_quiet_over: timedelta = SKIP_QUIET_OVER, *,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Pace:
    """The ``pace`` hook of ``replay_online_async``: waits until each event is due."""
    schedule = PaceSchedule(speedup, skip_quiet_over)
    started: list[float] = []

    async def pace(previous: datetime | None, current: datetime) -> None:
        del previous  # the schedule keeps the latest event time itself
        due = schedule.due(current)
        if not started:
            started.append(clock())
        wait = started[0] + due - clock()
        if wait > 0:
            await sleep(wait)

    return pace


def expected_seconds(times: list[datetime], speedup: float, skip_quiet_over: timedelta = SKIP_QUIET_OVER) -> float:
    """How long a log with these event times takes at ``speedup`` (the demo's announcement)."""
    schedule = PaceSchedule(speedup, skip_quiet_over)
    return max((schedule.due(t) for t in times), default=0.0)
