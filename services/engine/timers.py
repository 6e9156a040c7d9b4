"""Timers are data: a due time and what fires, kept in the patient's state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Timer:
    """A pending timer; the patient's ``timers`` map names it by ``(core, kind, key)``."""

    due: datetime
    seq: int  # creation order: timers due at the same moment fire in the order they were set
