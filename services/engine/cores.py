"""The cores the product runs, in the order they see each event."""

from __future__ import annotations

from ..adverse_events.core import AdverseEvents
from ..session_monitor.core import SessionMonitor
from .core import Core


def all_cores() -> list[Core]:
    return [SessionMonitor(), AdverseEvents()]
