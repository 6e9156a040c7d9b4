"""Timers are data: a due time and what fires, kept in the patient's state."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class Timer(BaseModel):
    """A pending timer of one core for one patient; ``(core, kind, key)`` names it uniquely."""

    model_config = ConfigDict(frozen=True)

    due: datetime
    seq: int  # creation order: timers due at the same moment fire in the order they were set
    core: str
    kind: str
    key: str = ""

    @property
    def name(self) -> tuple[str, str, str]:
        return (self.core, self.kind, self.key)
