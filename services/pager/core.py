"""The pager core: pure, synchronous, event time only. Decides *what* goes *where* and *when*.

Per alert (``docs/paging.md``):

- ``alert.raised``: the first route matching its severity and site gives the tiers (operator
  alerts, ``system.*``, take the operator route). Tier 1 is paged at the alert's ``occurred_at``
  (``page.requested`` with ``event_action: trigger`` per destination); re-pages every
  ``repage_after`` (``repeats`` times, strictly before ``escalate_after``); at tier start +
  ``escalate_after`` the next tier is paged (``alert.escalated``); after the last tier, the
  route's failsafe. A route's ``fhir`` destination gets every alert once. An alert that names
  another in ``supersedes`` resolves it (``alert.resolved``, reason ``superseded``).
- ``alert.acknowledged``: escalation stops; every destination that got a trigger gets an
  ``acknowledge``, except the pager the acknowledgement came from (``via: pager`` names it in
  ``destination``; a pager acknowledgement without it is relayed to no one): no echo loops.
- ``alert.resolved``: escalation stops; every destination that got a trigger gets a ``resolve``.
- ``alert.delivery``: a request the destination took (``sent``) or refused for good leaves the
  outbox; a trigger that ``failed`` (refused, or the destination is down past its cap), was
  ``rejected`` or is ``undeliverable`` at a destination of the current tier escalates the alert
  at once, as if its tier had timed out.
- ``session.closed``: every open alert of the session is resolved (reason ``session_closed``);
  one that was paged and never acknowledged first goes to the failsafe (which keeps it open).
  Whatever the alert's age: an open alert of a session not yet closed is never forgotten (see
  ``FORGET``), and an alert dated at or before its session's close that arrives after the
  ``session.closed`` (the alert and output streams are read by two consumers, in no common
  order) is resolved as soon as it arrives.
- ``operator.condition`` (operator key only): a condition about the product began or ended;
  one operator alert per condition and subject is raised, and resolved when it ends.

Every ``page.requested`` also goes into the alert's outbox (``pending``) in the same state
write, so a bridge that stops before delivering sends it after its restart. The shell performs
the requests; the core never does I/O and never reads a clock.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, ClassVar

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.outbound import AlertEscalated, AlertRaised, AlertResolved, PageRequested
from infusion_monitor.schemas.vocab import ESCALATING_STATES, AckVia, DeliveryState, ResolveReason, Rule, Severity

from ..engine.core import Context
from ..engine.ids import stable_id
from .routes import OPERATOR_KIND_PREFIX, PagerRoutes, Route
from .state import CLOSED_SESSIONS_KEPT, PatientAlerts, TrackedAlert

REPAGE, ESCALATE, FORGET = "repage", "escalate", "forget"
TRIGGER, ACKNOWLEDGE, RESOLVE = "trigger", "acknowledge", "resolve"
OPERATOR_KEY = "_operator"  # the patient key operator alerts are filed under (never a patient's)
DOWN = "destination_down"  # the reason of a ``failed`` delivery whose request is still being retried
PAGER_PRINCIPAL = "pager"  # who resolves an operator alert whose condition ended


def alert_site(alert: Any) -> str | None:
    """The site of an alert: a ``site_id`` field (a producer may add it), else in the evidence."""
    site = getattr(alert, "site_id", None)
    if site is None and isinstance(alert.evidence, dict):
        site = alert.evidence.get("site_id")
    return site if isinstance(site, str) else None


def _json(event: Any) -> dict[str, Any]:
    return json.loads(event.model_dump_json(exclude_none=True))


def page_from(alert: TrackedAlert, entry: dict[str, Any]) -> PageRequested:
    """A pending request of the outbox as the ``page.requested`` it was (the same bytes)."""
    return PageRequested.model_validate({**entry, "alert": alert.alert})


class PagerCore:
    name: ClassVar[str] = "pager"
    state_model: ClassVar[type] = PatientAlerts
    handles: ClassVar[frozenset[str]] = frozenset({
        "alert.raised", "alert.acknowledged", "alert.resolved", "alert.delivery", "session.closed",
        "operator.condition",
    })

    def __init__(self, routes: PagerRoutes) -> None:
        self.routes = routes

    # -- events -----------------------------------------------------------------------------

    def handle(self, st: PatientAlerts, event: Any, ctx: Context) -> None:
        match event.type:
            case "alert.raised":
                self._raised(st, event, ctx)
            case "alert.acknowledged":
                self._acknowledged(st, event, ctx)
            case "alert.resolved":
                self._resolved(st, event, ctx)
            case "alert.delivery":
                self._delivery(st, event, ctx)
            case "session.closed":
                self._session_closed(st, event, ctx)
            case "operator.condition":
                self._condition(st, event, ctx)

    def fire(self, st: PatientAlerts, kind: str, key: str, due: datetime, ctx: Context) -> None:
        alert = st.alerts.get(key)
        if alert is None:
            return
        if kind == FORGET:
            if not alert.resolved and alert.session_id is not None and alert.session_id not in st.closed_sessions:
                return  # its session is open: kept until the close resolves it (then forgotten after memory_hours)
            if alert.pending:
                ctx.warn(f"alert {alert.alert_id} forgotten with {len(alert.pending)} request(s) never delivered")
            del st.alerts[key]
            return
        if alert.acknowledged or alert.resolved:
            return  # (its timers are cancelled; kept for safety with older stored state)
        route = self.routes.route_named(alert.route)
        if route is None or not 1 <= alert.tier <= len(route.tiers):
            ctx.warn(f"route {alert.route!r} changed: alert {alert.alert_id} is not escalated further")
            return
        if kind == REPAGE:
            alert.repages += 1
            tier = route.tiers[alert.tier - 1]
            for dest in self._targets(alert, tier.destinations):
                self._page(alert, dest, TRIGGER, route, due, ctx)
            self._arm_repage(alert, route, ctx)
        elif kind == ESCALATE:
            self._escalate(alert, route, due, ctx)

    def _raised(self, st: PatientAlerts, ev: Any, ctx: Context) -> None:
        if ev.alert_id in st.alerts:
            return  # the same alert again (a repeat, a redelivery, or our own operator alert back)
        severity = Severity(ev.severity)
        kind = getattr(ev.kind, "value", ev.kind)
        route = self.routes.route_for(severity, alert_site(ev), kind)
        old = st.alerts.get(ev.supersedes) if ev.supersedes else None
        evidence = ev.evidence if isinstance(ev.evidence, dict) else {}
        avoid = evidence.get("destination") if kind.startswith(OPERATOR_KIND_PREFIX) else None
        alert = TrackedAlert(
            alert_id=ev.alert_id, dedup_key=ev.dedup_key, severity=severity.value, route=route.name,
            raised_at=ev.occurred_at, alert=_json(ev), session_id=ev.session_id,
            superseded_severity=old.severity if old is not None else None,
            avoid=avoid if isinstance(avoid, str) else None,
        )
        st.alerts[ev.alert_id] = alert
        at = ev.occurred_at
        if route.tiers:
            self._enter_tier(alert, route, 1, at, ctx)
        if route.fhir:
            self._page(alert, route.fhir, TRIGGER, route, at, ctx)
        ctx.set_timer(at + timedelta(days=self.routes.acknowledged_memory_days), FORGET, alert.alert_id)
        if old is not None and not old.resolved:
            ctx.emit(self._resolution(old, ResolveReason.SUPERSEDED, at, ctx.patient_id))
        closed_at = st.closed_sessions.get(ev.session_id) if ev.session_id else None
        if closed_at is not None and at <= closed_at:  # its session.closed came first
            ctx.emit(self._resolution(alert, ResolveReason.SESSION_CLOSED, closed_at, ctx.patient_id))

    def _acknowledged(self, st: PatientAlerts, ev: Any, ctx: Context) -> None:
        alert = st.alerts.get(ev.alert_id)
        if alert is None:
            ctx.warn("acknowledgement of an alert the pager does not know", "alert_id")
            return
        if alert.acknowledged or alert.resolved:
            return
        alert.acknowledged, alert.acknowledged_by = True, ev.by
        self._stop(alert, ctx)
        at = ev.occurred_at
        if AckVia(ev.via) is AckVia.PAGER:
            origin = (ev.model_extra or {}).get("destination")
            # no echo: never back to the pager it came from; unknown origin: to no one
            targets = [d for d in alert.triggered if d != origin] if isinstance(origin, str) else []
        else:
            targets = list(alert.triggered)
        route = self.routes.route_named(alert.route)
        lifecycle = _json(ev)
        for dest in targets:
            self._page(alert, dest, ACKNOWLEDGE, route, at, ctx, lifecycle)

    def _resolved(self, st: PatientAlerts, ev: Any, ctx: Context) -> None:
        alert = st.alerts.get(ev.alert_id)
        if alert is None:
            ctx.warn("resolution of an alert the pager does not know", "alert_id")
            return
        if alert.resolved:
            return
        at = ev.occurred_at
        route = self.routes.route_named(alert.route)
        reason = ResolveReason(ev.reason)
        unacknowledged_page = alert.tier > 0 and not alert.acknowledged
        alert.resolved, alert.resolve_reason = True, reason.value
        self._stop(alert, ctx)
        keep_open: set[str] = set()
        if (reason is ResolveReason.SESSION_CLOSED and unacknowledged_page and route is not None
                and route.failsafe and not alert.failsafe and self.routes.failsafe_on_unacknowledged_close):
            self._to_failsafe(alert, route, at, ctx)
            keep_open.add(route.failsafe)  # someone has to look at why nobody acknowledged it
        lifecycle = _json(ev)
        for dest in list(alert.triggered):
            if dest not in keep_open:
                self._page(alert, dest, RESOLVE, route, at, ctx, lifecycle)
        ctx.set_timer(at + timedelta(hours=self.routes.memory_hours), FORGET, alert.alert_id)

    def _delivery(self, st: PatientAlerts, ev: Any, ctx: Context) -> None:
        alert = st.alerts.get(ev.alert_id)
        if alert is None:
            ctx.warn("delivery report of an alert the pager does not know", "alert_id")
            return
        state = DeliveryState(ev.state)
        if ev.page_event_id and (state is DeliveryState.SENT or (state is DeliveryState.FAILED and ev.reason != DOWN)):
            alert.pending.pop(ev.page_event_id, None)  # done with: taken, or refused for good
        if state not in ESCALATING_STATES or ev.event_action not in (None, TRIGGER):
            return
        if alert.acknowledged or alert.resolved:
            return
        route = self.routes.route_named(alert.route)
        if route is None or not 1 <= alert.tier <= len(route.tiers):
            return
        if ev.destination in route.tiers[alert.tier - 1].destinations:
            self._escalate(alert, route, ev.occurred_at, ctx)  # nobody there can be reached: do not wait
        elif alert.failsafe and ev.destination == route.failsafe:
            ctx.warn(f"alert {alert.alert_id}: its failsafe {ev.destination!r} cannot be reached ({state.value})")

    def _session_closed(self, st: PatientAlerts, ev: Any, ctx: Context) -> None:
        st.closed_sessions.pop(ev.session_id, None)
        st.closed_sessions[ev.session_id] = ev.occurred_at
        while len(st.closed_sessions) > CLOSED_SESSIONS_KEPT:
            del st.closed_sessions[next(iter(st.closed_sessions))]
        for alert in list(st.alerts.values()):
            if alert.session_id == ev.session_id and not alert.resolved:
                ctx.emit(self._resolution(alert, ResolveReason.SESSION_CLOSED, ev.occurred_at, ctx.patient_id))

    def _condition(self, st: PatientAlerts, ev: Any, ctx: Context) -> None:
        kind = getattr(ev.kind, "value", ev.kind)
        key = f"{kind}/{ev.subject}"
        open_id = st.conditions.get(key)
        current = st.alerts.get(open_id) if open_id else None
        if ev.active:
            if current is not None and not current.resolved:
                return  # already raised for this condition
            alert_id = stable_id("al", key, format_time(ev.occurred_at))
            st.conditions[key] = alert_id
            ctx.emit(AlertRaised(  # handed back to this core by the engine: routed and paged like any alert
                event_id=stable_id("ev", "alert.raised", alert_id), occurred_at=ev.occurred_at,
                patient_id=ctx.patient_id, alert_id=alert_id, kind=ev.kind, severity=Severity(ev.severity),
                rule=Rule.SYS, summary=ev.summary or f"{kind}: {ev.subject}", action=ev.action or "check the product",
                evidence={**ev.evidence, "subject": ev.subject}, dedup_key=key,
            ))
            return
        if open_id is None:
            return  # no open alert for it (e.g. the first success after a restart)
        del st.conditions[key]
        if current is not None and not current.resolved:
            ctx.emit(AlertResolved(
                type="alert.resolved", event_id=stable_id("ev", "alert.resolved", open_id), occurred_at=ev.occurred_at,
                patient_id=ctx.patient_id, alert_id=open_id, reason=ResolveReason.CLEARED, by=PAGER_PRINCIPAL,
            ))

    # -- tiers and pages --------------------------------------------------------------------

    def _targets(self, alert: TrackedAlert, destinations: list[str]) -> list[str]:
        return [d for d in destinations if d != alert.avoid]

    def _enter_tier(self, alert: TrackedAlert, route: Route, number: int, at: datetime, ctx: Context) -> None:
        tier = route.tiers[number - 1]
        alert.tier, alert.tier_started_at, alert.repages = number, at, 0
        targets = self._targets(alert, tier.destinations)
        if not targets:
            ctx.warn(f"alert {alert.alert_id}: tier {number} of route {route.name!r} has no destination left")
        for dest in targets:
            self._page(alert, dest, TRIGGER, route, at, ctx)
        self._arm_repage(alert, route, ctx)
        if tier.escalate_after is not None:
            ctx.set_timer(at + tier.escalate_after, ESCALATE, alert.alert_id)

    def _escalate(self, alert: TrackedAlert, route: Route, at: datetime, ctx: Context) -> None:
        """The current tier is done (its time ran out, or nobody in it can be reached)."""
        self._stop(alert, ctx)
        if alert.tier < len(route.tiers):
            self._escalated(alert, route, alert.tier + 1, route.tiers[alert.tier].destinations, at, ctx)
            self._enter_tier(alert, route, alert.tier + 1, at, ctx)
        elif route.failsafe and not alert.failsafe:
            self._to_failsafe(alert, route, at, ctx)

    def _arm_repage(self, alert: TrackedAlert, route: Route, ctx: Context) -> None:
        tier = route.tiers[alert.tier - 1]
        if tier.repage_after is None or alert.repages >= tier.repeats or alert.tier_started_at is None:
            return
        due = alert.tier_started_at + tier.repage_after * (alert.repages + 1)
        if tier.escalate_after is None or due < alert.tier_started_at + tier.escalate_after:
            ctx.set_timer(due, REPAGE, alert.alert_id)

    def _to_failsafe(self, alert: TrackedAlert, route: Route, at: datetime, ctx: Context) -> None:
        assert route.failsafe is not None
        alert.failsafe = True
        self._escalated(alert, route, len(route.tiers) + 1, [route.failsafe], at, ctx, failsafe=True)
        self._page(alert, route.failsafe, TRIGGER, route, at, ctx, failsafe=True)

    def _escalated(self, alert: TrackedAlert, route: Route, to_tier: int, destinations: list[str],
                   at: datetime, ctx: Context, failsafe: bool = False) -> None:
        ctx.emit(AlertEscalated(
            event_id=stable_id("ev", "alert.escalated", alert.alert_id, to_tier),
            occurred_at=at, patient_id=ctx.patient_id, alert_id=alert.alert_id, dedup_key=alert.dedup_key,
            severity=Severity(alert.severity), route=route.name, from_tier=alert.tier, to_tier=to_tier,
            failsafe=failsafe, destinations=self._targets(alert, destinations),
        ))

    def _page(self, alert: TrackedAlert, dest: str, action: str, route: Route | None, at: datetime,
              ctx: Context, lifecycle: dict[str, Any] | None = None, failsafe: bool = False) -> None:
        destination = self.routes.destinations.get(dest)
        if destination is None:
            ctx.warn(f"destination {dest!r} is no longer configured: request not sent")
            return
        sequence = alert.sent.get(dest, 0) + 1
        alert.sent[dest] = sequence
        if action == TRIGGER and dest not in alert.triggered:
            alert.triggered.append(dest)
        tier = len(route.tiers) + 1 if failsafe and route is not None else alert.tier
        page = PageRequested(
            event_id=stable_id("ev", "page.requested", alert.alert_id, dest, sequence),
            occurred_at=at, patient_id=ctx.patient_id, alert_id=alert.alert_id, dedup_key=alert.dedup_key,
            destination=dest, adapter=destination.adapter, route=alert.route, tier=tier, failsafe=failsafe,
            event_action=action, sequence=sequence, severity=Severity(alert.severity), alert=alert.alert,
            lifecycle=lifecycle, acknowledged_by=alert.acknowledged_by,
            superseded_severity=Severity(alert.superseded_severity) if alert.superseded_severity else None,
        )
        entry = json.loads(page.model_dump_json(exclude_none=True, exclude={"alert"}))
        alert.pending[page.event_id] = entry
        ctx.emit(page)

    def _stop(self, alert: TrackedAlert, ctx: Context) -> None:
        ctx.cancel_timer(REPAGE, alert.alert_id)
        ctx.cancel_timer(ESCALATE, alert.alert_id)

    @staticmethod
    def _resolution(alert: TrackedAlert, reason: ResolveReason, at: datetime, patient_id: str) -> AlertResolved:
        return AlertResolved(
            type="alert.resolved", event_id=stable_id("ev", "alert.resolved", alert.alert_id),
            occurred_at=at, patient_id=patient_id, alert_id=alert.alert_id, reason=reason,
        )
