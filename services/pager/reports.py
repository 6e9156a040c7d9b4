"""What the delivery learns, published in order without making a destination's worker wait:

- each attempt as ``page.attempted`` on the audit stream (wall-clock time of the attempt);
- each state as ``alert.delivery`` on the alert stream (the bridge's own consumer applies it: a
  request leaves the outbox, a failed trigger escalates; the board and ``alerts`` show it);
- a destination's condition (down / up) as ``operator.condition``, applied to the engine by the
  runner (operator alerts).

Ids are deterministic, so a report repeated after a restart is dropped by the stream's dedup.
A report that cannot be published after a few tries stops the bridge (crash-only: the outbox in
its state makes the restarted bridge send again what was not confirmed): never a silent loss.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.outbound import AlertDelivery, OperatorCondition, PageAttempted, PageRequested
from infusion_monitor.schemas.vocab import AlertKind, DeliveryState, Severity

from ..engine.ids import stable_id
from ..runtime.names import Names
from .core import OPERATOR_KEY
from .delivery import Attempt

PUBLISH_TRIES = 6


def delivery_event(page: PageRequested, state: DeliveryState, attempts: int | None, reason: str | None,
                   at: datetime) -> AlertDelivery:
    return AlertDelivery(
        type="alert.delivery", event_id=stable_id("ev", "alert.delivery", page.event_id, state.value, reason or ""),
        occurred_at=at, patient_id=page.patient_id, alert_id=page.alert_id, destination=page.destination,
        state=state, event_action=page.event_action, page_event_id=page.event_id, attempts=attempts, reason=reason,
    )


def operator_condition(kind: AlertKind, subject: str, active: bool, summary: str, action: str,
                       evidence: dict[str, Any], at: datetime) -> OperatorCondition:
    """A condition about the product (``kind`` ``system.*``) about ``subject`` began or ended at ``at``."""
    return OperatorCondition(
        event_id=stable_id("ev", "operator.condition", kind.value, subject, active, format_time(at)),
        occurred_at=at, patient_id=OPERATOR_KEY, kind=kind, subject=subject, active=active, severity=Severity.HIGH,
        summary=summary, action=action,
        evidence={k: v for k, v in evidence.items() if isinstance(v, int | str)},
    )


def destination_condition(destination: str, active: bool, detail: dict[str, Any], at: datetime) -> OperatorCondition:
    """``system.destination_down`` for ``destination`` (began or ended at ``at``)."""
    summary = (f"Paging destination {destination!r} is down: alerts for it go to the next tier"
               if active else f"Paging destination {destination!r} is back")
    return operator_condition(AlertKind.SYSTEM_DESTINATION_DOWN, destination, active, summary,
                              "Check the destination's receiver and the network; pages are retried until it answers",
                              {"destination": destination, **detail}, at)


class Reports:
    """The ``Reporter`` of the workers: a queue drained by one task."""

    def __init__(self, js: Any, names: Names, observe: Callable[[OperatorCondition], Awaitable[None]], log: Any,
                 failed: asyncio.Future[BaseException] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 connected: Callable[[], bool] | None = None) -> None:
        """``connected``: whether the broker is there; while it is away, reports wait for it
        (the watchdog pages that) instead of stopping the bridge."""
        self.js, self.names, self.observe, self.log, self.failed, self.now = js, names, observe, log, failed, now
        self.connected = connected
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.published = 0

    # -- the Reporter interface (never blocks) ---------------------------------------------

    def attempt(self, a: Attempt) -> None:
        page = a.page
        record = PageAttempted(
            event_id=stable_id("pa", page.event_id, a.number, format_time(a.at)),
            occurred_at=a.at, patient_id=page.patient_id, page_event_id=page.event_id,
            alert_id=page.alert_id, dedup_key=page.dedup_key, destination=page.destination,
            event_action=page.event_action, attempt=a.number, delivered=a.delivered,
            status_code=a.status_code, error=a.error,
        )
        self.queue.put_nowait(("publish", (self.names.audit(record.type, record.patient_id), record)))

    def state(self, page: PageRequested, state: DeliveryState, attempts: int | None, reason: str | None) -> None:
        event = delivery_event(page, state, attempts, reason, self.now())
        self.queue.put_nowait(("publish", (self.names.outbound(event.type, event.patient_id), event)))

    def condition(self, destination: str, active: bool, detail: dict[str, Any]) -> None:
        self.queue.put_nowait(("observe", destination_condition(destination, active, detail, self.now())))

    # -- the task ---------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="pager-reports")

    async def stop(self, drain_s: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), drain_s)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> None:
        while True:
            kind, item = await self.queue.get()
            try:
                await self._one(kind, item)
            finally:
                self.queue.task_done()

    async def _one(self, kind: str, item: Any) -> None:
        attempt = 0
        while attempt < PUBLISH_TRIES:
            if self.connected is not None and not self.connected():
                await asyncio.sleep(0.5)  # the broker is away: wait (bounded by what is in flight)
                continue
            attempt += 1
            try:
                if kind == "observe":
                    await self.observe(item)
                else:
                    subject, event = item
                    await self.js.publish(subject, event.model_dump_json(exclude_none=True).encode(),
                                          headers={"Nats-Msg-Id": event.event_id})
                self.published += 1
                return
            except Exception as exc:
                if attempt == PUBLISH_TRIES:
                    self.log.critical("delivery report not stored; stopping for a clean restart", kind=kind,
                                      error=repr(exc))
                    if self.failed is not None and not self.failed.done():
                        self.failed.set_result(exc)
                    return
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
