"""The monitor's live loop, free of FastStream: decode, call the engine, publish, checkpoint, ack.

Per fetched batch of inbound messages (stream order = arrival order):

1. each message is parsed; bad input becomes a dead letter (original bytes, subject, reason);
2. valid events go through the engine (every core) on its event-time clock;
3. outputs are published to JetStream with ``Nats-Msg-Id`` = their deterministic ``event_id``
   and the publish acks awaited, at once (alert latency does not wait for anything below);
4. at a **checkpoint** (every ``CHECKPOINT_SECONDS`` or ``CHECKPOINT_MESSAGES``, when idle, and
   at shutdown) the changed patient states and the engine meta (clock, last stream sequence
   handled) are written to the KV bucket, and only then are the messages since the previous
   checkpoint acked.

Batching the state writes and acks is what lets the worker keep up (writing every changed
patient for every batch cost ~250 us a patient). Nothing is lost: a message is acked only
after the checkpoint that holds its state. After a crash the worker reloads the last
checkpoint and first re-reads from the stream every message after it (``catch_up``); patients
already stored skip them by sequence (``last_seq``), the others recompute the same outputs,
which the stream's dedup window drops.

**Order.** The consumer covers the whole inbound stream, so messages are handled in stream-
sequence order. One can come back out of order (a delivery lost in a client, a batch in flight
at a crash): when a batch starts past the last sequence handled, the runner reads the missing
messages from the stream first (gap fill); their later redelivery is skipped and acked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from infusion_monitor.schemas import Rejection, parse_inbound
from infusion_monitor.schemas.base import OutboundEvent, format_time

from ..engine.bus import Engine, content_digest
from ..engine.core import Notice
from ..runtime.limits import SERVER_MAX_PAYLOAD, DeadLetter
from ..runtime.names import Names
from .store import StateStore, StoredState

SERVICE = "monitor"
CHECKPOINT_SECONDS = 2.0
CHECKPOINT_MESSAGES = 16384
RETRIES = 2  # a message a core fails on is tried again this many times, then set aside
QUARANTINE_MEMORY = 256  # set-aside sequences remembered in the stored meta
RECORD_MAX_BYTES = SERVER_MAX_PAYLOAD - 64 * 1024  # a KV value is a message: past this, storing fails


def _subject_type(subject: str) -> str:
    """The event type of an inbound subject (``im.in.<patient>.<type>``)."""
    parts = subject.split(".", 3)
    return parts[3] if len(parts) > 3 else ""


def _subject_patient(subject: str) -> str:
    """The patient token of an inbound subject (``im.in.<patient>.<type>``)."""
    parts = subject.split(".", 3)
    return parts[2] if len(parts) > 2 else ""


@dataclass(frozen=True, slots=True)
class Inbound:
    """One stored inbound message: its stream sequence, subject and original bytes."""

    seq: int
    subject: str
    data: bytes


class HandlingFailed(Exception):
    """A core failed unexpectedly on one message (a defect, not bad input)."""

    def __init__(self, item: Inbound, error: BaseException) -> None:
        super().__init__(f"seq {item.seq}: {type(error).__name__}")
        self.item, self.error = item, error


class MonitorRunner:
    def __init__(self, engine: Engine, js: JetStreamContext, names: Names, store: StateStore,
                 log: Any, meta: dict[str, Any] | None = None, durable: str = "monitor",
                 owns: Callable[[str], bool] | None = None,
                 reload: Callable[[StoredState], Engine] | None = None, retries: int = RETRIES,
                 ceiling: Callable[[], datetime] | None = None) -> None:
        """``reload``: the engine again from a stored checkpoint (to recover from a core failing
        on a message); ``ceiling``: live, the wall clock plus the tolerance no event's time moves
        the clock past (``None``: event time only, as in online replay)."""
        self.engine = engine
        self.reload, self.retries, self.ceiling = reload, retries, ceiling
        self.attempts: Counter[int] = Counter()  # stream seq -> failed attempts
        self.quarantined: dict[int, str] = {int(k): v for k, v in (meta or {}).get("quarantined", {}).items()}
        self.last_error: str | None = None
        self.durable = durable
        self.owns = owns  # scale-out: dead-letter only this partition's unreadable messages
        self.js = js
        self.names = names
        self.store = store
        self.log = log
        self.out_seq = int((meta or {}).get("out_seq", 0))
        self.stream_seq = int((meta or {}).get("stream_seq", 0))  # the last inbound seq handled
        self.lock = asyncio.Lock()
        self.processed = 0
        self.gap_filled = 0
        self.counts: Counter[str] = Counter()  # notices by kind: rejected, duplicate, unmatched
        self.broken = False
        self.unacked: list[Msg] = []
        self.last_checkpoint = time.monotonic()
        self._writing: asyncio.Future[None] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None

    async def process(self, msgs: list[Msg]) -> None:
        """Handle a fetched batch in stream order; ack it at the next checkpoint."""
        batch = sorted(msgs, key=lambda m: m.metadata.sequence.stream)
        async with self.lock:
            todo: list[Inbound] = []
            for msg in batch:
                seq = msg.metadata.sequence.stream
                if seq <= self.stream_seq:
                    continue  # handled already (a late redelivery after a gap fill or a restart)
                if seq > self.stream_seq + 1:
                    todo.extend(await self._read_gap(self.stream_seq + 1, seq))
                todo.append(Inbound(seq, msg.subject, msg.data))
                self.stream_seq = seq
            if self.broken:
                raise RuntimeError("an earlier batch failed: restart to reload the state")
            try:
                await self._handle_recovering(todo)
                self.unacked.extend(msgs)
                if (len(self.unacked) >= CHECKPOINT_MESSAGES
                        or time.monotonic() - self.last_checkpoint >= CHECKPOINT_SECONDS):
                    await self._checkpoint()
            except BaseException:
                self.broken = True  # memory is ahead of storage: nothing more until a restart
                raise

    async def checkpoint(self, wait: bool = False) -> None:
        """Store what changed and ack what it covers (idle moments and shutdown call this)."""
        async with self.lock:
            if not self.broken and (self.unacked or self.engine.dirty):
                await self._checkpoint(wait)
        if wait:
            await self.flush()

    async def catch_up(self) -> int:
        """At start: handle every message after the last checkpoint that the consumer had
        already delivered (to the crashed process), straight from the stream, in order."""
        info = await self.js.consumer_info(self.names.stream_in, self.durable)
        delivered = info.delivered.stream_seq
        async with self.lock:
            if delivered <= self.stream_seq:
                return 0
            todo = await self._read_gap(self.stream_seq + 1, delivered + 1)
            self.stream_seq = delivered
            await self._handle_recovering(todo)
            await self._checkpoint(wait=True)
            return len(todo)

    async def _handle_recovering(self, items: list[Inbound]) -> None:
        """Handle these messages; when a core fails on one, recover instead of stopping
        (architecture.md rule 9: no single input stops a service)."""
        while True:
            try:
                await self._handle(items)
                return
            except HandlingFailed as failed:
                items = await self._recover(failed)

    async def _recover(self, failed: HandlingFailed) -> list[Inbound]:
        """The engine's memory may be half-way through the failed message: reload the last
        checkpoint and read again everything after it (outputs are recomputed with the same ids;
        the stream's dedup drops what was published already). After ``retries`` failed attempts
        the message is set aside (``quarantined``): dead-lettered with the error's type, never its
        content in a log, and skipped."""
        seq, error = failed.item.seq, type(failed.error).__name__
        self.attempts[seq] += 1
        self.last_error = f"{error} on stream seq {seq}"
        self.log.error("a core failed on a message; reloading the last checkpoint", seq=seq, error=error,
                       attempt=self.attempts[seq], retries=self.retries)
        if self.reload is None:
            raise failed.error
        if self.attempts[seq] > self.retries:
            self.quarantined[seq] = error
            self.counts["quarantined"] += 1
        await self.flush()
        stored = await self.store.load()
        self.engine = self.reload(stored)
        checkpoint = int(stored.meta.get("stream_seq", 0))
        return await self._read_gap(checkpoint + 1, self.stream_seq + 1)

    async def _read_gap(self, first: int, end: int) -> list[Inbound]:
        found = []
        first = max(first, (await self.js.stream_info(self.names.stream_in)).state.first_seq)
        for seq in range(first, end):
            try:
                raw = await self.js.get_msg(self.names.stream_in, seq)
            except NotFoundError:
                continue  # deleted or expired: a real gap
            found.append(Inbound(seq, raw.subject, raw.data or b""))
        if found:
            self.gap_filled += len(found)
            self.log.warning("inbound messages read from the stream to keep arrival order",
                             first_seq=found[0].seq, count=len(found))
        return found

    async def _handle(self, items: list[Inbound]) -> None:
        outputs: list[OutboundEvent] = []
        dead: list[DeadLetter] = []
        ceiling = self.ceiling() if self.ceiling is not None else None
        for msg in items:
            seq = msg.seq
            if seq in self.quarantined:
                dead.append(DeadLetter(msg.data, msg.subject, seq, f"set aside: the monitor failed on it "
                                       f"({self.quarantined[seq]}) {self.retries + 1} times", "", "quarantined",
                                       msg_id=f"dlq:{SERVICE}:{seq}:quarantined"))
                self.log.error("message set aside after repeated failures", seq=seq, error=self.quarantined[seq])
                continue
            event = parse_inbound(msg.data)
            if not isinstance(event, Rejection) and event.type != _subject_type(msg.subject):
                # permissions are by subject: a clock.tick body (only the product may publish ticks)
                # or any other type on another type's subject would slip past them
                event = Rejection("type", f"a {event.type} event on a subject for {_subject_type(msg.subject)!r} "
                                          "events: publish each type on its own subject")
            if isinstance(event, Rejection):
                if self.owns is not None and not self.owns(_subject_patient(msg.subject)):
                    continue  # another instance dead-letters it
                dead.append(DeadLetter(msg.data, msg.subject, seq, event.reason, event.field, "rejected"))
                self.log.warning("event rejected", seq=seq, field=event.field, reason=event.reason)
                continue
            try:
                step = self.engine.handle(event, seq, content_digest(msg.data), ceiling)
            except Exception as exc:
                raise HandlingFailed(msg, exc) from exc
            dropped_readings = event.dropped if step.applied and event.type == "vitals.recorded" else ()
            for i, dropped in enumerate(dropped_readings, start=1):
                dead.append(DeadLetter(msg.data, msg.subject, seq, dropped.reason, dropped.field, "dropped", i))
                self.log.warning("reading dropped", seq=seq, event_id=event.event_id,
                                 field=dropped.field, reason=dropped.reason)
            outputs.extend(step.outputs)
            for n, notice in enumerate(step.notices, start=100):
                self._notice(notice, msg, seq, n, dead)
        await self._publish(outputs, dead)
        self.processed += len(items)

    async def advance(self, now: datetime, inclusive: bool = False) -> None:
        async with self.lock:
            if self.broken:
                return
            step = self.engine.advance(now, inclusive)
            dead: list[DeadLetter] = []
            for n, notice in enumerate(step.notices, start=100):
                self._notice(notice, None, 0, n, dead)
            if step.outputs or dead:
                await self._publish(step.outputs, dead)
            if self.engine.dirty and time.monotonic() - self.last_checkpoint >= CHECKPOINT_SECONDS:
                await self._checkpoint()

    def _notice(self, notice: Notice, msg: Inbound | None, seq: int, index: int, dead: list[DeadLetter]) -> None:
        kind = notice.kind or ("rejected" if notice.rejected else "warning")
        self.counts[kind] += 1
        if notice.internal:
            self.last_error = notice.reason
            self.log.error("internal error", reason=notice.reason)
        elif notice.payload is not None:  # about an event handled earlier: kept as the core still knows it
            event = json.loads(notice.payload)
            subject = self.names.inbound(event["type"], event.get("patient_id"))
            dead.append(DeadLetter(notice.payload, subject, 0, notice.reason, notice.field, kind,
                                   msg_id=f"dlq:{SERVICE}:event:{notice.event_id}"))
            self.log.warning("event kept in the dead letters", event_id=notice.event_id, field=notice.field,
                             reason=notice.reason, count=self.counts[kind])
        elif msg is not None and (notice.rejected or notice.keep):
            dead.append(DeadLetter(msg.data, msg.subject, seq, notice.reason, notice.field, kind, index,
                                   extra=notice.detail))
            self.log.warning(f"event {kind}", seq=seq, event_id=notice.event_id, field=notice.field, reason=notice.reason)
        else:
            self.log.info("warning", seq=seq, event_id=notice.event_id, field=notice.field, reason=notice.reason)

    async def _publish(self, outputs: list[OutboundEvent], dead: list[DeadLetter]) -> None:
        publishes = []
        for event in outputs:
            self.out_seq += 1
            headers = {"Nats-Msg-Id": event.event_id, "Im-Order": str(self.out_seq)}
            publishes.append(self.js.publish(
                self.names.outbound(event.type, event.patient_id),
                event.model_dump_json(exclude_none=True).encode(), headers=headers))
            if event.type == "alert.raised":
                self.log.info("alert raised", alert_id=event.alert_id, rule=event.rule.value,
                              severity=event.severity.value, session_id=event.session_id,
                              patient=event.patient_id, at=format_time(event.occurred_at))
        for letter in dead:
            body, headers = letter.body_and_headers(SERVICE)
            publishes.append(self.js.publish(self.names.dlq(SERVICE), body, headers=headers))
        acks = await asyncio.gather(*publishes)
        # outputs published again after a recovery or a restart: the stream dropped them (counted)
        self.counts["republished"] += sum(1 for ack in acks if getattr(ack, "duplicate", False))

    async def _checkpoint(self, wait: bool = False) -> None:
        """Take a consistent snapshot of what changed (under the lock: serialising is fast) and
        write it in the background, so new batches are handled while the KV writes are in
        flight. Checkpoints are written one after another; acks follow their own write."""
        meta = {
            "clock": format_time(self.engine.clock) if self.engine.clock else None,
            "timer_seq": self.engine.timer_seq,
            "tick_seen": self.engine.tick_seen,
            "out_seq": self.out_seq,
            "stream_seq": self.stream_seq,
            "quarantined": {str(k): v for k, v in sorted(self.quarantined.items())[-QUARANTINE_MEMORY:]},
        }
        records = [(r.patient_id, self.engine.dump(r)) for r in self.engine.take_dirty()]
        if any(len(data) > RECORD_MAX_BYTES for _, data in records):  # a defect: the bounds should prevent it
            for patient, data in records:
                if len(data) > RECORD_MAX_BYTES:
                    self.counts["oversized"] += 1
                    self.last_error = "a patient's state grew too large to store"
                    self.log.critical("patient state too large to store: kept in memory only", patient=patient,
                                      size=len(data))
            records = [(p, d) for p, d in records if len(d) <= RECORD_MAX_BYTES]
        acks, self.unacked = self.unacked, []
        self.last_checkpoint = time.monotonic()
        previous = self._writing
        self._writing = asyncio.ensure_future(self._write(previous, records, meta, acks))
        if wait:
            await self._writing

    async def _write(self, previous: asyncio.Future[None] | None, records: list[tuple[str, bytes]],
                     meta: dict[str, Any], acks: list[Msg]) -> None:
        if previous is not None:
            await previous
        try:
            await self.store.save(records, meta)
            await asyncio.gather(*(m.ack() for m in acks))
        except asyncio.CancelledError:
            self.broken = True  # stopped (a user's Ctrl-C): not a failure to report
            raise
        except BaseException as exc:
            self.broken = True
            if self.on_failure is not None:
                self.on_failure(exc)
            raise

    async def flush(self) -> None:
        """Wait for the checkpoint being written (shutdown, tests)."""
        if self._writing is not None:
            await self._writing
