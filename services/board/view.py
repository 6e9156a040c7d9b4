"""From the board state and a moment to what the board shows: pure, no I/O, no clock reads.

``build_board(patients, now, config, options)`` gives the sites and their chair tiles (phase,
countdowns, vitals due, flags, alerts by severity); ``build_day`` the day view; ``build_timeline``
one session's events and alerts in order; ``render_text`` the board as plain text
(``infusion-monitor replay LOG --board-at T``).

The reaction window is the session monitor's own (``services/session_monitor/window.py`` with the
same ``MonitorConfig``): the board never decides a rule differently, it shows where a session is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from infusion_monitor.schemas.vocab import Rule

from ..engine.config import MonitorConfig
from ..session_monitor.core import OUTCOME_RULES
from ..session_monitor.state import Session as MonitorSession
from ..session_monitor.window import observation_minutes, window_end
from .labels import FLAG_TEXT, SEVERITIES, SEVERITY_RANK, format_span, format_values, outcome_text
from .state import BoardAlert, BoardPatient, BoardSession, Entry

REACTION_RULES = frozenset(r.value for r in OUTCOME_RULES if r is not Rule.M1)  # R7-R13
PRE_INFUSION_RULES = frozenset(FLAG_TEXT)
NO_SITE = "(no site)"

# phases
BASELINE, INFUSING, OBSERVATION, CLOSING, CLOSED = "baseline", "infusing", "observation", "closing", "closed"
PHASE_LABEL = {
    BASELINE: "Baseline",
    INFUSING: "Infusing",
    OBSERVATION: "Post-infusion observation",
    CLOSING: "Window ended",
    CLOSED: "Closed",
}
# vitals-due states
DUE_OK, DUE_SOON, DUE_OVERDUE, DUE_NONE = "ok", "soon", "overdue", "none"


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """Board-only settings (not clinical rules): see ``docs/board.md``."""

    vitals_due_warning_minutes: float = 5.0  # warn this long before M1 would fire
    closed_tile_minutes: float = 30.0  # a closed session's tile stays this long, then only the day view


@dataclass(frozen=True, slots=True)
class AlertView:
    alert_id: str
    patient_id: str
    session_id: str | None
    severity: str
    rule: str
    kind: str
    summary: str
    action: str
    raised_at: datetime
    state: str  # open | acknowledged | resolved | superseded
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolve_reason: str | None = None
    escalation: str | None = None  # "tier 2", "failsafe"
    outside_window: bool = False
    deliveries: tuple[str, ...] = ()  # per destination: "pd1 sent", "acm accepted by nurse-7", ...

    @property
    def severity_label(self) -> str:
        return self.severity.upper()


@dataclass(frozen=True, slots=True)
class Flag:
    code: str  # the rule (R5, P1 ...) or "contraindicated" / "enhanced"
    text: str
    level: str  # a severity, for the shape and colour


@dataclass(frozen=True, slots=True)
class Clock:
    """A span the page's script keeps counting: ``elapsed`` since ``ref`` or ``remaining`` until it."""

    kind: str
    ref: datetime
    text: str


@dataclass(slots=True)
class TileView:
    dom_id: str
    patient_id: str
    session_id: str
    site: str
    label: str
    infusion_number: int | None
    started_at: datetime
    phase: str
    phase_label: str
    phase_clock: Clock | None
    phase_note: str
    window_end: datetime | None
    last_vitals_text: str | None
    last_vitals_at: datetime | None
    vitals_age: Clock | None
    vitals_due_state: str
    vitals_due_at: datetime | None
    vitals_due_text: str
    gap_minutes: int
    flags: list[Flag]
    open_alerts: list[AlertView]
    acknowledged_alerts: list[AlertView]
    outcome: str | None
    outcome_text: str
    worst: str | None  # the most severe open alert's severity
    revision: str = ""


@dataclass(slots=True)
class SiteView:
    site: str
    tiles: list[TileView]
    open_by_severity: dict[str, int]


@dataclass(slots=True)
class BoardView:
    now: datetime
    sites: list[SiteView]
    tz_name: str

    @property
    def tiles(self) -> list[TileView]:
        return [t for s in self.sites for t in s.tiles]


@dataclass(slots=True)
class DayRow:
    patient_id: str
    session_id: str
    label: str
    infusion_number: int | None
    started_at: datetime
    ended_at: datetime | None
    end_outcome: str | None
    phase: str
    outcome: str | None
    outcome_text: str
    alerts_by_severity: dict[str, int]
    open_alerts: int


@dataclass(slots=True)
class DaySite:
    site: str
    rows: list[DayRow]
    alerts_by_severity: dict[str, int]
    sessions: int
    closed: int
    reactions: int  # sessions whose outcome is not uneventful


@dataclass(slots=True)
class DayView:
    day: date
    sites: list[DaySite]
    tz_name: str


@dataclass(slots=True)
class TimelineView:
    tile: TileView | None
    patient_id: str
    session_id: str
    entries: list[Entry]
    alerts: list[AlertView] = field(default_factory=list)


# -- the pieces -------------------------------------------------------------------------------

def alert_view(patient_id: str, a: BoardAlert, alerts: Mapping[str, BoardAlert]) -> AlertView:
    if a.superseded_by is not None or a.resolve_reason == "superseded":
        state = "superseded"
    elif a.resolved_at is not None:
        state = "resolved"
    elif a.acknowledged_at is not None:
        state = "acknowledged"
    else:
        state = "open"
    escalation = None
    if a.escalated_tier:
        escalation = "failsafe" if a.failsafe else f"tier {a.escalated_tier}"
    return AlertView(
        alert_id=a.alert_id, patient_id=patient_id, session_id=a.session_id, severity=a.severity, rule=a.rule,
        kind=a.kind, summary=a.summary, action=a.action, raised_at=a.raised_at, state=state,
        acknowledged_by=a.acknowledged_by, acknowledged_at=a.acknowledged_at, resolve_reason=a.resolve_reason,
        escalation=escalation, outside_window=a.outside_window, deliveries=delivery_texts(a),
    )


def delivery_texts(a: BoardAlert) -> tuple[str, ...]:
    """Each destination's state, e.g. ``pd1 sent``, ``acm accepted by nurse-7``, ``pd2 failed``."""
    out = []
    for dest, d in sorted(a.deliveries.items()):
        text = f"{dest} {d.state}"
        if d.by:
            text += f" by {d.by}"
        out.append(text)
    return tuple(out)


def _by_severity(alerts: Iterable[AlertView]) -> list[AlertView]:
    return sorted(alerts, key=lambda a: (-SEVERITY_RANK.get(a.severity, 0), a.raised_at, a.alert_id))


def session_alerts(patient: BoardPatient, session: BoardSession, until: datetime) -> list[BoardAlert]:
    """The session's alerts, plus the patient's alerts without a session raised while it was open."""
    t0 = session.started_at
    end = session.closed_at or until
    return [a for a in patient.alerts.values()
            if a.session_id == session.session_id
            or (a.session_id is None and t0 is not None and t0 <= a.raised_at <= end)]


def session_window(patient: BoardPatient, session: BoardSession, now: datetime,
                   config: MonitorConfig) -> tuple[datetime | None, bool, datetime | None]:
    """(infusion end, end assumed by M2, window end) as far as they are known at ``now``."""
    t0 = session.started_at
    assert t0 is not None
    ended, assumed = session.ended_at, False
    if ended is not None and ended > now:
        ended = None  # not yet, at this moment of a replay
    no_end = t0 + timedelta(minutes=config.no_end_minutes)
    if ended is None and now >= no_end:
        ended, assumed = no_end, True  # M2: the monitor takes t0 + 180 min as the end
    had_reaction = any(a.rule in REACTION_RULES and a.raised_at < t0 for a in patient.alerts.values())
    obs = observation_minutes(session.infusion_number or 1, had_reaction, session.reexposure, config)
    shadow = MonitorSession(session_id=session.session_id, started_at=t0, infusion_number=session.infusion_number or 1,
                            observation_minutes=obs, ended_at=ended, end_assumed=assumed)
    return ended, assumed, window_end(shadow, config)


def _hhmm(moment: datetime, config: MonitorConfig) -> str:
    return moment.astimezone(config.tz).strftime("%H:%M")


def build_tile(patient_id: str, patient: BoardPatient, session: BoardSession, now: datetime,
               config: MonitorConfig, options: ViewOptions) -> TileView:
    t0 = session.started_at
    assert t0 is not None
    ended, assumed, wend = session_window(patient, session, now, config)
    closed = session.closed_at is not None and session.closed_at <= now
    note = ""
    clock: Clock | None = None
    baseline_fixed = t0 + timedelta(minutes=config.baseline_fix_minutes)
    if closed:
        phase = CLOSED
        note = f"closed {_hhmm(session.closed_at, config)}"  # type: ignore[arg-type]
    elif ended is not None and ended <= now:
        if wend is not None and now >= wend:
            phase, note = CLOSING, "awaiting the monitor's close"
        else:
            phase = OBSERVATION
            if wend is not None:
                clock = Clock("remaining", wend, f"{format_span(wend - now)} left")
            note = "no end charted (M2): timed from start + 180 min" if assumed else f"ended {_hhmm(ended, config)}"
    elif now < baseline_fixed:
        phase = BASELINE
        clock = Clock("remaining", baseline_fixed, f"{format_span(baseline_fixed - now)} left")
        note = "baseline vitals being fixed"
    else:
        phase = INFUSING
        clock = Clock("elapsed", t0, f"{format_span(now - t0)} elapsed")
        note = f"started {_hhmm(t0, config)}"

    # vitals: the last reading and when the next is due before M1 fires
    enhanced = patient.persistent_antibodies or any(
        a.rule == "P5" and a.session_id == session.session_id for a in patient.alerts.values())
    gap = config.gap_minutes_enhanced if enhanced else config.gap_minutes
    due_state, due_at, due_text = DUE_NONE, None, ""
    if phase not in (CLOSED, CLOSING):
        since = max(t0, session.last_reading_at or t0)
        due_at = since + timedelta(minutes=gap)
        if wend is not None and due_at >= wend:
            due_state, due_at, due_text = DUE_NONE, None, "no further vitals required by M1"
        elif now >= due_at:
            due_state, due_text = DUE_OVERDUE, f"Vitals overdue by {format_span(now - due_at)} (M1 {gap} min)"
        elif now >= due_at - timedelta(minutes=options.vitals_due_warning_minutes):
            due_state, due_text = DUE_SOON, f"Vitals due in {format_span(due_at - now)} (by {_hhmm(due_at, config)})"
        else:
            due_state, due_text = DUE_OK, f"Next vitals by {_hhmm(due_at, config)}"
    last = patient.last_vitals if patient.last_vitals is not None and patient.last_vitals.at <= now else None
    vitals_age = Clock("elapsed", last.at, f"{format_span(now - last.at)} ago") if last is not None else None

    views = [alert_view(patient_id, a, patient.alerts) for a in session_alerts(patient, session, now)
             if a.raised_at <= now]
    open_alerts = _by_severity(a for a in views if a.state == "open")
    # acknowledged, and still shown so after the close resolved them (who took it stays visible)
    acked = _by_severity(a for a in views if a.acknowledged_at is not None and a.state != "superseded")

    flags: list[Flag] = []
    rules_here = {a.rule: a for a in views}
    if patient.contraindications:
        flags.append(Flag("contraindicated", "Contraindicated: " + ", ".join(
            r.replace("_", " ") for r in patient.contraindications), "critical"))
    elif "R5" in rules_here:
        flags.append(Flag("R5", FLAG_TEXT["R5"], "critical"))
    for rule in ("P1", "P2", "P3", "P4", "P6", "R17"):
        if rule in rules_here:
            flags.append(Flag(rule, FLAG_TEXT[rule], rules_here[rule].severity))
    if enhanced:
        flags.append(Flag("P5", f"{FLAG_TEXT['P5']}: vitals every {gap} min", "high"))

    label = session.pump_id or session.session_id
    tile = TileView(
        dom_id="tile-" + hashlib.sha256(f"{patient_id}\x1f{session.session_id}".encode()).hexdigest()[:12],
        patient_id=patient_id, session_id=session.session_id, site=session.site_id or NO_SITE, label=label,
        infusion_number=session.infusion_number, started_at=t0, phase=phase, phase_label=PHASE_LABEL[phase],
        phase_clock=clock, phase_note=note, window_end=wend,
        last_vitals_text=format_values(last.values, last.symptoms) if last is not None else None,
        last_vitals_at=last.at if last is not None else None, vitals_age=vitals_age,
        vitals_due_state=due_state, vitals_due_at=due_at, vitals_due_text=due_text, gap_minutes=gap,
        flags=flags, open_alerts=open_alerts, acknowledged_alerts=acked,
        outcome=session.outcome if closed else None,
        outcome_text=outcome_text(session.outcome) if closed else "",
        worst=open_alerts[0].severity if open_alerts else None,
    )
    tile.revision = _revision(tile)
    return tile


def _revision(tile: TileView) -> str:
    """Changes whenever anything the tile shows changes (the page swaps only changed tiles)."""
    parts = [tile.phase, tile.phase_note, tile.phase_clock.text if tile.phase_clock else "",
             tile.last_vitals_text or "", tile.vitals_age.text if tile.vitals_age else "", tile.vitals_due_state,
             tile.vitals_due_text, tile.outcome_text, *(f.text for f in tile.flags),
             *(f"{a.alert_id}:{a.state}:{a.escalation}:{'/'.join(a.deliveries)}"
               for a in (*tile.open_alerts, *tile.acknowledged_alerts))]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _visible(session: BoardSession, now: datetime, options: ViewOptions) -> bool:
    if session.started_at is None or session.started_at > now:
        return False
    if session.closed_at is not None and session.closed_at <= now:
        return now - session.closed_at <= timedelta(minutes=options.closed_tile_minutes)
    return True


def build_board(patients: Mapping[str, BoardPatient], now: datetime, config: MonitorConfig,
                options: ViewOptions = ViewOptions()) -> BoardView:
    """Every visible session as a tile, grouped by site (sites and chairs in name order)."""
    by_site: dict[str, list[TileView]] = {}
    for patient_id, patient in patients.items():
        for session in patient.sessions.values():
            if _visible(session, now, options):
                tile = build_tile(patient_id, patient, session, now, config, options)
                by_site.setdefault(tile.site, []).append(tile)
    sites = []
    for site in sorted(by_site, key=lambda s: (s == NO_SITE, s)):
        tiles = sorted(by_site[site], key=lambda t: (t.label, t.started_at, t.session_id))
        counts = {s: 0 for s in SEVERITIES}
        for tile in tiles:
            for a in tile.open_alerts:
                counts[a.severity] = counts.get(a.severity, 0) + 1
        sites.append(SiteView(site, tiles, counts))
    return BoardView(now=now, sites=sites, tz_name=config.site_timezone)


def build_day(patients: Mapping[str, BoardPatient], day: date, now: datetime, config: MonitorConfig) -> DayView:
    """Sessions started on ``day`` (site time zone) with outcomes and alert counts, per site."""
    by_site: dict[str, list[DayRow]] = {}
    for patient_id, patient in patients.items():
        for session in patient.sessions.values():
            t0 = session.started_at
            if t0 is None or t0 > now or t0.astimezone(config.tz).date() != day:
                continue
            closed = session.closed_at is not None and session.closed_at <= now
            alerts = [a for a in session_alerts(patient, session, now) if a.raised_at <= now]
            counts = {s: 0 for s in SEVERITIES}
            for a in alerts:
                counts[a.severity] = counts.get(a.severity, 0) + 1
            views = [alert_view(patient_id, a, patient.alerts) for a in alerts]
            if closed:
                phase = CLOSED
            else:
                ended, _, wend = session_window(patient, session, now, config)
                phase = (CLOSING if wend is not None and now >= wend else OBSERVATION) if ended is not None else INFUSING
            by_site.setdefault(session.site_id or NO_SITE, []).append(DayRow(
                patient_id=patient_id, session_id=session.session_id, label=session.pump_id or session.session_id,
                infusion_number=session.infusion_number, started_at=t0,
                ended_at=session.ended_at if session.ended_at is not None and session.ended_at <= now else None,
                end_outcome=session.end_outcome if session.ended_at is not None and session.ended_at <= now else None,
                phase=phase, outcome=session.outcome if closed else None,
                outcome_text=outcome_text(session.outcome) if closed else PHASE_LABEL[phase].lower(),
                alerts_by_severity=counts, open_alerts=sum(1 for v in views if v.state == "open"),
            ))
    sites = []
    for site in sorted(by_site, key=lambda s: (s == NO_SITE, s)):
        rows = sorted(by_site[site], key=lambda r: (r.started_at, r.label, r.session_id))
        totals = {s: sum(r.alerts_by_severity.get(s, 0) for r in rows) for s in SEVERITIES}
        sites.append(DaySite(
            site=site, rows=rows, alerts_by_severity=totals, sessions=len(rows),
            closed=sum(1 for r in rows if r.phase == CLOSED),
            reactions=sum(1 for r in rows if r.outcome not in (None, "uneventful")),
        ))
    return DayView(day=day, sites=sites, tz_name=config.site_timezone)


def build_timeline(patients: Mapping[str, BoardPatient], patient_id: str, session_id: str, now: datetime,
                   config: MonitorConfig, options: ViewOptions = ViewOptions()) -> TimelineView | None:
    patient = patients.get(patient_id)
    session = patient.sessions.get(session_id) if patient is not None else None
    if patient is None or session is None or session.started_at is None:
        return None
    entries = [e for e in session.timeline if e.at <= now]
    session_ids = {a.alert_id for a in session_alerts(patient, session, now)}
    for a in patient.alerts.values():  # session-less alerts shown on the tile are part of its story
        if a.session_id is None and a.alert_id in session_ids:
            entries.append(Entry(a.raised_at, "alert.raised", f"{a.severity.upper()} {a.rule}: {a.summary}",
                                 a.severity, a.alert_id))
    entries.sort(key=lambda e: e.at)  # stable: same-time entries keep their arrival order
    alerts = _by_severity(alert_view(patient_id, patient.alerts[aid], patient.alerts) for aid in session_ids
                          if patient.alerts[aid].raised_at <= now)
    return TimelineView(tile=build_tile(patient_id, patient, session, now, config, options), patient_id=patient_id,
                        session_id=session_id, entries=entries, alerts=alerts)


# -- text (replay --board-at) -----------------------------------------------------------------

def render_text(view: BoardView, config: MonitorConfig) -> str:
    from infusion_monitor.schemas.base import format_time

    lines = [f"Board at {format_time(view.now)} (site time zone {view.tz_name})"]
    if not view.sites:
        lines.append("  no open sessions")
    for site in view.sites:
        counts = ", ".join(f"{n} {s}" for s, n in site.open_by_severity.items() if n) or "none"
        lines += ["", f"{site.site}  (open alerts: {counts})"]
        for t in site.tiles:
            number = f"#{t.infusion_number}" if t.infusion_number else "#?"
            phase = t.phase_label.upper()
            detail = t.phase_clock.text if t.phase_clock else ""
            if t.phase == CLOSED:
                detail = f"outcome: {t.outcome_text}"
            lines.append(f"  {t.label:<12} {t.patient_id:<12} {number:<4} {t.session_id}  {phase} {detail}".rstrip()
                         + (f"  ({t.phase_note})" if t.phase_note else ""))
            if t.last_vitals_text is not None and t.vitals_age is not None and t.last_vitals_at is not None:
                lines.append(f"      vitals {_hhmm(t.last_vitals_at, config)} ({t.vitals_age.text}): {t.last_vitals_text}")
            else:
                lines.append("      vitals: none yet")
            if t.vitals_due_text:
                marker = {"soon": "WARNING ", "overdue": "OVERDUE "}.get(t.vitals_due_state, "")
                lines.append(f"      {marker}{t.vitals_due_text}")
            if t.flags:
                lines.append("      flags: " + "; ".join(f.text for f in t.flags))
            for a in t.open_alerts:
                lines.append(f"      [{a.severity_label}] {a.rule} open: {a.summary}"
                             + (f" (escalated: {a.escalation})" if a.escalation else "")
                             + (f" [paged: {'; '.join(a.deliveries)}]" if a.deliveries else ""))
            for a in t.acknowledged_alerts:
                lines.append(f"      [{a.severity_label}] {a.rule} acknowledged by {a.acknowledged_by}: {a.summary}")
    return "\n".join(lines) + "\n"
