"""``demo --speedup N`` is honest (issue 17, point 2): event time runs N times faster than real
time, a quiet stretch over 6 h takes no time, an out-of-order event is due at once; the pacer
keeps an absolute schedule (a slow publish is caught up, never added)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infusion_monitor.replay.pacing import SKIP_QUIET_OVER, PaceSchedule, expected_seconds, pacer

T0 = datetime(2025, 3, 3, 7, 0, tzinfo=UTC)
CLINIC_DAY = Path(__file__).resolve().parents[2] / "examples" / "clinic-day.jsonl"

gaps_s = st.lists(st.one_of(st.integers(0, 3600), st.integers(6 * 3600 + 1, 200 * 86400)), max_size=40)


def _times(gaps: list[int]) -> list[datetime]:
    times, t = [T0], T0
    for gap in gaps:
        t += timedelta(seconds=gap)
        times.append(t)
    return times


@given(gaps_s, st.sampled_from([1.0, 5.0, 20.0, 300.0, 3000.0, 1e6]))
def test_event_time_runs_speedup_times_faster_except_long_quiet_stretches(gaps, speedup):
    schedule = PaceSchedule(speedup)
    dues = [schedule.due(t) for t in _times(gaps)]
    paced = sum(g for g in gaps if g <= SKIP_QUIET_OVER.total_seconds())
    assert dues[0] == 0
    assert abs(dues[-1] - paced / speedup) < 1e-6 * max(1.0, paced / speedup)
    assert dues == sorted(dues)


@given(gaps_s, st.integers(1, 7200))
def test_an_out_of_order_event_is_due_at_once_and_moves_nothing(gaps, back_s):
    schedule = PaceSchedule(60.0)
    times = _times(gaps)
    for t in times:
        due = schedule.due(t)
    assert schedule.due(times[-1] - timedelta(seconds=back_s)) == due
    assert schedule.due(times[-1] + timedelta(seconds=60)) == pytest.approx(due + 1.0)


def test_the_clinic_day_takes_what_the_help_says():
    times = [datetime.fromisoformat(json.loads(line)["occurred_at"]) for line in CLINIC_DAY.read_text().splitlines()]
    span = (max(times) - min(times)).total_seconds()
    assert span > 100 * 86400  # a history session months before the day: skipped, not played
    assert round(expected_seconds(times, 3000.0)) == 17  # "about 17 s" (demo --help)
    assert expected_seconds(times, 300.0) == pytest.approx(10 * expected_seconds(times, 3000.0))


def test_the_pacer_sleeps_until_each_event_is_due_on_an_absolute_schedule():
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pace = pacer(60.0, clock=lambda: now[0], sleep=sleep)

    async def run() -> None:
        await pace(None, T0)  # the first event: at once
        await pace(T0, T0 + timedelta(minutes=2))  # due 2 s later
        now[0] += 5.0  # a slow publish: 5 s
        await pace(T0, T0 + timedelta(minutes=4))  # due at 4 s: already late, no sleep
        await pace(T0, T0 + timedelta(minutes=10))  # due at 10 s: 3 s from now (7 s)

    asyncio.run(run())
    assert slept == [2.0, 3.0]
