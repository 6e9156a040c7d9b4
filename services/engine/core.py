"""What a core is, and the context it gets while handling one event or timer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from infusion_monitor.schemas.base import OutboundEvent

from .config import MonitorConfig


@dataclass(frozen=True, slots=True)
class Notice:
    """A warning or a domain rejection about one input event (never about a patient's identity)."""

    event_id: str | None
    reason: str
    field: str = ""
    rejected: bool = False  # True: the event (or a part of it) is bad input for the dead letters
    keep: bool = False  # a warning whose input is kept in the dead letters too (a conflicting duplicate)
    payload: bytes | None = None  # the input to keep, when it is not the message being handled (an expired pending reading)
    internal: bool = False  # a defect (a core failed on a timer), not bad input: for operators
    kind: str = ""  # what to count it as (live metrics): "duplicate", "future", "unmatched", ...
    detail: tuple[tuple[str, str], ...] = ()  # more to keep with a dead letter (header, value)


@dataclass(slots=True)
class Step:
    """Everything one call into the engine produced, in production order."""

    outputs: list[OutboundEvent] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    applied: bool = True  # False: a duplicate or a redelivery, dropped without effect

    def extend(self, other: Step) -> None:
        self.outputs.extend(other.outputs)
        self.notices.extend(other.notices)


class Context(Protocol):
    """The engine's side of a core call: config, event time, outputs, timers."""

    config: MonitorConfig
    now: datetime  # the engine's clock (stream time) at this call
    patient_id: str

    def emit(self, event: OutboundEvent) -> None: ...
    def warn(self, reason: str, field: str = "") -> None: ...
    def reject(self, reason: str, field: str = "") -> None: ...
    def set_timer(self, due: datetime, kind: str, key: str = "") -> None: ...
    def cancel_timer(self, kind: str, key: str = "") -> None: ...
    def fire_due(self, before: datetime, key: str, kinds: frozenset[str]) -> None:
        """Fire now, in due order, this core's timers of these kinds for ``key`` due before ``before`` (a late
        start catching its session up: its timers fire between its pending readings)."""
        ...
    def report(self, event_id: str, reason: str, payload: bytes, field: str = "") -> None:
        """A warning about an event handled earlier (no longer at hand), kept in the dead letters
        with ``payload``: the event as the core still knows it."""
        ...


class Core(Protocol):
    """A pure core: plain synchronous code, state in, state changed and outputs out."""

    name: ClassVar[str]
    state_model: ClassVar[type[BaseModel]]
    handles: ClassVar[frozenset[str]]  # event types it reacts to (inbound and facts)

    def handle(self, state: Any, event: Any, ctx: Context) -> None: ...
    def fire(self, state: Any, kind: str, key: str, due: datetime, ctx: Context) -> None: ...
