"""The engine: dedup, stream time, timers and an in-process bus between the cores.

``handle(event)`` and ``advance(now)`` follow ``clinical-rules.md`` "Time, order and timers":
events are handled in arrival order; the clock is the latest event time seen; a timer due at
*d* fires when the clock moves past *d* (before the event that moves it is handled); a timer set
with a due time already passed fires at once with its due time as ``occurred_at``.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Event, OutboundEvent

from .config import MonitorConfig
from .core import Core, Notice, Step
from .timers import Timer

DEDUP_MEMORY = 1024  # event ids remembered per patient (the stream's dedup window covers more)


class PatientRecord(BaseModel):
    """All a patient's state: one slice per core, pending timers, dedup memory."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    patient_id: str
    last_seq: int = 0  # live: the last stream sequence applied (redeliveries are no-ops)
    seen: dict[str, str] = Field(default_factory=dict)  # event_id -> content digest
    timers: dict[str, Timer] = Field(default_factory=dict)
    slices: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {
            "patient_id": self.patient_id,
            "last_seq": self.last_seq,
            "seen": self.seen,
            "timers": {k: t.model_dump(mode="json") for k, t in self.timers.items()},
            # a slice not touched since it was loaded is still the stored dict
            "slices": {k: v if isinstance(v, dict) else v.model_dump(mode="json") for k, v in self.slices.items()},
        }
        import json

        return json.dumps(data, separators=(",", ":")).encode()


def _timer_key(core: str, kind: str, key: str) -> str:
    return f"{core}|{kind}|{key}"


class _Ctx:
    """The context handed to one core for one patient (see ``core.Context``)."""

    __slots__ = ("engine", "record", "core", "config", "now", "patient_id", "event_id")

    def __init__(self, engine: Engine, record: PatientRecord, core: Core, event_id: str | None):
        self.engine = engine
        self.record = record
        self.core = core
        self.config = engine.config
        self.now = engine.clock
        self.patient_id = record.patient_id
        self.event_id = event_id

    def emit(self, event: OutboundEvent) -> None:
        self.engine._emit(event)

    def warn(self, reason: str, field: str = "") -> None:
        self.engine._step.notices.append(Notice(self.event_id, reason, field, rejected=False))

    def reject(self, reason: str, field: str = "") -> None:
        self.engine._step.notices.append(Notice(self.event_id, reason, field, rejected=True))

    def set_timer(self, due: datetime, kind: str, key: str = "") -> None:
        self.engine._set_timer(self.record, self.core.name, kind, key, due)

    def cancel_timer(self, kind: str, key: str = "") -> None:
        self.record.timers.pop(_timer_key(self.core.name, kind, key), None)
        self.engine.dirty.add(self.record.patient_id)


class Engine:
    """Runs the cores over events and time. Deterministic: same inputs, same outputs."""

    def __init__(
        self,
        config: MonitorConfig,
        cores: Sequence[Core],
        records: Iterable[PatientRecord] = (),
        clock: datetime | None = None,
        timer_seq: int = 0,
    ) -> None:
        self.config = config
        self.cores = list(cores)
        self._by_name = {c.name: c for c in self.cores}
        self._routes: dict[str, list[Core]] = {}
        for core in self.cores:
            for event_type in core.handles:
                self._routes.setdefault(event_type, []).append(core)
        self.records: dict[str, PatientRecord] = {}
        self.clock: datetime | None = clock
        self.timer_seq = timer_seq
        self.tick_seen: dict[str, str] = {}
        self.dirty: set[str] = set()
        self._heap: list[tuple[datetime, int, str, str]] = []
        self._step = Step()
        self._facts: deque[OutboundEvent] = deque()
        for record in records:
            self.records[record.patient_id] = record
            for name, timer in record.timers.items():
                heapq.heappush(self._heap, (timer.due, timer.seq, record.patient_id, name))

    # -- public API -------------------------------------------------------------------------

    def handle(self, event: Event, seq: int = 0) -> Step:
        """Handle one inbound event (arrival order). ``seq``: its stream sequence, if live."""
        self._step = step = Step()
        when = event.occurred_at
        patient_id = getattr(event, "patient_id", None)
        record = self._record(patient_id) if patient_id is not None else None
        if (record is not None and seq and seq <= record.last_seq) or self._is_duplicate(event, record):
            step.applied = False  # a redelivery of an event already applied, or a duplicate id
            return step
        if self.clock is None or when >= self.clock:
            self._fire_until(when, inclusive=getattr(event, "inclusive", False))
            self.clock = when
        if record is not None:
            if seq:
                record.last_seq = seq
            self.dirty.add(record.patient_id)
            self._dispatch(record, event, event.event_id)
        self._fire_until(self.clock, inclusive=False)  # timers set in the past by a late event
        return step

    def advance(self, now: datetime, inclusive: bool = False) -> Step:
        """Move the clock to ``now`` (wall clock live, horizon in replay) and fire timers."""
        self._step = step = Step()
        self._fire_until(now, inclusive=inclusive)
        if self.clock is None or now > self.clock:
            self.clock = now
        return step

    def next_due(self) -> datetime | None:
        """When the earliest pending timer is due (for the live wake-up), if any."""
        while self._heap:
            due, seq, patient_id, name = self._heap[0]
            timer = self.records[patient_id].timers.get(name)
            if timer is not None and timer.due == due and timer.seq == seq:
                return due
            heapq.heappop(self._heap)
        return None

    def take_dirty(self) -> list[PatientRecord]:
        records = [self.records[p] for p in sorted(self.dirty)]
        self.dirty.clear()
        return records

    def state_of(self, core: str, patient_id: str) -> Any:
        return self._slice(self._record(patient_id), self._by_name[core])

    # -- internals --------------------------------------------------------------------------

    def _record(self, patient_id: str) -> PatientRecord:
        record = self.records.get(patient_id)
        if record is None:
            record = self.records[patient_id] = PatientRecord(patient_id=patient_id)
        return record

    def _slice(self, record: PatientRecord, core: Core) -> Any:
        state = record.slices.get(core.name)
        if state is None:
            state = record.slices[core.name] = core.state_model()
        elif isinstance(state, dict):  # loaded from storage
            state = record.slices[core.name] = core.state_model.model_validate(state)
        return state

    def _is_duplicate(self, event: Event, record: PatientRecord | None) -> bool:
        seen = record.seen if record is not None else self.tick_seen
        digest = hashlib.blake2b(event.model_dump_json().encode(), digest_size=8).hexdigest()
        earlier = seen.get(event.event_id)
        if earlier is not None:
            if earlier != digest:
                self._step.notices.append(
                    Notice(event.event_id, "duplicate event_id with different content: dropped", "event_id")
                )
            return True
        seen[event.event_id] = digest
        if len(seen) > DEDUP_MEMORY:
            del seen[next(iter(seen))]
        return False

    def _dispatch(self, record: PatientRecord, event: Any, event_id: str | None) -> None:
        for core in self._routes.get(event.type, ()):
            core.handle(self._slice(record, core), event, _Ctx(self, record, core, event_id))
        self._drain_facts()

    def _emit(self, event: OutboundEvent) -> None:
        self._step.outputs.append(event)
        if event.type in self._routes:
            self._facts.append(event)

    def _drain_facts(self) -> None:
        while self._facts:
            fact = self._facts.popleft()
            record = self._record(fact.patient_id)
            self.dirty.add(record.patient_id)
            for core in self._routes.get(fact.type, ()):
                core.handle(self._slice(record, core), fact, _Ctx(self, record, core, fact.event_id))

    def _set_timer(self, record: PatientRecord, core: str, kind: str, key: str, due: datetime) -> None:
        self.timer_seq += 1
        name = _timer_key(core, kind, key)
        timer = Timer(due=due, seq=self.timer_seq, core=core, kind=kind, key=key)
        record.timers[name] = timer
        self.dirty.add(record.patient_id)
        heapq.heappush(self._heap, (due, timer.seq, record.patient_id, name))

    def _fire_until(self, now: datetime, inclusive: bool) -> None:
        heap = self._heap
        while heap:
            due, seq, patient_id, name = heap[0]
            if due > now or (due == now and not inclusive):
                return
            heapq.heappop(heap)
            record = self.records.get(patient_id)
            timer = record.timers.get(name) if record else None
            if timer is None or timer.due != due or timer.seq != seq:
                continue  # replaced or cancelled
            del record.timers[name]
            self.dirty.add(patient_id)
            core = self._by_name[timer.core]
            ctx = _Ctx(self, record, core, None)
            ctx.now = due
            core.fire(self._slice(record, core), timer.kind, timer.key, due, ctx)
            self._drain_facts()
