"""Progress of ``python -m bench`` with an estimate of the time left, on standard error.

The plan is known up front: each step (generate, replay, growth, live, latency, pager, memory)
with its parts (runs, cases) and an estimate of its duration on the reference machine of
docs/performance.md (2 shared cores), computed from the sizes asked for. As parts finish, the
estimate of what is left is the remaining planned time scaled by how this machine has done so
far (time spent / planned time of the finished parts): a machine twice as fast sees the
estimate halve after the first part."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Step:
    name: str
    parts: int  # runs, cases, sizes: each reported with ``tick``
    estimate_s: float  # on the reference machine


def time_left(planned_s: float, planned_done_s: float, spent_s: float) -> float:
    """Seconds left: the planned rest, scaled by spent / planned for what is done (1 before that)."""
    pace = spent_s / planned_done_s if planned_done_s > 0 and spent_s > 0 else 1.0
    return max(0.0, planned_s - planned_done_s) * pace


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


class Progress:
    def __init__(self, steps: list[Step], out: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic) -> None:
        self.steps, self.out, self.clock = steps, out, clock
        self.started = clock()
        self.index = -1  # the current step
        self.parts_done = 0
        self.planned_done_s = 0.0

    @property
    def planned_s(self) -> float:
        return sum(step.estimate_s for step in self.steps)

    def left_s(self) -> float:
        return time_left(self.planned_s, self.planned_done_s, self.clock() - self.started)

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def begin(self) -> None:
        self._say(f"bench: {len(self.steps)} step(s), about {duration(self.planned_s)} on a 2-core machine "
                  "(the estimate follows this machine as steps finish)")

    def start(self, name: str) -> None:
        self._close_step()
        self.index = next(i for i, step in enumerate(self.steps) if step.name == name)
        self.parts_done = 0
        step = self.steps[self.index]
        self._say(f"[{self.index + 1}/{len(self.steps)}] {name} ({step.parts} part(s)); "
                  f"about {duration(self.left_s())} left")

    def tick(self, what: str = "") -> None:
        """One part of the current step is done."""
        step = self.steps[self.index]
        if self.parts_done >= step.parts:
            return
        self.parts_done += 1
        self.planned_done_s += step.estimate_s / step.parts
        label = f" {what}" if what else ""
        self._say(f"      {step.name}{label}: {self.parts_done}/{step.parts} done, "
                  f"{duration(self.clock() - self.started)} so far, about {duration(self.left_s())} left")

    def _close_step(self) -> None:
        if 0 <= self.index < len(self.steps):  # parts a step did not report count as done
            step = self.steps[self.index]
            self.planned_done_s += step.estimate_s / step.parts * (step.parts - self.parts_done)
            self.parts_done = step.parts

    def finish(self) -> None:
        self._close_step()
        self._say(f"bench: done in {duration(self.clock() - self.started)}")


def plan(only: set[str], *, runs: int, events: int, live_events: int, latency_seconds: float, rates: int,
         pager_alerts: int, pager_rate: float, pager_cases: int, sessions: int, flood_samples: int = 50,
         flood_gap_s: float = 0.25, flood_phases: int = 4) -> list[Step]:
    """The steps asked for, with estimates from the reference machine's rates
    (docs/performance.md): generation ~85k events/s, offline replay ~31k events/s, parse-only
    ~135k events/s, interpreter start-up ~1 s, live ~60 s per 200k events (preload twice, raw
    consumer, monitor), latency ~3 s of set-up and drain per run, pager ~3 s per case run, login
    flood ~6 s of set-up per phase (the board's process, sign-in, the flood's start) and the
    samples' gaps, plus ~1.2 s a sample in the phase that hashes on the event loop."""
    sizes = sorted({events // 100, events // 10, events})
    steps = []
    if only & {"replay", "growth"}:
        steps.append(Step("generate", len(sizes), sum(sizes) / 85_000 + 0.5))
    if "replay" in only:
        steps.append(Step("replay", runs, runs * (events / 31_000 + events / 135_000 + 2.0)))
    if "growth" in only:
        steps.append(Step("growth", len(sizes), runs * sum(size / 31_000 + 1.0 for size in sizes)))
    if "live" in only:
        steps.append(Step("live", runs, runs * (live_events / 200_000 * 60 + 2.0) + 1.0))
    if "latency" in only:
        steps.append(Step("latency", rates, 2.0 + rates * runs * (latency_seconds + 3.0)))
    if "pager" in only:
        steps.append(Step("pager", pager_cases, pager_cases * runs * (pager_alerts / pager_rate + 3.0)))
    if "memory" in only:
        steps.append(Step("memory", 2, 2 * (2.0 + sessions / 1_000)))
    if "login-flood" in only:
        steps.append(Step("login-flood", flood_phases, flood_phases * (6.0 + flood_samples * flood_gap_s)
                          + flood_samples * 1.2))
    return steps
