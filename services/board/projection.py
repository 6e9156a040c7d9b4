"""The board's core: a pure projection of sessions, vitals and the alert lifecycle.

It implements the engine's ``Core`` protocol (``services/engine/core.py``) but raises nothing:
it only records what the other services decided, on event time, so the board at any moment of
a recorded log can be rebuilt exactly (``render_board_at``). Live, the board service feeds it the
inbound stream, the alert stream and the output stream; the three arrive in no fixed order
relative to each other, so every handler tolerates facts about a session it has not seen start
yet (a stub session is filled in when ``infusion.started`` arrives).

Not part of ``all_cores()``: the monitor's outputs and goldens do not change. ``board_engine``
runs it after the monitor's cores for replay.
"""

from __future__ import annotations

from bisect import insort
from datetime import datetime, timedelta
from typing import Any, ClassVar

from infusion_monitor.schemas.inbound import is_monitored_drug

from ..engine.bus import Engine
from ..engine.config import MonitorConfig
from ..engine.core import Context
from ..cores import all_cores
from .labels import format_values
from .state import BoardAlert, BoardPatient, BoardSession, Delivery, Entry, Vitals

TIMELINE_MAX = 400  # entries kept per session (a session has a few dozen)
RECENT_READINGS = 4
MEMORY_HOURS = 48  # closed sessions and their alerts are forgotten this long after (event time)


class BoardProjection:
    name: ClassVar[str] = "board"
    state_model: ClassVar[type] = BoardPatient
    handles: ClassVar[frozenset[str]] = frozenset({
        "patient.profile", "infusion.started", "infusion.ended", "vitals.recorded",
        "alert.raised", "alert.acknowledged", "alert.resolved", "alert.escalated", "alert.delivery",
        "session.closed", "patient.contraindicated", "patient.contraindication_lifted",
        "antibody.persistence", "reexposure.recorded",
    })

    def handle(self, st: BoardPatient, event: Any, ctx: Context) -> None:
        match event.type:
            case "patient.profile":
                st.has_profile = True
            case "infusion.started":
                self._started(st, event, ctx)
            case "infusion.ended":
                self._ended(st, event)
            case "vitals.recorded":
                self._vitals(st, event, ctx.config)
            case "alert.raised":
                self._raised(st, event)
            case "alert.acknowledged":
                self._acknowledged(st, event, ctx)
            case "alert.resolved":
                self._resolved(st, event, ctx)
            case "alert.escalated":
                alert = st.alerts.get(event.alert_id)
                if alert is not None and event.to_tier > alert.escalated_tier:
                    alert.escalated_tier, alert.failsafe = event.to_tier, bool(event.failsafe)
                    self._note(st, alert.session_id, event.occurred_at, event.type,
                               f"Escalated to {'the failsafe' if event.failsafe else f'tier {event.to_tier}'}",
                               alert.severity, alert.alert_id)
            case "alert.delivery":
                alert = st.alerts.get(event.alert_id)
                known = alert.deliveries.get(event.destination) if alert is not None else None
                if alert is not None and (known is None or event.occurred_at >= known.at):
                    alert.deliveries[event.destination] = Delivery(
                        _value(event.state), event.occurred_at, event.by, event.reason)
            case "session.closed":
                session = self._session(st, event.session_id)
                if session.closed_at is None:
                    session.closed_at, session.outcome = event.occurred_at, event.outcome
                    session.closed_noted = max(event.occurred_at, ctx.now) if ctx.now else event.occurred_at
                    session.timeline.append(Entry(event.occurred_at, event.type, f"Session closed: {event.outcome}"))
            case "patient.contraindicated":
                reason = _value(event.reason)
                if reason not in st.contraindications:
                    st.contraindications = sorted({*st.contraindications, reason})
            case "patient.contraindication_lifted":
                reason = _value(event.reason)
                st.contraindications = [r for r in st.contraindications if r != reason]
            case "antibody.persistence":
                st.persistent_antibodies = bool(event.persistent)
            case "reexposure.recorded":
                self._session(st, event.session_id).reexposure = True

    def fire(self, st: BoardPatient, kind: str, key: str, due: datetime, ctx: Context) -> None:
        return None  # no timers: everything time-dependent is computed by the view from "now"

    # -- sessions and vitals ------------------------------------------------------------------

    def _session(self, st: BoardPatient, session_id: str) -> BoardSession:
        session = st.sessions.get(session_id)
        if session is None:
            session = st.sessions[session_id] = BoardSession(session_id=session_id)
        return session

    def _started(self, st: BoardPatient, ev: Any, ctx: Context) -> None:
        if not is_monitored_drug(ev.drug):
            return  # the monitor ignores it too
        session = self._session(st, ev.session_id)
        if session.started_at is not None:
            return  # a second start for a known session: the monitor rejects it
        t0 = ev.occurred_at
        session.started_at, session.site_id, session.pump_id = t0, ev.site_id, ev.pump_id
        session.infusion_number = ev.infusion_number or self._count_number(st, t0)
        later = [t for t in st.recent_reading_times if t >= t0]
        if later and (session.last_reading_at is None or max(later) > session.last_reading_at):
            session.last_reading_at = max(later)
        where = f" at {ev.pump_id}" if ev.pump_id else ""
        session.timeline.append(Entry(t0, ev.type, f"Infusion #{session.infusion_number} started{where}"))
        self._forget_old(st, ctx.now)

    @staticmethod
    def _count_number(st: BoardPatient, t0: datetime) -> int:
        """As the monitor counts when the producer gives none (within the board's memory)."""
        return 1 + sum(1 for s in st.sessions.values() if s.started_at is not None and s.started_at < t0)

    def _ended(self, st: BoardPatient, ev: Any) -> None:
        session = self._session(st, ev.session_id)
        if session.ended_at is not None or (session.started_at is not None and ev.occurred_at < session.started_at):
            return  # bad input the monitor rejects
        session.ended_at, session.end_outcome = ev.occurred_at, _value(ev.outcome)
        session.timeline.append(Entry(ev.occurred_at, ev.type, f"Infusion ended ({session.end_outcome})"))

    def _vitals(self, st: BoardPatient, ev: Any, config: MonitorConfig) -> None:
        at, values, symptoms = ev.occurred_at, ev.readings(), [s.lower() for s in ev.symptoms]
        if st.last_vitals is None or at >= st.last_vitals.at:
            st.last_vitals = Vitals(at=at, values=values, symptoms=symptoms)
        if values:
            insort(st.recent_reading_times, at)
            del st.recent_reading_times[:-RECENT_READINGS]
        session = self._session_for(st, ev, config)
        if session is None:
            return
        if values and (session.last_reading_at is None or at > session.last_reading_at):
            session.last_reading_at = at
        self._append(session, Entry(at, ev.type, format_values(values, symptoms)))

    @staticmethod
    def _session_for(st: BoardPatient, ev: Any, config: MonitorConfig) -> BoardSession | None:
        """The session a reading belongs to, by the rule the session monitor applies
        (``clinical-rules.md``: its ``session_id`` if started, else the latest session started at
        or before it and less than ``session_match_hours`` before it)."""
        at = ev.occurred_at
        if ev.session_id is not None:
            session = st.sessions.get(ev.session_id)
            return session if session is not None and session.started_at is not None and session.started_at <= at else None
        limit = timedelta(hours=config.session_match_hours)
        matches = [s for s in st.sessions.values()
                   if s.started_at is not None and s.started_at <= at and at - s.started_at < limit]
        return max(matches, key=lambda s: s.started_at) if matches else None  # type: ignore[arg-type,return-value]

    # -- the alert lifecycle ------------------------------------------------------------------

    def _raised(self, st: BoardPatient, ev: Any) -> None:
        if ev.alert_id in st.alerts:
            return
        alert = BoardAlert(
            alert_id=ev.alert_id, kind=_value(ev.kind), severity=_value(ev.severity), rule=_value(ev.rule),
            summary=ev.summary, action=ev.action, raised_at=ev.occurred_at, session_id=ev.session_id,
            outside_window=bool(ev.outside_window), supersedes=ev.supersedes,
        )
        st.alerts[ev.alert_id] = alert
        if ev.supersedes and (old := st.alerts.get(ev.supersedes)) is not None:
            old.superseded_by = alert.alert_id
        for other in st.alerts.values():  # an escalation that arrived before what it supersedes
            if other.supersedes == alert.alert_id:
                alert.superseded_by = other.alert_id
        self._note(st, alert.session_id, alert.raised_at, ev.type,
                   f"{alert.severity.upper()} {alert.rule}: {alert.summary}", alert.severity, alert.alert_id)

    def _acknowledged(self, st: BoardPatient, ev: Any, ctx: Context) -> None:
        alert = st.alerts.get(ev.alert_id)
        if alert is None:
            ctx.warn("acknowledgement of an alert the board does not know", "alert_id")
            return
        if alert.acknowledged_at is not None:
            return  # the first acknowledgement counts
        alert.acknowledged_at, alert.acknowledged_by, alert.acknowledged_via = ev.occurred_at, ev.by, _value(ev.via)
        self._note(st, alert.session_id, ev.occurred_at, ev.type,
                   f"{alert.rule} acknowledged by {ev.by} (via {alert.acknowledged_via})", alert.severity, alert.alert_id)

    def _resolved(self, st: BoardPatient, ev: Any, ctx: Context) -> None:
        alert = st.alerts.get(ev.alert_id)
        if alert is None:
            ctx.warn("resolution of an alert the board does not know", "alert_id")
            return
        if alert.resolved_at is not None:
            return
        alert.resolved_at, alert.resolve_reason = ev.occurred_at, _value(ev.reason)
        self._note(st, alert.session_id, ev.occurred_at, ev.type,
                   f"{alert.rule} resolved ({alert.resolve_reason})", alert.severity, alert.alert_id)

    # -- bookkeeping --------------------------------------------------------------------------

    def _note(self, st: BoardPatient, session_id: str | None, at: datetime, kind: str, text: str,
              severity: str | None, ref: str) -> None:
        if session_id is not None:
            self._append(self._session(st, session_id), Entry(at, kind, text, severity, ref))

    @staticmethod
    def _append(session: BoardSession, entry: Entry) -> None:
        session.timeline.append(entry)
        if len(session.timeline) > TIMELINE_MAX:
            del session.timeline[: len(session.timeline) - TIMELINE_MAX]

    @staticmethod
    def _forget_old(st: BoardPatient, now: datetime | None) -> None:
        if now is None:
            return
        horizon = now - timedelta(hours=MEMORY_HOURS)
        # kept MEMORY_HOURS after the board learned of the close, however old the close itself
        # (a feed replayed from weeks back must not lose its sessions at once: timeline 404)
        for sid in [s.session_id for s in st.sessions.values()
                    if s.closed_at is not None and (s.closed_noted or s.closed_at) < horizon]:
            del st.sessions[sid]
        open_ids = set(st.sessions)
        for aid in [a.alert_id for a in st.alerts.values()
                    if a.raised_at < horizon and (a.session_id is None or a.session_id not in open_ids)]:
            del st.alerts[aid]


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def board_engine(config: MonitorConfig) -> Engine:
    """The monitor's cores plus the board projection, for offline replay (``--board-at``)."""
    return Engine(config, [*all_cores(), BoardProjection()], unbounded_dedup=True)


def live_engine(config: MonitorConfig) -> Engine:
    """The board projection alone, fed by the live streams."""
    return Engine(config, [BoardProjection()])
