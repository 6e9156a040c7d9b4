"""The session monitor core: pure, synchronous, event time only.

Reads like ``clinical-rules.md``: a session opens at ``infusion.started`` (pre-infusion checks),
collects a baseline, grades every reading inside it (R7-R13), watches for gaps (M1) and a
missing end (M2), and closes when the reaction window ends (``session.closed``).
"""

from __future__ import annotations

import json
from bisect import insort
from datetime import datetime, timedelta
from typing import Any, ClassVar

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.inbound import (
    ContraindicationCleared,
    HypersensitivityRuledOut,
    InfusionEnded,
    InfusionStarted,
    PatientProfile,
    VitalsRecorded,
    is_monitored_drug,
)
from infusion_monitor.schemas.outbound import (
    AlertRaised,
    ContraindicationLifted,
    PatientContraindicated,
    ReactionRecorded,
    ReexposureRecorded,
    SessionClosed,
)
from infusion_monitor.schemas.vocab import AlertKind, ContraindicationReason, Rule, Severity, is_known_symptom

from ..engine.alerts import make_alert, minutes_between
from ..engine.core import Context
from ..engine.ids import stable_id
from . import preinfusion
from .baseline import baseline, candidates
from .hypersensitivity import grade, strongest, systolic_fall_exceeds, unremarkable
from .readings import Pending, Reading, pack_values, unpack_values
from .state import AlertRef, PatientSessions, Profile, Session
from .window import is_inside, observation_minutes, window_end

OUTCOME_RULES = frozenset({Rule.R7, Rule.R8, Rule.R9, Rule.R10, Rule.R11, Rule.R12, Rule.R12B, Rule.R13, Rule.M1})
CRITICAL_SIGNS = frozenset({Rule.R7, Rule.R8, Rule.R9})  # a pending reading meeting one is never dropped silently
UNMATCHED_CRITICAL = "critical reading matched no infusion session"

# timer kinds: per session (key: session id) and per pending critical reading (key: its serial)
BASELINE, NO_END, GAP, CLOSE, UNMATCHED = "baseline", "no_end", "gap", "close", "unmatched"
SESSION_TIMERS = frozenset({BASELINE, NO_END, GAP, CLOSE})
STARTS_KEPT = 512  # infusion starts remembered per patient (decades of treatment)


class SessionMonitor:
    name: ClassVar[str] = "session"
    state_model: ClassVar[type] = PatientSessions
    handles: ClassVar[frozenset[str]] = frozenset({
        "patient.profile", "infusion.started", "infusion.ended", "vitals.recorded",
        "hypersensitivity.ruled_out", "contraindication.cleared",
        "patient.contraindicated", "antibody.persistence",
    })

    def handle(self, st: PatientSessions, event: Any, ctx: Context) -> None:
        match event.type:
            case "patient.profile":
                self._profile(st, event)
            case "infusion.started":
                self._started(st, event, ctx)
            case "infusion.ended":
                self._ended(st, event, ctx)
            case "vitals.recorded":
                self._vitals(st, event, ctx)
            case "hypersensitivity.ruled_out" | "contraindication.cleared":
                self._clear(st, event, ctx)
            case "patient.contraindicated":
                if event.reason not in st.contraindications:
                    st.contraindications = sorted({*st.contraindications, event.reason}, key=lambda r: r.value)
            case "antibody.persistence":
                if event.persistent and not st.persistent_antibodies:  # since the confirming specimen
                    st.persistent_antibodies, st.persistent_since = True, event.occurred_at

    def fire(self, st: PatientSessions, kind: str, key: str, due: datetime, ctx: Context) -> None:
        if kind == UNMATCHED:
            self._unmatched(st, int(key), ctx)
            return
        session = st.sessions.get(key)
        if session is None:
            return
        match kind:
            case "baseline":
                self._fix_baseline(st, session, due, ctx)
            case "no_end":
                self._no_end(session, due, ctx)
            case "gap":
                self._gap(st, session, due, ctx)
            case "close":
                self._close(session, due, ctx)

    # -- inbound events ---------------------------------------------------------------------

    def _profile(self, st: PatientSessions, ev: PatientProfile) -> None:
        st.profile = Profile(
            birth_date=ev.birth_date,
            pregnant=bool(ev.pregnant),
            lactating=bool(ev.lactating),
            concomitant_therapies=ev.concomitant_therapies,
        )

    def _started(self, st: PatientSessions, ev: InfusionStarted, ctx: Context) -> None:
        cfg = ctx.config
        if not is_monitored_drug(ev.drug):
            ctx.warn("infusion.started for a drug other than natalizumab: ignored", "drug")
            return
        if ev.session_id in st.sessions:
            ctx.reject("a second infusion.started for a known session", "session_id")
            return
        if sum(1 for s in st.sessions.values() if not s.closed) >= cfg.open_sessions_limit:
            ctx.reject(f"more than {cfg.open_sessions_limit} open sessions for one patient: rejected until "
                       "one closes", "session_id")
            return
        t0 = ev.occurred_at
        earlier = [s for s in st.starts if s < t0]
        previous = earlier[-1] if earlier else None
        number = ev.infusion_number or st.starts_forgotten + len(earlier) + 1
        gap_days = preinfusion.reexposure_gap_days(previous, t0, cfg)
        reexposure = gap_days is not None and gap_days > cfg.reexposure_gap_days
        insort(st.starts, t0)
        if len(st.starts) > STARTS_KEPT:  # (only the latest count; the older ones are counted)
            st.starts, st.starts_forgotten = st.starts[-STARTS_KEPT:], st.starts_forgotten + len(st.starts) - STARTS_KEPT
        session = Session(
            session_id=ev.session_id,
            started_at=t0,
            infusion_number=number,
            observation_minutes=observation_minutes(number, st.had_reaction, reexposure, cfg),
            site_id=ev.site_id,
            pump_id=ev.pump_id,
        )
        st.sessions[session.session_id] = session

        for finding in preinfusion.checks(
            start=t0,
            profile=st.profile,
            contraindications=st.contraindications,
            gap_days=gap_days,
            persistent_antibodies=st.persistent_antibodies,
            config=cfg,
        ):
            self._raise(session, ctx, at=t0, kind=finding.kind, severity=finding.severity, rule=finding.rule,
                        summary=f"{finding.summary} ({finding.rule.value}, session {session.session_id})",
                        action=finding.action, evidence={**finding.evidence, "infusion_number": number})
        if reexposure:
            ctx.emit(ReexposureRecorded(
                event_id=stable_id("ev", "reexposure", ctx.patient_id, session.session_id),
                occurred_at=t0, patient_id=ctx.patient_id, session_id=session.session_id,
                gap_days=gap_days,
            ))
        ctx.set_timer(t0 + timedelta(minutes=cfg.baseline_fix_minutes), BASELINE, session.session_id)
        ctx.set_timer(t0 + timedelta(minutes=cfg.no_end_minutes), NO_END, session.session_id)
        self._arm_gap(st, session, t0, ctx)
        self._catch_up(st, session, ctx)
        self._forget_old_sessions(st, ctx)

    def _catch_up(self, st: PatientSessions, session: Session, ctx: Context) -> None:
        """A start that arrives after its readings catches its session up: the pending readings
        that belong to it are judged at once, in their order of arrival, each as it would have
        been had the start arrived first: the session's own timers due before the stream time
        at which the reading arrived fire before it."""
        limit = timedelta(hours=ctx.config.session_match_hours)
        t0 = session.started_at
        claimed = [(reading, pending) for reading, pending in st.log.pending_readings()
                   if pending.session_id == session.session_id
                   or (pending.session_id is None and t0 <= reading.at < t0 + limit)]
        # had the start arrived first, it would have come just before the first of them
        session.known_from = claimed[0][0].serial if claimed else st.log.end
        for reading, pending in claimed:
            ctx.fire_due(reading.arrived, session.session_id, SESSION_TIMERS)
            st.log.claim(reading.serial)
            ctx.cancel_timer(UNMATCHED, str(reading.serial))
            self._judge(st, session, reading.at, reading.values, pending.event_id, pending.symptoms, reading.serial, ctx)

    def _ended(self, st: PatientSessions, ev: InfusionEnded, ctx: Context) -> None:
        session = st.sessions.get(ev.session_id)
        if session is None:
            ctx.reject("infusion.ended for an unknown session", "session_id")
            return
        if session.ended_at is not None and not session.end_assumed:
            ctx.reject("infusion.ended for a session already ended", "session_id")
            return
        if ev.occurred_at < session.started_at:
            ctx.reject("infusion.ended before its infusion.started", "occurred_at")
            return
        session.outcome = ev.outcome
        session.ended_at, session.end_assumed = ev.occurred_at, False
        if session.closed:
            return  # recorded; a closed window is never reopened
        ctx.cancel_timer(NO_END, session.session_id)
        self._set_window_end(session, ctx)

    def _vitals(self, st: PatientSessions, ev: VitalsRecorded, ctx: Context) -> None:
        cfg = ctx.config
        if ev.symptoms:
            for code in ev.symptoms:
                if not is_known_symptom(code):
                    ctx.warn("unknown symptom code: kept, counted as non-allergic (R13)", "symptoms")
        values = ev.readings()
        session = self._session_for(st, ev, cfg)
        if session is None:  # pending, with what judging it needs when its session starts; a baseline candidate meanwhile
            serial: int | None = st.log.append(ev.occurred_at, ctx.now, values, cfg.pending_reading_hours,
                                               ev.event_id, ev.symptoms, ev.session_id)
            if CRITICAL_SIGNS.intersection(grade(values, ev.symptoms, None, cfg)):
                ctx.set_timer(ctx.now + timedelta(hours=cfg.pending_reading_hours), UNMATCHED, str(serial))
        else:  # (a symptoms-only charting is no baseline candidate: not logged)
            serial = st.log.append(ev.occurred_at, ctx.now, values, cfg.pending_reading_hours) if values else None
        for old, pending in st.log.trim(cfg.reading_log_limit, cfg.pending_bytes_limit if session is None else None):
            self._evicted(old, pending, ctx)
        if session is not None:
            self._judge(st, session, ev.occurred_at, values, ev.event_id, ev.symptoms, serial, ctx)

    def _judge(self, st: PatientSessions, session: Session, at: datetime, values: dict[str, float], event_id: str,
               symptoms: tuple[str, ...], serial: int | None, ctx: Context) -> None:
        """One reading for its session: the gap count, symptoms, grading. ``serial``: its place
        in the reading log (the baseline is judged as known when it arrived)."""
        if at < session.started_at:
            return  # names the session but was taken before t0: a baseline candidate only
        if values and (session.last_reading_at is None or at > session.last_reading_at):
            session.last_reading_at = at
            if not session.closed:
                self._arm_gap(st, session, at, ctx)
        for code in symptoms:
            code = code.lower()
            if code not in session.symptoms:
                session.symptoms = [*session.symptoms, code]
        if session.baseline_fixed:
            base, base_sys = None, session.baseline_systolic
        else:  # as known when this reading arrived: from the candidates that had arrived by then
            base = baseline(candidates(st.log, session.started_at, ctx.config, upto=serial), session.started_at)
            base_sys = base.get("systolic_mmhg")
        if session.symptoms or not unremarkable(values, base_sys, ctx.config):
            self._grade(st, session, at, event_id, values, unpack_values(session.baseline) if base is None else base, ctx)

    def _unmatched(self, st: PatientSessions, serial: int, ctx: Context) -> None:
        """A pending reading that meets R7, R8 or R9 and still belongs to no session when it
        expires is reported, with the event, never dropped silently."""
        found = st.log.pending_reading(serial)
        if found is None:
            return
        st.log.claim(serial)
        self._report(*found, f"{UNMATCHED_CRITICAL} within {ctx.config.pending_reading_hours} h", ctx)

    def _evicted(self, reading: Reading, pending: Pending, ctx: Context) -> None:
        """A pending reading pushed out by the log's limits before 24 h (a flood of readings for
        one patient): reported with the event when it meets any of R7-R13 alone."""
        ctx.cancel_timer(UNMATCHED, str(reading.serial))
        if grade(reading.values, pending.symptoms, None, ctx.config):
            self._report(reading, pending, f"pending reading dropped: more than {ctx.config.reading_log_limit} "
                         "readings (or pending text) of this patient within 24 h", ctx)

    def _report(self, reading: Reading, pending: Pending, reason: str, ctx: Context) -> None:
        event = {"type": "vitals.recorded", "event_id": pending.event_id,
                 "occurred_at": format_time(reading.at), "patient_id": ctx.patient_id,
                 **({"session_id": pending.session_id} if pending.session_id else {}),
                 **reading.values, **({"symptoms": list(pending.symptoms)} if pending.symptoms else {})}
        ctx.report(pending.event_id, reason, json.dumps(event, separators=(",", ":")).encode(), "session_id")

    def _clear(self, st: PatientSessions, ev: HypersensitivityRuledOut | ContraindicationCleared, ctx: Context) -> None:
        if isinstance(ev, HypersensitivityRuledOut):
            reason = ContraindicationReason.HYPERSENSITIVITY
        else:
            reason = ev.reason
        if reason not in st.contraindications:
            ctx.warn(f"no '{reason.value}' contraindication on record to clear", "reason")
            return
        st.contraindications = [r for r in st.contraindications if r is not reason]
        ctx.emit(ContraindicationLifted(
            event_id=stable_id("ev", "lifted", ctx.patient_id, ev.event_id),
            occurred_at=ev.occurred_at, patient_id=ctx.patient_id, reason=reason,
            clinician=ev.clinician, source_event_id=ev.event_id,
        ))

    # -- grading R7-R13 ---------------------------------------------------------------------

    def _grade(self, st: PatientSessions, session: Session, at: datetime, event_id: str, values: dict[str, float],
               base: dict[str, float], ctx: Context) -> None:
        cfg = ctx.config
        base_sys = base.get("systolic_mmhg")
        met = grade(values, session.symptoms, base_sys, cfg)
        if not met:
            return
        spec = strongest(met)
        current = session.alerts.get(spec.kind.value)
        if current is not None and spec.rank <= tuple(current.rank):
            return  # a repeat or a milder reading never pages again
        evidence: dict[str, Any] = {
            "rules_met": [r.value for r in met],
            "brown_grade": spec.grade.label,
            "reading_event_id": event_id,
            "readings": values,
            "symptoms": list(session.symptoms),
            "baseline": dict(base),
            "minutes_since_start": minutes_between(at, session.started_at),
            "minutes_since_end": minutes_between(at, session.ended_at)
            if session.ended_at is not None and at >= session.ended_at else None,
        }
        systolic = values.get("systolic_mmhg")
        if Rule.R7 in met and base_sys and systolic is not None and systolic_fall_exceeds(base_sys, systolic, cfg.systolic_fall_pct):
            evidence["systolic_fall_pct"] = round((base_sys - systolic) * 100 / base_sys, 1)
        alert = self._raise(session, ctx, at=at, kind=spec.kind, severity=spec.severity, rule=spec.rule,
                            summary=_reaction_summary(spec, session, values, session.symptoms),
                            action=spec.action, evidence=evidence, outside_window=not is_inside(session, at),
                            supersedes=current.alert_id if current else None)
        session.alerts = {**session.alerts, spec.kind.value: AlertRef(alert_id=alert.alert_id, rank=spec.rank)}
        st.had_reaction = True
        self._count_for_outcome(session, spec.rule, spec.kind, spec.severity)
        if spec.kind is AlertKind.DISCONTINUE_HYPERSENSITIVITY and ContraindicationReason.HYPERSENSITIVITY not in st.contraindications:
            ctx.emit(PatientContraindicated(
                event_id=stable_id("ev", "contraindicated", alert.alert_id),
                occurred_at=at, patient_id=ctx.patient_id,
                reason=ContraindicationReason.HYPERSENSITIVITY, rule=spec.rule, alert_id=alert.alert_id,
            ))
        if not session.reacted:  # R14: the first R7-R13 alert of a session asks for a test now
            session.reacted = True
            ctx.emit(ReactionRecorded(
                event_id=stable_id("ev", "reaction", alert.alert_id),
                occurred_at=at, patient_id=ctx.patient_id, session_id=session.session_id,
                alert_id=alert.alert_id, rule=spec.rule,
            ))

    # -- timers -----------------------------------------------------------------------------

    def _fix_baseline(self, st: PatientSessions, session: Session, due: datetime, ctx: Context) -> None:
        """The baseline is fixed at t0 + 5 min from every candidate that had arrived by then;
        R6: no vitals reading in [t0 - 30 min, t0 + 5 min]."""
        cfg = ctx.config
        found = candidates(st.log, session.started_at, cfg, fixed_at=due, known_from=session.known_from)
        fixed = baseline(found, session.started_at)
        session.baseline_fixed, session.baseline, session.baseline_systolic = True, pack_values(fixed), fixed.get("systolic_mmhg")
        if found:
            return
        self._raise(session, ctx, at=due, kind=AlertKind.MONITORING_NO_BASELINE, severity=Severity.MEDIUM, rule=Rule.R6,
                    summary=f"No baseline vitals around the infusion start (R6, session {session.session_id})",
                    action="Take a full set of vitals now; the reaction grading has no baseline for a relative fall.",
                    evidence={"window_from": format_time(session.started_at - timedelta(minutes=cfg.baseline_lookback_minutes)),
                              "window_to": format_time(due)})

    def _no_end(self, session: Session, due: datetime, ctx: Context) -> None:
        """M2 at t0 + 180 min without ``infusion.ended``: t0 + 180 is taken as the end."""
        if session.ended_at is not None or session.closed:
            return
        self._raise(session, ctx, at=due, kind=AlertKind.MONITORING_NO_END, severity=Severity.MEDIUM, rule=Rule.M2,
                    summary=f"No infusion end recorded {ctx.config.no_end_minutes} min after start (M2, session {session.session_id})",
                    action="Check the pump and chart the infusion end; the window is timed from now until it is.",
                    evidence={"minutes_since_start": minutes_between(due, session.started_at)})
        session.ended_at, session.end_assumed = due, True
        self._set_window_end(session, ctx)

    def _gap(self, st: PatientSessions, session: Session, due: datetime, ctx: Context) -> None:
        """M1: no reading for more than the gap, due before the window closes; once per gap.

        The timer is not moved at every reading: when it fires and a reading came in since it
        was set, it re-arms itself at the gap after that reading instead."""
        session.gap_due = None
        if session.closed:
            return
        since = max(session.started_at, session.last_reading_at or session.started_at)
        limit = session.gap_limit
        if since + timedelta(minutes=limit) > due:
            self._arm_gap(st, session, since, ctx)
            return
        if session.window_end is not None and due >= session.window_end:
            return
        session.gap_count += 1
        self._raise(session, ctx, at=due, kind=AlertKind.MONITORING_GAP, severity=Severity.MEDIUM, rule=Rule.M1,
                    condition=f"gap@{format_time(since)}",
                    summary=f"No vitals for {minutes_between(due, since):g} min (M1, session {session.session_id})",
                    action="Take and chart a full set of vitals now.",
                    evidence={
                        "last_reading_at": format_time(session.last_reading_at) if session.last_reading_at else None,
                        "gap_limit_minutes": limit,
                        "enhanced_monitoring": limit == ctx.config.gap_minutes_enhanced,
                        "minutes_since_start": minutes_between(due, session.started_at),
                    })
        self._count_for_outcome(session, Rule.M1, AlertKind.MONITORING_GAP, Severity.MEDIUM)

    def _close(self, session: Session, due: datetime, ctx: Context) -> None:
        session.closed = True
        session.gap_due = None
        ctx.cancel_timer(GAP, session.session_id)
        ctx.emit(SessionClosed(
            event_id=stable_id("ev", "session.closed", ctx.patient_id, session.session_id),
            occurred_at=due, patient_id=ctx.patient_id, session_id=session.session_id,
            outcome=session.worst_kind or "uneventful", alert_ids=list(session.alert_ids),
        ))

    # -- helpers ----------------------------------------------------------------------------

    def _raise(self, session: Session, ctx: Context, *, rule: Rule, condition: str | None = None,
               **alert: Any) -> AlertRaised:
        """An alert of this session (it carries the session's site and pump, and is listed in its
        ``session.closed`` when raised before the close)."""
        raised = make_alert(patient_id=ctx.patient_id, rule=rule, condition=condition or rule.value,
                            session_id=session.session_id, site_id=session.site_id, pump_id=session.pump_id, **alert)
        ctx.emit(raised)
        if not session.closed:
            session.alert_ids = [*session.alert_ids, raised.alert_id]
        return raised

    def _session_for(self, st: PatientSessions, ev: VitalsRecorded, cfg: Any) -> Session | None:
        """The session a reading belongs to, judged by the reading's own time: the one it names
        if that has started, else the latest that started at or before it, less than 24 h before;
        ``None``: the reading is pending."""
        at = ev.occurred_at
        if ev.session_id is not None:
            return st.sessions.get(ev.session_id)
        limit = timedelta(hours=cfg.session_match_hours)
        matches = [s for s in st.sessions.values() if s.started_at <= at and at - s.started_at < limit]
        return max(matches, key=lambda s: s.started_at) if matches else None

    def _set_window_end(self, session: Session, ctx: Context) -> None:
        session.window_end = window_end(session, ctx.config)
        if session.window_end is not None:
            ctx.set_timer(session.window_end, CLOSE, session.session_id)

    def _gap_minutes(self, st: PatientSessions, since: datetime, ctx: Context) -> int:
        """M1's limit for a gap that starts at ``since``, as known when it starts: enhanced
        (15 min) when persistent antibodies were established (the confirming specimen) before."""
        cfg = ctx.config
        enhanced = st.persistent_antibodies and (st.persistent_since is None or since > st.persistent_since)
        return cfg.gap_minutes_enhanced if enhanced else cfg.gap_minutes

    def _arm_gap(self, st: PatientSessions, session: Session, since: datetime, ctx: Context) -> None:
        """A gap starts at ``since`` (t0 or a reading) with its limit; a gap already running keeps
        its own. The M1 timer is moved only when the new gap falls due sooner: a timer that fires
        after a later reading re-arms itself then (``_gap``), which keeps the common reading path
        free of timer work."""
        if session.gap_due is not None and not st.persistent_antibodies and session.gap_limit == ctx.config.gap_minutes:
            return  # the common case: same limit, a later start, a later due
        session.gap_limit = self._gap_minutes(st, since, ctx)
        due = since + timedelta(minutes=session.gap_limit)
        if session.gap_due is None or due < session.gap_due:
            session.gap_due = due
            ctx.set_timer(due, GAP, session.session_id)

    def _count_for_outcome(self, session: Session, rule: Rule, kind: AlertKind, severity: Severity) -> None:
        if session.closed or rule not in OUTCOME_RULES:
            return
        if severity.rank > session.worst_rank:  # ties keep the earliest
            session.worst_rank, session.worst_kind = severity.rank, kind.value

    def _forget_old_sessions(self, st: PatientSessions, ctx: Context) -> None:
        """Closed sessions go 48 h after their start, or earlier (oldest first) beyond the limit."""
        horizon = ctx.now - timedelta(hours=ctx.config.closed_session_memory_hours)
        closed = sorted((s for s in st.sessions.values() if s.closed), key=lambda s: s.started_at)
        over = len(st.sessions) - ctx.config.sessions_limit
        for number, session in enumerate(closed):
            if session.started_at < horizon or number < over:
                del st.sessions[session.session_id]


def _reaction_summary(spec: Any, session: Session, values: dict[str, float], symptoms: list[str]) -> str:
    parts = []
    labels = {"systolic_mmhg": ("systolic", "mmHg"), "spo2_pct": ("SpO2", "%"), "temperature_c": ("temp", "°C")}
    for name, (label, unit) in labels.items():
        if name in values:
            parts.append(f"{label} {values[name]:g} {unit}")
    if symptoms:
        parts.append("symptoms: " + ", ".join(symptoms))
    where = f" at {session.pump_id}" if session.pump_id else ""
    grade = f", {spec.grade.label}" if spec.grade.label else ""
    detail = "; ".join(parts)
    return f"{spec.title.capitalize()} ({spec.rule.value}{grade}) in session {session.session_id}{where}: {detail}"
