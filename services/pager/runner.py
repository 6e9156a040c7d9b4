"""The bridge's live loop: decode, run the pager engine, publish, deliver, store, ack.

Per batch (one stream at a time, stream order, under one lock shared with the clock):

1. each message is parsed (bad input: a dead letter on ``{ns}.dlq.pager``);
2. the engine (``PagerCore`` only) handles it on its event-time clock;
3. its outputs are published with ``Nats-Msg-Id`` = their deterministic ``event_id``:
   ``alert.escalated`` / ``alert.resolved`` on the alert stream, and everything (the inputs
   applied, ``page.requested``, escalations, resolutions) on the audit stream ``{NS}_AUDIT``;
4. every ``page.requested`` is delivered over HTTP (``delivery.py``), in order per destination,
   and each attempt with its result goes to the audit stream (``page.attempted``);
5. changed patient records and the meta (clock, timer sequence, per-stream cursors) are written
   to the KV bucket ``{ns}-state-pager`` with revision checks;
6. only then are the messages acked.

A failure anywhere before 6 (a receiver that stays down past its attempts included) stops the
bridge (crash-only); after the restart the same messages come back, the same outputs are
computed with the same ids (the streams drop the repeats) and the same requests are sent with
the same ``Idempotency-Key``: at least once on the wire, exactly once per key at the receiver.

**Order.** A consumer filters its stream, so sequence numbers of its messages are not
contiguous; a message that comes back late (lost delivery, crash) is found by asking the stream
for the next message matching the filter after the cursor (``next_by_subj``) and handled
first, like the monitor's gap fill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from schemas.base import format_time
from schemas.outbound import PageAttempted, PageRequested
from schemas.parse import Rejection

from ..engine.bus import Engine, content_digest
from ..engine.ids import stable_id
from ..runtime.names import ALERT_TYPES, Names
from ..worker.runner import DeadLetter
from ..worker.store import StateStore
from .core import PagerCore
from .delivery import Attempt, Deliverer
from .state import PatientAlerts
from .wire import parse_wire

SERVICE = "pager"


@dataclass(frozen=True, slots=True)
class Item:
    stream: str
    seq: int
    subject: str
    data: bytes


class PagerRunner:
    def __init__(self, engine: Engine, js: JetStreamContext, names: Names, store: StateStore,
                 deliverer: Deliverer, log: Any, meta: dict[str, Any] | None = None) -> None:
        self.engine, self.js, self.names, self.store = engine, js, names, store
        self.deliverer, self.log = deliverer, log
        deliverer.on_attempt = self._record_attempt  # each attempt is in the audit as it happens
        meta = meta or {}
        self.cursors: dict[str, int] = {k: int(v) for k, v in meta.get("cursors", {}).items()}
        self.filters = {names.stream_alerts: f"{names.ns}.alert.>",
                        names.stream_out: f"{names.ns}.out.*.session.closed"}
        self.lock = asyncio.Lock()
        self.processed = 0
        self.delivered = 0
        self.broken = False

    # -- input ------------------------------------------------------------------------------

    async def process(self, stream: str, msgs: list[Msg]) -> None:
        """Handle a fetched batch of one stream in stream order, deliver, store, then ack."""
        batch = sorted(msgs, key=lambda m: m.metadata.sequence.stream)
        async with self.lock:
            if self.broken:
                raise RuntimeError("an earlier batch failed: restart to reload the state")
            cursor = self.cursors.get(stream, 0)
            todo: list[Item] = []
            for msg in batch:
                seq = msg.metadata.sequence.stream
                if seq <= cursor:
                    continue  # handled already (a late redelivery after a gap fill or a restart)
                if seq > cursor + 1:
                    todo.extend(await self._read_gap(stream, cursor + 1, seq))
                todo.append(Item(stream, seq, msg.subject, msg.data))
                cursor = seq
            self.cursors[stream] = cursor

            async def keepalive() -> None:  # long retries: keep the server from redelivering
                await asyncio.gather(*(m.in_progress() for m in msgs), return_exceptions=True)

            try:
                await self._handle(todo, keepalive)
            except BaseException:
                self.broken = True  # memory is ahead of storage: nothing more until a restart
                raise
        await asyncio.gather(*(m.ack() for m in msgs))

    async def _read_gap(self, stream: str, first: int, end: int) -> list[Item]:
        """Messages matching the consumer's filter with ``first <= seq < end`` (usually none)."""
        found: list[Item] = []
        seq = first
        while seq < end:  # bounded: every step moves seq forward
            try:
                raw = await self.js.get_msg(stream, seq, subject=self.filters[stream], next=True)
            except NotFoundError:
                break
            if raw.seq is None or raw.seq >= end:
                break
            found.append(Item(stream, raw.seq, raw.subject or "", raw.data or b""))
            seq = raw.seq + 1
        if found:
            self.log.warning("messages read from the stream to keep order", stream=stream,
                             first_seq=found[0].seq, count=len(found))
        return found

    async def _handle(self, items: list[Item], keepalive: Callable[[], Awaitable[None]] | None) -> None:
        outputs: list[Any] = []
        mirrors: list[tuple[str, str, bytes, str]] = []  # (event type, patient, bytes, event id)
        dead: list[DeadLetter] = []
        for item in items:
            event = parse_wire(item.data, item.subject)
            if event is None:
                continue
            if isinstance(event, Rejection):
                dead.append(DeadLetter(item.data, item.subject, item.seq, event.reason, event.field, "rejected"))
                self.log.warning("event rejected", seq=item.seq, stream=item.stream, field=event.field,
                                 reason=event.reason)
                continue
            step = self.engine.handle(event, 0, content_digest(item.data))
            if step.applied:
                mirrors.append((event.type, event.patient_id, item.data, event.event_id))
            outputs.extend(step.outputs)
            for notice in step.notices:
                self.log.info("warning", event_id=notice.event_id, field=notice.field, reason=notice.reason)
        await self._commit(outputs, mirrors, dead, keepalive)
        self.processed += len(items)

    async def advance(self, now: datetime, inclusive: bool = False) -> None:
        async with self.lock:
            if self.broken:
                return
            try:
                step = self.engine.advance(now, inclusive)
                if step.outputs or self.engine.dirty:
                    await self._commit(step.outputs, [], [], None)
            except BaseException:
                self.broken = True
                raise

    # -- output -----------------------------------------------------------------------------

    async def _commit(self, outputs: list[Any], mirrors: list[tuple[str, str, bytes, str]],
                      dead: list[DeadLetter], keepalive: Callable[[], Awaitable[None]] | None) -> None:
        js, names = self.js, self.names
        publishes = []
        for event_type, patient, data, event_id in mirrors:
            publishes.append(js.publish(names.audit(event_type, patient), data, headers={"Nats-Msg-Id": event_id}))
        for event in outputs:
            data = event.model_dump_json(exclude_none=True).encode()
            headers = {"Nats-Msg-Id": event.event_id}
            if event.type in ALERT_TYPES:
                publishes.append(js.publish(names.outbound(event.type, event.patient_id), data, headers=headers))
            publishes.append(js.publish(names.audit(event.type, event.patient_id), data, headers=headers))
            self._log_output(event)
        for letter in dead:
            publishes.append(js.publish(names.dlq(SERVICE), letter.raw, headers=letter.headers(SERVICE)))
        await asyncio.gather(*publishes)
        pages = [e for e in outputs if isinstance(e, PageRequested)]
        if pages:
            attempts: list[Attempt] = []
            await self.deliverer.deliver_all(pages, keepalive, attempts)
            self.delivered += sum(a.delivered for a in attempts)
        meta = {
            "clock": format_time(self.engine.clock) if self.engine.clock else None,
            "timer_seq": self.engine.timer_seq,
            "cursors": self.cursors,
        }
        await self.store.save([(r.patient_id, self.engine.dump(r)) for r in self.engine.take_dirty()], meta)

    async def _record_attempt(self, a: Attempt) -> None:
        """One ``page.attempted`` on the audit stream (the wall-clock time of the attempt)."""
        page = a.page
        record = PageAttempted(
            event_id=stable_id("pa", page.event_id, a.number, format_time(a.at)),
            occurred_at=a.at, patient_id=page.patient_id, page_event_id=page.event_id,
            alert_id=page.alert_id, dedup_key=page.dedup_key, destination=page.destination,
            event_action=page.event_action, attempt=a.number, delivered=a.delivered,
            status_code=a.status_code, error=a.error,
        )
        await self.js.publish(self.names.audit(record.type, record.patient_id),
                              record.model_dump_json(exclude_none=True).encode(),
                              headers={"Nats-Msg-Id": record.event_id})

    def _log_output(self, event: Any) -> None:
        if event.type == "page.requested":
            self.log.info("page requested", alert_id=event.alert_id, destination=event.destination,
                          action=event.event_action, tier=event.tier, sequence=event.sequence,
                          severity=event.severity.value, rule=event.alert.get("rule"))
        elif event.type == "alert.escalated":
            self.log.warning("alert escalated", alert_id=event.alert_id, to_tier=event.to_tier,
                             failsafe=event.failsafe, severity=event.severity.value)
        elif event.type == "alert.resolved":
            self.log.info("alert resolved", alert_id=event.alert_id, reason=event.reason.value)

    # -- lookups for the acknowledgement endpoint ---------------------------------------------

    def locate(self, alert_id: str | None = None, dedup_key: str | None = None) -> tuple[str, str] | None:
        """(patient_id, alert_id) of a known alert, by id or dedup key."""
        for patient_id, record in self.engine.records.items():
            state = record.slices.get(PagerCore.name)
            if state is None:
                continue
            alerts = state.alerts if isinstance(state, PatientAlerts) else None
            if alerts is None:  # still as loaded from storage
                raw = state.get("alerts", {}) if isinstance(state, dict) else {}
                for aid, data in raw.items():
                    if aid == alert_id or (dedup_key is not None and data.get("dedup_key") == dedup_key):
                        return patient_id, aid
                continue
            if alert_id is not None and alert_id in alerts:
                return patient_id, alert_id
            if dedup_key is not None:
                for aid, alert in alerts.items():
                    if alert.dedup_key == dedup_key:
                        return patient_id, aid
        return None
