"""``infusion-monitor alerts``: recent alerts and their lifecycle state, from the audit stream.

The bridge writes to ``{NS}_AUDIT`` (``{ns}.audit.<patient>.<type>``) every lifecycle change it
applied (``alert.raised``, ``alert.acknowledged``, ``alert.resolved``, ``alert.escalated``),
every ``page.requested``, every delivery attempt (``page.attempted``) and every delivery state
(``alert.delivery``: sent, retrying, failed, and what an alarm manager reported: received,
delivered, read, accepted, rejected, undeliverable). Folding them gives an alert's state, the
furthest it got: raised < delivered < escalated < acknowledged < resolved, and each
destination's state (its latest ``alert.delivery``, e.g. ``pd1 sent``, ``acm accepted by
nurse-7``, ``pd2 failed (destination_down)``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ..runtime.access import NatsAccess, access_for
from ..runtime.names import Names
from .state import ACKNOWLEDGED, DELIVERED, ESCALATED, RAISED, RESOLVED, STATE_ORDER

SCAN_MAX = 20_000  # audit messages read at most (the most recent ones)
FETCH = 500


@dataclass(slots=True)
class AlertStatus:
    alert_id: str
    patient_id: str = ""
    raised_at: str = ""
    severity: str = ""
    rule: str = ""
    summary: str = ""
    state: str = RAISED
    destinations: list[str] = field(default_factory=list)  # delivered to (a 2xx), in order
    attempts: int = 0
    failed_attempts: int = 0
    acknowledged_by: str | None = None
    resolve_reason: str | None = None
    last_change: str = ""
    deliveries: dict[str, str] = field(default_factory=dict)  # destination -> its latest delivery state

    def delivery_text(self) -> str:
        return ", ".join(f"{dest} {state}" for dest, state in self.deliveries.items()) or "-"

    def advance(self, state: str, at: str) -> None:
        if STATE_ORDER[state] >= STATE_ORDER[self.state]:
            self.state = state
        self.last_change = max(self.last_change, at)


def delivery_label(ev: dict[str, Any]) -> str:
    """``sent``, ``accepted by nurse-7``, ``failed (destination_down)``, ``retrying (connect)``."""
    label = str(ev.get("state", "?"))
    if ev.get("by"):
        label += f" by {ev['by']}"
    elif ev.get("reason") and label in ("failed", "retrying", "rejected", "undeliverable"):
        label += f" ({ev['reason']})"
    return label


def fold(events: Iterable[dict[str, Any]]) -> dict[str, AlertStatus]:
    """Audit events (stream order) -> alert_id -> status."""
    out: dict[str, AlertStatus] = {}
    for ev in events:
        alert_id = ev.get("alert_id")
        if not isinstance(alert_id, str):
            continue
        status = out.get(alert_id) or out.setdefault(alert_id, AlertStatus(alert_id))
        at = str(ev.get("occurred_at", ""))
        match ev.get("type"):
            case "alert.raised":
                status.patient_id, status.raised_at = ev.get("patient_id", ""), at
                status.severity, status.rule = ev.get("severity", ""), ev.get("rule", "")
                status.summary = ev.get("summary", "")
                status.advance(RAISED, at)
            case "page.attempted":
                status.attempts += 1
                if ev.get("delivered"):
                    if ev.get("event_action") == "trigger":
                        status.advance(DELIVERED, at)
                        if ev.get("destination") not in status.destinations:
                            status.destinations.append(ev.get("destination"))
                else:
                    status.failed_attempts += 1
            case "alert.delivery":
                dest = ev.get("destination")
                if isinstance(dest, str):
                    status.deliveries[dest] = delivery_label(ev)
            case "alert.escalated":
                status.advance(ESCALATED, at)
            case "alert.acknowledged":
                status.acknowledged_by = ev.get("by")
                status.advance(ACKNOWLEDGED, at)
            case "alert.resolved":
                status.resolve_reason = ev.get("reason")
                status.advance(RESOLVED, at)
    return out


async def read_audit(js: JetStreamContext, names: Names = Names(), scan: int = SCAN_MAX) -> list[dict[str, Any]]:
    """The last ``scan`` audit events, in stream order (an ephemeral consumer, no acks)."""
    try:
        info = await js.stream_info(names.stream_audit)
    except NotFoundError:
        return []
    state = info.state
    if not state.messages:
        return []
    first = max(state.first_seq, state.last_seq - scan + 1)
    sub = await js.pull_subscribe(f"{names.ns}.audit.>", durable=None, stream=names.stream_audit, config=ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first, ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0))
    events: list[dict[str, Any]] = []
    try:
        for _ in range(scan // FETCH + 2):  # bounded
            try:
                msgs = await sub.fetch(FETCH, timeout=1.0)
            except TimeoutError:
                break
            for msg in msgs:
                try:
                    events.append(json.loads(msg.data))
                except ValueError:
                    continue
            if msgs and msgs[-1].metadata.sequence.stream >= state.last_seq:
                break
    finally:
        await sub.unsubscribe()
    return events


async def recent_alerts(js: JetStreamContext, names: Names = Names(), limit: int = 20) -> list[AlertStatus]:
    """The ``limit`` most recently raised alerts with their state, newest first."""
    statuses = [s for s in fold(await read_audit(js, names)).values() if s.raised_at]
    statuses.sort(key=lambda s: (s.raised_at, s.alert_id), reverse=True)
    return statuses[:limit]


def render(statuses: list[AlertStatus]) -> str:
    header = ("raised_at", "state", "severity", "rule", "patient", "alert_id", "delivered to", "ack by / resolved",
              "per destination")
    rows = [header]
    for s in statuses:
        closing = s.resolve_reason or s.acknowledged_by or ""
        if s.resolve_reason and s.acknowledged_by:
            closing = f"{s.acknowledged_by} / {s.resolve_reason}"
        rows.append((s.raised_at, s.state, s.severity, s.rule, s.patient_id, s.alert_id,
                     ",".join(s.destinations) or "-", closing or "-", s.delivery_text()))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows) + "\n"


async def print_alerts(nats_url: str | NatsAccess, limit: int = 20, names: Names = Names()) -> str:
    nc = await access_for(nats_url).connect_once("operator")
    try:
        return render(await recent_alerts(nc.jetstream(), names, limit))
    finally:
        await nc.close()


def run_alerts(nats_url: str | NatsAccess, limit: int = 20) -> int:
    """``infusion-monitor alerts [--nats URL] [--limit N]``: prints the table, exit 0."""
    print(asyncio.run(print_alerts(nats_url, limit)), end="")
    return 0
