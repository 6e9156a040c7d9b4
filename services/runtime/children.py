"""Child processes that never outlive their parent, whatever signal kills the parent.

``subprocess.Popen(..., preexec_fn=die_with_parent())``: on Linux the child asks the kernel
(``prctl(PR_SET_PDEATHSIG)``) for ``sig`` when its parent dies, SIGKILL of the parent included,
and survives ``exec`` (a Go ``nats-server`` needs no code of its own). A parent that died between
the fork and that call is caught by comparing the parent's PID. Elsewhere (macOS, Windows) there
is no such call: ``None``, and the parent's own clean stop is all there is.

The kernel ties the signal to the *thread* that started the child: start long-lived children
from a thread that lives as long as the process (the main thread, the event loop's thread),
never from a short-lived worker thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` (default SIGTERM: a nats-server
    flushes its store and exits) when this process dies; ``None`` where the OS has no such call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, called after it
    parent = os.getpid()

    def in_child() -> None:
        if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(127)  # cannot promise to die with the parent: do not start at all
        if os.getppid() != parent:  # the parent died before the call above: follow it now
            os.kill(os.getpid(), sig)

    return in_child
