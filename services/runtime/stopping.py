"""Stopping a command at once and cleanly on SIGINT (Ctrl-C) or SIGTERM.

``StopSignals`` puts both signals on the running loop: the first sets ``stopped`` and remembers
which signal it was; a second one, while the command is already stopping, exits the process at
once (its children started with ``children.die_with_parent`` follow it). ``until_stopped``
runs a task until it finishes or a signal comes, then cancels it and waits for its cleanup.

The task is cancelled again every half second until it is done: on Python 3.11 a cancellation
that lands just as an inner ``asyncio.wait_for`` completes is lost (a nats-py publish awaiting
its acknowledgement, for instance), and a single ``cancel()`` would then let the task run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")
RECANCEL_EVERY_S = 0.5


class StopSignals:
    def __init__(self, announce: str | None = "Stopping ...") -> None:
        self.stopped = asyncio.Event()
        self.signal: int | None = None
        self.announce = announce
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: int) -> None:
        if self.stopped.is_set():
            os._exit(128 + sig)  # asked twice: exit now
        self.signal = sig
        self.stopped.set()
        if self.announce:
            print(f"\n{self.announce}", file=sys.stderr, flush=True)

    @property
    def exit_code(self) -> int:
        """128 + the signal that stopped the command (the shell's convention)."""
        return 128 + (self.signal or signal.SIGINT)

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def cancel_until_done(task: asyncio.Future[T]) -> None:
    """Cancel ``task`` and wait for its cleanup, cancelling again while it runs on."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_EVERY_S)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


async def until_stopped(work: Awaitable[T], stop: StopSignals) -> T | None:
    """The result of ``work``, or ``None`` when a signal came first (``work`` is then cancelled
    and its cleanup awaited)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.stopped.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    await cancel_until_done(task)
    return None
