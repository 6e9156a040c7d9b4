"""The bridge's live loop: decode, run the pager engine, publish, store, ack, then hand the
requests to the destinations' queues.

Per batch (one stream at a time, stream order, under one lock shared with the clock):

1. each message is parsed (bad input: a dead letter on ``{ns}.dlq.pager``);
2. the engine (``PagerCore`` only) handles it on its event-time clock;
3. its outputs are published with ``Nats-Msg-Id`` = their deterministic ``event_id``:
   ``alert.escalated`` / ``alert.resolved`` (and operator ``alert.raised``) on the alert stream,
   and everything (the inputs applied, ``page.requested``, escalations, resolutions) on the audit
   stream ``{NS}_AUDIT``;
4. changed patient records (with each alert's outbox of requests not yet delivered) and the meta
   (clock, timer sequence, per-stream cursors) are written to the KV bucket ``{ns}-state-pager``
   with revision checks;
5. the messages are acked, and every ``page.requested`` goes to its destination's queue
   (``delivery.py``): delivery never holds the lock, the batch or the clock. What comes of it
   comes back as ``alert.delivery`` on the alert stream and is handled like any input.

A failure anywhere before 5 stops the bridge (crash-only); after the restart the same messages
come back and the same outputs are computed with the same ids (the streams drop the repeats). At
start, the outboxes in the stored state are queued again, so a request the bridge never
delivered is sent after a restart, with the same ``Idempotency-Key`` / MLLP control id.

**Order.** A consumer filters its stream, so sequence numbers of its messages are not
contiguous; a message that comes back late (lost delivery, crash) is found by asking the stream
for the next message matching the filter after the cursor (``next_by_subj``) and handled
first, like the monitor's gap fill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.outbound import OperatorCondition, PageRequested
from infusion_monitor.schemas.parse import Rejection

from ..engine.bus import Engine, content_digest
from ..runtime.names import ALERT_TYPES, Names
from ..runtime.limits import DeadLetter
from ..worker.store import StateStore
from .core import OPERATOR_KEY, PagerCore, page_from
from .state import PatientAlerts
from .wire import parse_wire

SERVICE = "pager"


@dataclass(frozen=True, slots=True)
class Item:
    stream: str
    seq: int
    subject: str
    data: bytes


Submit = Callable[[list[PageRequested]], None]


class PagerRunner:
    def __init__(self, engine: Engine, js: JetStreamContext, names: Names, store: StateStore,
                 submit: Submit, log: Any, meta: dict[str, Any] | None = None) -> None:
        self.engine, self.js, self.names, self.store = engine, js, names, store
        self.submit, self.log = submit, log
        meta = meta or {}
        self.cursors: dict[str, int] = {k: int(v) for k, v in meta.get("cursors", {}).items()}
        self.filters = {names.stream_alerts: f"{names.ns}.alert.>",
                        names.stream_out: f"{names.ns}.out.*.session.closed"}
        self.lock = asyncio.Lock()
        self.processed = 0
        self.requested = 0
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

            try:
                pages = await self._handle(todo)
            except BaseException:
                self.broken = True  # memory is ahead of storage: nothing more until a restart
                raise
        await asyncio.gather(*(m.ack() for m in msgs))
        self._submit(pages)

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

    async def _handle(self, items: list[Item]) -> list[PageRequested]:
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
            self._log_notices(step.notices)
        pages = await self._commit(outputs, mirrors, dead)
        self.processed += len(items)
        return pages

    async def advance(self, now: datetime, inclusive: bool = False) -> None:
        """The clock: re-pages and escalations due by ``now`` (never waits for a delivery)."""
        async with self.lock:
            if self.broken:
                return
            try:
                step = self.engine.advance(now, inclusive)
                self._log_notices(step.notices)
                pages = await self._commit(step.outputs, [], []) if step.outputs or self.engine.dirty else []
            except BaseException:
                self.broken = True
                raise
        self._submit(pages)

    async def observe(self, event: OperatorCondition) -> None:
        """A condition a shell observed (a destination down or back), applied like an input and
        kept in the audit. An end without an open alert for it changes nothing and is skipped."""
        async with self.lock:
            if self.broken:
                raise RuntimeError("an earlier batch failed: restart to reload the state")
            if not event.active and not self._condition_open(event):
                return
            try:
                step = self.engine.handle(event)
                self._log_notices(step.notices)
                data = event.model_dump_json(exclude_none=True).encode()
                mirrors = [(event.type, event.patient_id, data, event.event_id)] if step.applied else []
                pages = await self._commit(step.outputs, mirrors, [])
            except BaseException:
                self.broken = True
                raise
        self._submit(pages)

    def _condition_open(self, event: OperatorCondition) -> bool:
        if OPERATOR_KEY not in self.engine.records:
            return False
        state = self.engine.state_of(PagerCore.name, OPERATOR_KEY)
        return f"{event.kind.value}/{event.subject}" in state.conditions

    def pending_pages(self) -> list[PageRequested]:
        """Every request in the stored outboxes, oldest first (queued again at start)."""
        pages: list[PageRequested] = []
        for patient_id, record in list(self.engine.records.items()):
            if PagerCore.name not in record.slices:
                continue
            state = self.engine.state_of(PagerCore.name, patient_id)
            for alert in state.alerts.values():
                pages.extend(page_from(alert, entry) for entry in alert.pending.values())
        pages.sort(key=lambda p: (p.occurred_at, p.alert_id, p.destination, p.sequence))
        return pages

    def _submit(self, pages: list[PageRequested]) -> None:
        if pages:
            self.requested += len(pages)
            self.submit(pages)

    # -- output -----------------------------------------------------------------------------

    async def _commit(self, outputs: list[Any], mirrors: list[tuple[str, str, bytes, str]],
                      dead: list[DeadLetter]) -> list[PageRequested]:
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
            body, headers = letter.body_and_headers(SERVICE)
            publishes.append(js.publish(names.dlq(SERVICE), body, headers=headers))
        await asyncio.gather(*publishes)
        meta = {
            "clock": format_time(self.engine.clock) if self.engine.clock else None,
            "timer_seq": self.engine.timer_seq,
            "cursors": self.cursors,
        }
        await self.store.save([(r.patient_id, self.engine.dump(r)) for r in self.engine.take_dirty()], meta)
        return [e for e in outputs if isinstance(e, PageRequested)]

    def _log_notices(self, notices: list[Any]) -> None:
        for notice in notices:
            self.log.warning("pager core warning", event_id=notice.event_id, field=notice.field, reason=notice.reason)

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
        elif event.type == "alert.raised":  # an operator alert (system.*): the product itself
            self.log.error("operator alert raised", alert_id=event.alert_id, kind=event.kind.value,
                           severity=event.severity.value, subject=event.evidence.get("subject"))

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
