"""Stopping on SIGINT/SIGTERM (services/runtime/stopping.py): the signal is taken on the loop,
the work is cancelled and its cleanup awaited, even when a cancellation gets lost."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from infusion_monitor.runtime.stopping import StopSignals, cancel_until_done, until_stopped


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again_until_done():
    swallowed, cleaned = [], []

    async def stubborn() -> None:  # what a lost cancellation looks like from outside
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.append(1)
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(1)

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done(task), 10)
    assert task.cancelled() and swallowed == [1] and cleaned == [1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_stops_the_work_and_its_cleanup_runs(sig):
    cleaned = []

    async def work() -> str:
        try:
            await asyncio.sleep(60)
            return "finished"
        finally:
            cleaned.append(1)

    with StopSignals(announce=None) as stop:
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), sig)
        result = await asyncio.wait_for(until_stopped(work(), stop), 10)
    assert result is None and cleaned == [1]
    assert stop.signal == sig and stop.exit_code == 128 + sig


async def test_work_that_finishes_first_gives_its_result():
    async def work() -> str:
        return "done"

    with StopSignals(announce=None) as stop:
        assert await until_stopped(work(), stop) == "done"
    assert stop.signal is None
