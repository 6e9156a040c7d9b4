"""The engine: dedup, stream time, timers and an in-process bus between the cores.

``handle(event)`` and ``advance(now)`` follow ``clinical-rules.md`` "Time, order and timers":
events are handled in arrival order; the clock is the latest event time seen; a timer due at
*d* fires when the clock moves past *d* (before the event that moves it is handled); a timer set
with a due time already passed fires at once with its due time as ``occurred_at``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from infusion_monitor.schemas.base import Event, OutboundEvent

from .config import MonitorConfig
from .core import Core, Notice, Step
from .state import dump_state_json, load_state
from .timers import Timer

DEDUP_MEMORY = 16  # clock ticks' event ids remembered
DEDUP_HOURS = 24  # live, a patient's event ids are remembered this long (stream time) ...
DEDUP_MAX = 4096  # ... and this many at most
# bytes per remembered id: 8-byte hash of the event_id, 4-byte content digest, 4-byte arrival
# (stream time, minutes since 1970)
_SEEN_RECORD = 16


@dataclass(slots=True)
class PatientRecord:
    """All a patient's state: one slice per core, pending timers, dedup memory."""

    patient_id: str
    last_seq: int = 0  # live: the last stream sequence applied (redeliveries are no-ops)
    seen: bytes = b""  # (event_id hash, content digest, arrival) records of the last DEDUP_HOURS, oldest first
    timers: dict[tuple[str, str, str], Timer] = field(default_factory=dict)  # (core, kind, key) -> timer
    slices: dict[str, Any] = field(default_factory=dict)  # core name -> state (a dict until used)

    @classmethod
    def from_json(cls, raw: bytes | str) -> PatientRecord:
        data = json.loads(raw)
        timers = {
            (core, kind, key): Timer(datetime.fromisoformat(due), seq)
            for due, seq, core, kind, key in data.get("timers", [])
        }
        # "seen16": 16-byte records (an older store's 12-byte "seen" is dropped: the stream's own
        # dedup window still covers its last hour)
        return cls(data["patient_id"], data.get("last_seq", 0), bytes.fromhex(data.get("seen16", "")), timers,
                   data.get("slices", {}))


def content_digest(raw: bytes) -> str:
    """A short hash of an event's bytes (whitespace-stripped), for the dedup memory."""
    return hashlib.blake2b(raw.strip(), digest_size=4).hexdigest()


def _id_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def _remembered(record: PatientRecord, id_hash: bytes, digest: bytes, arrival: datetime) -> str | None:
    """The digest remembered for this id (hex), or ``None`` after remembering it now. Records of
    16 bytes in arrival order; those older than ``DEDUP_HOURS`` (or beyond ``DEDUP_MAX``) go."""
    blob = record.seen
    at = blob.find(id_hash)
    while at != -1:
        if at % _SEEN_RECORD == 0:
            return blob[at + 8:at + 12].hex()
        at = blob.find(id_hash, at + 1)
    minute = int(arrival.timestamp() // 60)
    horizon = minute - DEDUP_HOURS * 60
    cut = 0
    while cut < len(blob) and int.from_bytes(blob[cut + 12:cut + 16], "little") < horizon:
        cut += _SEEN_RECORD
    blob = blob[max(cut, len(blob) - (DEDUP_MAX - 1) * _SEEN_RECORD):]
    record.seen = blob + id_hash + digest + minute.to_bytes(4, "little")
    return None


def _timer_key(core: str, kind: str, key: str) -> tuple[str, str, str]:
    return (core, kind, key)


class _Ctx:
    """The context handed to a core for one patient (see ``core.Context``)."""

    __slots__ = ("engine", "record", "core", "config", "now", "patient_id", "event_id")

    def __init__(self, engine: Engine, record: PatientRecord, core: Core | None, event_id: str | None):
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

    def fire_due(self, before: datetime, key: str, kinds: frozenset[str]) -> None:
        self.engine._fire_own(self.record, self.core, key, kinds, before)

    def report(self, event_id: str, reason: str, payload: bytes, field: str = "") -> None:
        self.engine._step.notices.append(Notice(event_id, reason, field, keep=True, payload=payload, kind="unmatched"))


class Engine:
    """Runs the cores over events and time. Deterministic: same inputs, same outputs."""

    def __init__(
        self,
        config: MonitorConfig,
        cores: Sequence[Core],
        records: Iterable[PatientRecord] = (),
        clock: datetime | None = None,
        timer_seq: int = 0,
        unbounded_dedup: bool = False,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """``owns``: for one of N instances, which patients are this instance's (every instance
        still reads every event, so each keeps the exact stream time of a single engine)."""
        self.config = config
        self.owns = owns
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
        # offline replay remembers every event id of the log; live, each patient keeps its last
        # DEDUP_MEMORY ids in its state and the inbound stream's dedup window covers the rest
        self._all_seen: dict[tuple[str, str], str] | None = {} if unbounded_dedup else None
        self.dirty: set[str] = set()
        self._heap: list[tuple[datetime, int, str, tuple[str, str, str]]] = []
        self._step = Step()
        self._facts: deque[OutboundEvent] = deque()
        for record in records:
            self.records[record.patient_id] = record
            for name, timer in record.timers.items():
                heapq.heappush(self._heap, (timer.due, timer.seq, record.patient_id, name))

    # -- public API -------------------------------------------------------------------------

    def handle(self, event: Event, seq: int = 0, digest: str | None = None, ceiling: datetime | None = None) -> Step:
        """Handle one inbound event (arrival order). ``seq``: its stream sequence, if live;
        ``digest``: a hash of its content (default: of the model), to tell a repeated
        ``event_id`` with other content apart; ``ceiling``: live, the wall clock plus a tolerance,
        past which no event moves the clock (it is still judged by its own time) and a clock
        tick is ignored (architecture.md rule 9: bounded clocks)."""
        self._step = step = Step()
        when = event.occurred_at
        is_tick = event.type == "clock.tick"
        if ceiling is not None and when > ceiling:
            if is_tick:
                step.applied = False
                step.notices.append(Notice(event.event_id, "clock.tick from the future (beyond the wall clock and "
                                           "its tolerance): ignored", "occurred_at", kind="future"))
                return step
            step.notices.append(Notice(event.event_id, "dated beyond the wall clock and its tolerance: judged by "
                                       "its own time; the clock does not follow it", "occurred_at", kind="future"))
            when = ceiling
        if not is_tick and self.owns is not None and not self.owns(event.patient_id):  # type: ignore[attr-defined]
            step.applied = False  # another partition's patient: only event time moves here
            self._move_clock(when, inclusive=False)
            return step
        record = None if is_tick else self._record(event.patient_id)  # type: ignore[attr-defined]
        arrival = when if self.clock is None or when > self.clock else self.clock
        if (record is not None and seq and seq <= record.last_seq) or self._is_duplicate(event, record, digest, arrival):
            step.applied = False  # a redelivery of an event already applied, or a duplicate id
            return step
        heap = self._heap
        self._move_clock(when, inclusive=is_tick and event.inclusive)  # type: ignore[attr-defined]
        if record is not None:
            if seq:
                record.last_seq = seq
            self.dirty.add(record.patient_id)
            self._dispatch(record, event, event.event_id)
        if heap and heap[0][0] < self.clock:
            self._fire_until(self.clock, inclusive=False)  # timers set in the past by a late event
        return step

    def _move_clock(self, when: datetime, inclusive: bool) -> None:
        """Stream time: fire every timer due before ``when`` (at it too if inclusive), then move."""
        if self.clock is None or when >= self.clock:
            if self._heap and self._heap[0][0] <= when:
                self._fire_until(when, inclusive=inclusive)
            self.clock = when

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
        elif type(state) is dict:  # loaded from storage
            state = record.slices[core.name] = load_state(core.state_model, state)
        return state

    def dump(self, record: PatientRecord) -> bytes:
        """A patient's record as stored (JSON); slices never used since loading stay as loaded.

        Assembled from parts: each slice is serialised by pydantic-core (a Python-level walk of
        the state costs ~10x more, and this runs for every changed patient of every batch)."""
        slices = b",".join(
            json.dumps(name).encode() + b":" + (
                json.dumps(state, separators=(",", ":")).encode() if type(state) is dict
                else dump_state_json(self._by_name[name].state_model, state)
            )
            for name, state in record.slices.items()
        )
        timers = [[t.due.isoformat(), t.seq, *name] for name, t in record.timers.items()]
        head = json.dumps({"patient_id": record.patient_id, "last_seq": record.last_seq, "seen16": record.seen.hex(),
                           "timers": timers}, separators=(",", ":")).encode()
        return head[:-1] + b',"slices":{' + slices + b"}}"

    def _is_duplicate(self, event: Event, record: PatientRecord | None, digest: str | None, arrival: datetime) -> bool:
        if digest is None:
            digest = content_digest(event.model_dump_json().encode())
        if self._all_seen is not None or record is None:  # offline (every id) or a clock tick
            seen: dict = self._all_seen if self._all_seen is not None else self.tick_seen
            key: Any = event.event_id if self._all_seen is None else (
                record.patient_id if record is not None else "", event.event_id)
            earlier = seen.get(key)
            if earlier is None:
                seen[key] = digest
                if self._all_seen is None and len(seen) > DEDUP_MEMORY:
                    del seen[next(iter(seen))]
                return False
        else:  # live: every id of the patient's last 24 h (stream time), compactly
            earlier = _remembered(record, _id_hash(event.event_id), bytes.fromhex(digest), arrival)
            if earlier is None:
                return False
        if earlier != digest:
            self._step.notices.append(Notice(
                event.event_id, "duplicate event_id with different content: dropped", "event_id", keep=True,
                kind="duplicate", detail=(("Im-Digest-Earlier", earlier), ("Im-Digest-Received", digest))))
        return True

    def _dispatch(self, record: PatientRecord, event: Any, event_id: str | None) -> None:
        ctx = _Ctx(self, record, None, event_id)
        for core in self._routes.get(event.type, ()):
            ctx.core = core
            core.handle(self._slice(record, core), event, ctx)
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
        timer = Timer(due, self.timer_seq)
        record.timers[name] = timer
        self.dirty.add(record.patient_id)
        heapq.heappush(self._heap, (due, timer.seq, record.patient_id, name))

    def _fire_own(self, record: PatientRecord, core: Core, key: str, kinds: frozenset[str], before: datetime) -> None:
        """One core's timers of these kinds for one key due before ``before``, in due order, timers
        they set included (their heap entries go stale and are skipped)."""
        while True:
            due_now = [(t.due, t.seq, name) for name, t in record.timers.items()
                       if name[0] == core.name and name[2] == key and name[1] in kinds and t.due < before]
            if not due_now:
                return
            due, _, name = min(due_now)
            del record.timers[name]
            self._fire(record, core, name[1], key, due)

    def _fire(self, record: PatientRecord, core: Core, kind: str, key: str, due: datetime) -> None:
        """One timer. A core that fails on it is a defect: the timer is dropped and reported (a
        failing timer would otherwise fail again at every later event and stop all alerting)."""
        ctx = _Ctx(self, record, core, None)
        ctx.now = due
        try:
            core.fire(self._slice(record, core), kind, key, due, ctx)
        except Exception as exc:
            self._step.notices.append(Notice(
                None, f"internal: {core.name} timer {kind} failed with {type(exc).__name__}; dropped", internal=True,
                kind="internal"))

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
            core_name, kind, key = name
            self._fire(record, self._by_name[core_name], kind, key, due)
            self._drain_facts()
