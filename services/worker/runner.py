"""The monitor's live loop, free of FastStream: decode, call the engine, store, publish, ack.

Per batch of inbound messages (stream order = arrival order):

1. each message is parsed; bad input becomes a dead letter (original bytes, subject, reason);
2. valid events go through the engine (every core) on its event-time clock;
3. outputs are published to JetStream with ``Nats-Msg-Id`` = their deterministic ``event_id``
   (a redelivery republishes the same ids, and the stream drops them), dead letters likewise;
4. changed patient states and the engine's meta are written to the KV bucket;
5. only then are the messages acked.

A crash anywhere before 5 redelivers the batch: patients whose state was already stored skip
it (``last_seq``), the rest recompute the same outputs, which the stream deduplicates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from schemas import Rejection, parse_inbound
from schemas.base import OutboundEvent, format_time

from ..engine.bus import Engine
from ..engine.core import Notice
from ..runtime.names import Names
from .store import StateStore

SERVICE = "monitor"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    subject: str
    seq: int
    reason: str
    field: str
    kind: str  # "rejected": the whole event; "dropped": a reading, the rest was processed
    index: int = 0

    def headers(self, service: str) -> dict[str, str]:
        return {
            "Nats-Msg-Id": f"dlq:{service}:{self.seq}:{self.index}",
            "Im-Service": service,
            "Im-Kind": self.kind,
            "Im-Field": _header_safe(self.field),
            "Im-Reason": _header_safe(self.reason),
            "Im-Source-Subject": self.subject,
            "Im-Source-Seq": str(self.seq),
        }


def _header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:500]


class MonitorRunner:
    def __init__(self, engine: Engine, js: JetStreamContext, names: Names, store: StateStore,
                 log: Any, meta: dict[str, Any] | None = None) -> None:
        self.engine = engine
        self.js = js
        self.names = names
        self.store = store
        self.log = log
        self.out_seq = int((meta or {}).get("out_seq", 0))
        self.lock = asyncio.Lock()
        self.processed = 0

    async def process(self, msgs: list[Msg]) -> None:
        async with self.lock:
            outputs: list[OutboundEvent] = []
            dead: list[DeadLetter] = []
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                event = parse_inbound(msg.data)
                if isinstance(event, Rejection):
                    dead.append(DeadLetter(msg.data, msg.subject, seq, event.reason, event.field, "rejected"))
                    self.log.warning("event rejected", seq=seq, field=event.field, reason=event.reason)
                    continue
                step = self.engine.handle(event, seq)
                for i, dropped in enumerate(getattr(event, "dropped", ()) if step.applied else (), start=1):
                    dead.append(DeadLetter(msg.data, msg.subject, seq, dropped.reason, dropped.field, "dropped", i))
                    self.log.warning("reading dropped", seq=seq, event_id=event.event_id,
                                     field=dropped.field, reason=dropped.reason)
                outputs.extend(step.outputs)
                for n, notice in enumerate(step.notices, start=100):
                    self._notice(notice, msg, seq, n, dead)
            await self._commit(outputs, dead)
            self.processed += len(msgs)
        await asyncio.gather(*(m.ack() for m in msgs))

    async def advance(self, now: datetime, inclusive: bool = False) -> None:
        async with self.lock:
            step = self.engine.advance(now, inclusive)
            if step.outputs or self.engine.dirty:
                await self._commit(step.outputs, [])

    def _notice(self, notice: Notice, msg: Msg, seq: int, index: int, dead: list[DeadLetter]) -> None:
        if notice.rejected:
            dead.append(DeadLetter(msg.data, msg.subject, seq, notice.reason, notice.field, "rejected", index))
            self.log.warning("event rejected", seq=seq, event_id=notice.event_id, field=notice.field, reason=notice.reason)
        else:
            self.log.info("warning", seq=seq, event_id=notice.event_id, field=notice.field, reason=notice.reason)

    async def _commit(self, outputs: list[OutboundEvent], dead: list[DeadLetter]) -> None:
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
        meta = {
            "clock": format_time(self.engine.clock) if self.engine.clock else None,
            "timer_seq": self.engine.timer_seq,
            "tick_seen": self.engine.tick_seen,
            "out_seq": self.out_seq,
        }
        await self.store.save(self.engine.take_dirty(), meta)
