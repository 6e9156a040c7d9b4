"""A core with a bug, for the tests that prove no defect stops alerting (architecture.md rule 9):
it fails on the event ``boom`` (after touching its state), and on the timer that the event
``timer-boom`` sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar


@dataclass
class _Touched:
    seen: list[str] = field(default_factory=list)


class Defect:
    name: ClassVar[str] = "defect"
    state_model: ClassVar[type] = _Touched
    handles: ClassVar[frozenset[str]] = frozenset({"vitals.recorded"})

    def handle(self, st: _Touched, event: Any, ctx: Any) -> None:
        if event.event_id == "boom":
            st.seen.append("half-done")  # state touched before failing
            raise ZeroDivisionError("a defect")
        if event.event_id == "timer-boom":
            ctx.set_timer(event.occurred_at + timedelta(minutes=1), "bad")

    def fire(self, st: _Touched, kind: str, key: str, due: datetime, ctx: Any) -> None:
        raise KeyError(kind)
