"""Baseline per vital sign: the latest value in [t0 - 30 min, t0], else the earliest in
(t0, t0 + 5 min]; fixed at t0 + 5 min (``clinical-rules.md``, "The reaction window").

The candidates are all the patient's readings taken in that range, whatever their order of
arrival, their number or the session they name: they come from the patient's reading log. A
reading that arrived before the session's start is a candidate however late the start; one that
arrives after it is a candidate only until the fix (a late candidate changes no fixed baseline).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..engine.config import MonitorConfig
from .readings import Reading, ReadingLog


def candidates(log: ReadingLog, t0: datetime, config: MonitorConfig, *, upto: int | None = None,
               fixed_at: datetime | None = None, known_from: int = 0) -> list[Reading]:
    """The readings in the baseline range: as known when the reading ``upto`` arrived (its serial),
    or when the baseline was fixed at ``fixed_at``: every reading that came before the session
    became known (the serial ``known_from``), and after that those that arrived by the fix."""
    return log.in_range(t0 - timedelta(minutes=config.baseline_lookback_minutes),
                        t0 + timedelta(minutes=config.baseline_fix_minutes), upto=upto,
                        arrived_by=fixed_at, before=known_from)


def baseline(readings: list[Reading], t0: datetime) -> dict[str, float]:
    """Per vital: the latest value at or before t0, else the earliest after t0.

    Equal times keep the reading that arrived later (before t0) or earlier (after t0)."""
    before: dict[str, tuple[datetime, float]] = {}
    after: dict[str, tuple[datetime, float]] = {}
    for reading in readings:
        for name, value in reading.values.items():
            if reading.at <= t0:
                if name not in before or reading.at >= before[name][0]:
                    before[name] = (reading.at, value)
            elif name not in after or reading.at < after[name][0]:
                after[name] = (reading.at, value)
    chosen = {**{k: v for k, (_, v) in after.items()}, **{k: v for k, (_, v) in before.items()}}
    return dict(sorted(chosen.items()))
