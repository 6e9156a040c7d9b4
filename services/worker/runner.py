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

from schemas import Rejection, parse_inbound
from schemas.base import OutboundEvent, format_time

from ..engine.bus import Engine, content_digest
from ..engine.core import Notice
from ..runtime.names import Names
from .store import StateStore

SERVICE = "monitor"
CHECKPOINT_SECONDS = 2.0
CHECKPOINT_MESSAGES = 16384


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    subject: str
    seq: int
    reason: str
    field: str
    kind: str  # "rejected": the whole event; "dropped": a reading, the rest was processed; "duplicate", "unmatched"
    index: int = 0
    msg_id: str | None = None  # default: from the source sequence and index

    def headers(self, service: str) -> dict[str, str]:
        return {
            "Nats-Msg-Id": self.msg_id or f"dlq:{service}:{self.seq}:{self.index}",
            "Im-Service": service,
            "Im-Kind": self.kind,
            "Im-Field": _header_safe(self.field),
            "Im-Reason": _header_safe(self.reason),
            "Im-Source-Subject": self.subject,
            "Im-Source-Seq": str(self.seq),
        }


def _subject_patient(subject: str) -> str:
    """The patient token of an inbound subject (``im.in.<patient>.<type>``)."""
    parts = subject.split(".", 3)
    return parts[2] if len(parts) > 2 else ""


def _header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:500]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One stored inbound message: its stream sequence, subject and original bytes."""

    seq: int
    subject: str
    data: bytes


class MonitorRunner:
    def __init__(self, engine: Engine, js: JetStreamContext, names: Names, store: StateStore,
                 log: Any, meta: dict[str, Any] | None = None, durable: str = "monitor",
                 owns: Callable[[str], bool] | None = None) -> None:
        self.engine = engine
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
                await self._handle(todo)
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
            await self._handle(todo)
            await self._checkpoint(wait=True)
            return len(todo)

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
        for msg in items:
            seq = msg.seq
            event = parse_inbound(msg.data)
            if isinstance(event, Rejection):
                if self.owns is not None and not self.owns(_subject_patient(msg.subject)):
                    continue  # another instance dead-letters it
                dead.append(DeadLetter(msg.data, msg.subject, seq, event.reason, event.field, "rejected"))
                self.log.warning("event rejected", seq=seq, field=event.field, reason=event.reason)
                continue
            step = self.engine.handle(event, seq, content_digest(msg.data))
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
        if notice.payload is not None:  # about an event handled earlier: kept as the core still knows it
            self.counts["unmatched"] += 1
            event = json.loads(notice.payload)
            subject = self.names.inbound(event["type"], event.get("patient_id"))
            dead.append(DeadLetter(notice.payload, subject, 0, notice.reason, notice.field, "unmatched",
                                   msg_id=f"dlq:{SERVICE}:event:{notice.event_id}"))
            self.log.warning("event kept in the dead letters", event_id=notice.event_id, field=notice.field,
                             reason=notice.reason, count=self.counts["unmatched"])
            return
        assert msg is not None
        if notice.rejected or notice.keep:
            kind = "rejected" if notice.rejected else "duplicate"
            self.counts[kind] += 1
            dead.append(DeadLetter(msg.data, msg.subject, seq, notice.reason, notice.field, kind, index))
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
            publishes.append(self.js.publish(self.names.dlq(SERVICE), letter.raw, headers=letter.headers(SERVICE)))
        await asyncio.gather(*publishes)

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
        }
        records = [(r.patient_id, self.engine.dump(r)) for r in self.engine.take_dirty()]
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
        except BaseException as exc:
            self.broken = True
            if self.on_failure is not None:
                self.on_failure(exc)
            raise

    async def flush(self) -> None:
        """Wait for the checkpoint being written (shutdown, tests)."""
        if self._writing is not None:
            await self._writing
