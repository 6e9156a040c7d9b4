"""Baseline per vital sign: the latest value in [t0 - 30 min, t0], else the earliest in
(t0, t0 + 5 min]; fixed at t0 + 5 min (``clinical-rules.md``, "The reaction window")."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..engine.config import MonitorConfig
from .state import Reading


def in_baseline_range(at: datetime, t0: datetime, config: MonitorConfig) -> bool:
    return t0 - timedelta(minutes=config.baseline_lookback_minutes) <= at <= t0 + timedelta(
        minutes=config.baseline_fix_minutes
    )


def baseline(candidates: list[Reading], t0: datetime) -> dict[str, float]:
    """Per vital: the latest value at or before t0, else the earliest after t0.

    Equal times keep the reading that arrived later (before t0) or earlier (after t0)."""
    before: dict[str, tuple[datetime, float]] = {}
    after: dict[str, tuple[datetime, float]] = {}
    for reading in candidates:
        for name, value in reading.values.items():
            if reading.at <= t0:
                if name not in before or reading.at >= before[name][0]:
                    before[name] = (reading.at, value)
            elif name not in after or reading.at < after[name][0]:
                after[name] = (reading.at, value)
    chosen = {**{k: v for k, (_, v) in after.items()}, **{k: v for k, (_, v) in before.items()}}
    return dict(sorted(chosen.items()))
