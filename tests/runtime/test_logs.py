"""Logs go to standard error as it is when a line is written, and a line that cannot be written
never raises into the code that logs (a pager delivery queue died on a log line once a test's
captured stderr, current when logging was configured, had been closed)."""

from __future__ import annotations

import io
import sys

import structlog

from infusion_monitor.runtime.logs import configure, get_logger


def test_a_log_line_goes_to_the_current_stderr_and_never_raises(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure("json")
    try:
        first.close()  # what was stderr at configure time is gone
        later = io.StringIO()
        monkeypatch.setattr(sys, "stderr", later)
        get_logger("test").info("page delivered", destination="pd1")
        assert '"event": "page delivered"' in later.getvalue()
        later.close()
        get_logger("test").info("still fine")  # closed: dropped, no exception
    finally:
        structlog.reset_defaults()
