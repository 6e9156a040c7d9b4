"""The scheduler core: antibody-test due dates (``clinical-rules.md``, "Anti-drug antibodies and
the scheduler"). Pure: due events are timers in the patient's state; the live shell's
APScheduler job only moves the clock, so a restart re-arms everything and a missed due fires
at once, exactly once."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.inbound import InfusionStarted, PatientProfile, is_monitored_drug
from infusion_monitor.schemas.outbound import AntibodyResulted, AntibodyTestDue
from infusion_monitor.schemas.vocab import AlertKind, DueReason, Rule, Severity

from ..engine.alerts import make_alert
from ..engine.config import MonitorConfig
from ..engine.core import Context
from ..engine.ids import stable_id
from .state import SchedulerPatient

DUE, OVERDUE = "due", "overdue"
SPECIFICITY = list(DueReason)  # confirm_positive > before_restart > after_reaction > routine
RULE_OF = {
    DueReason.ROUTINE: Rule.S1,
    DueReason.AFTER_REACTION: Rule.R14,
    DueReason.CONFIRM_POSITIVE: Rule.R15,
    DueReason.BEFORE_RESTART: Rule.R17,
}
EMITTED_MEMORY = 64


def midnight(day: date, config: MonitorConfig) -> datetime:
    """A date-only due fires at 00:00 of its date in the site's time zone."""
    return datetime.combine(day, time(0), tzinfo=config.tz)


class AntibodyScheduler:
    name: ClassVar[str] = "scheduler"
    state_model: ClassVar[type] = SchedulerPatient
    handles: ClassVar[frozenset[str]] = frozenset({
        "patient.profile", "infusion.started", "reaction.recorded", "reexposure.recorded", "antibody.resulted",
    })

    def handle(self, st: SchedulerPatient, event: Any, ctx: Context) -> None:
        match event.type:
            case "patient.profile":
                self._profile(st, event, ctx)
            case "infusion.started":
                self._infusion(st, event, ctx)
            case "reaction.recorded":  # R14
                self._add(st, event.occurred_at, DueReason.AFTER_REACTION, ctx)
            case "reexposure.recorded":  # R17
                self._add(st, event.occurred_at, DueReason.BEFORE_RESTART, ctx)
            case "antibody.resulted":
                self._result(st, event, ctx)

    def fire(self, st: SchedulerPatient, kind: str, key: str, due: datetime, ctx: Context) -> None:
        if kind == DUE:
            self._due(st, key, due, ctx)
        elif kind == OVERDUE:
            self._overdue(st, key, due, ctx)

    # -- S1: the routine schedule -----------------------------------------------------------

    def _profile(self, st: SchedulerPatient, ev: PatientProfile, ctx: Context) -> None:
        if ev.treatment_start is None or ev.treatment_start == st.treatment_start:
            return
        st.treatment_start = st.anchor = ev.treatment_start
        known = ev.occurred_at.astimezone(ctx.config.tz).date()
        self._set_routine(st, self._first_not_before(st.last_result or st.anchor, known, ctx.config), ctx)

    def _infusion(self, st: SchedulerPatient, ev: InfusionStarted, ctx: Context) -> None:
        if not is_monitored_drug(ev.drug):
            return
        day = ev.occurred_at.astimezone(ctx.config.tz).date()
        st.first_infusion = min(st.first_infusion or day, day)
        newest = st.last_infusion is None or day > st.last_infusion
        st.last_infusion = max(st.last_infusion or day, day)
        if st.anchor is None:  # the first infusion anchors the schedule
            st.anchor = day
            self._set_routine(st, self._first_not_before(st.last_result or day, day, ctx.config), ctx)
        elif newest and st.next_routine is None:  # routine testing was paused: restart from here
            self._set_routine(st, day + timedelta(days=ctx.config.antibody_interval_days), ctx)

    def _first_not_before(self, anchor: date, known: date, config: MonitorConfig) -> date:
        """No backlog: the first anchor + k*84 days (k >= 1) on or after the day it became known.
        (After an antibody result the "anchor" is that result's specimen date.)"""
        step = config.antibody_interval_days
        k = max(1, -(-(known - anchor).days // step))
        return anchor + timedelta(days=k * step)

    def _set_routine(self, st: SchedulerPatient, day: date | None, ctx: Context) -> None:
        self._remove_reason(st, DueReason.ROUTINE, ctx)
        st.next_routine = day
        if day is not None:
            self._add(st, midnight(day, ctx.config), DueReason.ROUTINE, ctx)

    def _paused(self, st: SchedulerPatient, day: date, config: MonitorConfig) -> bool:
        """Routine testing pauses while the last infusion is more than 84 days in the past."""
        return st.last_infusion is not None and (day - st.last_infusion).days > config.routine_pause_after_days

    # -- results (R15 confirmation, S1 reset, S3 satisfied) ---------------------------------

    def _result(self, st: SchedulerPatient, ev: AntibodyResulted, ctx: Context) -> None:
        cfg = ctx.config
        for due_id in st.outstanding:  # any result after a due event satisfies it
            ctx.cancel_timer(OVERDUE, due_id)
        st.outstanding = ()
        st.last_result = max(st.last_result or ev.specimen_date, ev.specimen_date)
        if st.anchor is not None:  # S1 runs for a patient on treatment: a result moves its date
            self._set_routine(st, ev.specimen_date + timedelta(days=cfg.antibody_interval_days), ctx)
        if ev.decides_persistence:
            self._remove_reason(st, DueReason.CONFIRM_POSITIVE, ctx)
        if ev.first_positive:  # R15
            confirm = ev.specimen_date + timedelta(days=cfg.confirm_after_days)
            self._add(st, midnight(confirm, cfg), DueReason.CONFIRM_POSITIVE, ctx)

    # -- due slots --------------------------------------------------------------------------

    def _add(self, st: SchedulerPatient, at: datetime, reason: DueReason, ctx: Context) -> None:
        key = format_time(at)
        reasons = st.slots.get(key)
        if reasons is None:
            reasons = st.slots[key] = []
            ctx.set_timer(at, DUE, key)
        if reason not in reasons:
            reasons.append(reason)

    def _remove_reason(self, st: SchedulerPatient, reason: DueReason, ctx: Context) -> None:
        for key, reasons in list(st.slots.items()):
            if reason in reasons:
                reasons.remove(reason)
                if not reasons:
                    del st.slots[key]
                    ctx.cancel_timer(DUE, key)

    def _due(self, st: SchedulerPatient, key: str, at: datetime, ctx: Context) -> None:
        cfg = ctx.config
        pending = st.slots.pop(key, None)
        if pending is None:
            return
        reasons = set(pending)
        day = at.astimezone(cfg.tz).date()
        if DueReason.ROUTINE in reasons:
            if self._paused(st, day, cfg):
                reasons.discard(DueReason.ROUTINE)
                st.next_routine = None
            else:
                self._set_routine(st, day + timedelta(days=cfg.antibody_interval_days), ctx)
        if not reasons or day.isoformat() in st.emitted:
            return  # at most one due event per patient per date
        reason = min(reasons, key=SPECIFICITY.index)
        due = AntibodyTestDue(
            event_id=stable_id("ev", "antibody_test.due", ctx.patient_id, day.isoformat()),
            occurred_at=at, patient_id=ctx.patient_id, due_date=day, reason=reason, rule=RULE_OF[reason])
        ctx.emit(due)
        emitted = {**st.emitted, day.isoformat(): due.event_id}
        st.emitted = {d: emitted[d] for d in sorted(emitted)[-EMITTED_MEMORY:]}
        st.outstanding = [*st.outstanding, due.event_id]
        ctx.set_timer(at + timedelta(days=cfg.overdue_after_days), OVERDUE, due.event_id)

    def _overdue(self, st: SchedulerPatient, due_id: str, at: datetime, ctx: Context) -> None:
        """S3: no antibody result within 14 days after a due event."""
        if due_id not in st.outstanding:
            return
        st.outstanding = [i for i in st.outstanding if i != due_id]
        due_day = next((d for d, i in st.emitted.items() if i == due_id), None)
        ctx.emit(make_alert(
            patient_id=ctx.patient_id, at=at, kind=AlertKind.ANTIBODY_TEST_OVERDUE, severity=Severity.LOW,
            rule=Rule.S3, condition=f"overdue:{due_id}",
            summary=f"Antibody test overdue: due {due_day}, no result {ctx.config.overdue_after_days} days later (S3)",
            action="Order the anti-natalizumab antibody test at the next visit.",
            evidence={"due_date": due_day, "due_event_id": due_id},
        ))
