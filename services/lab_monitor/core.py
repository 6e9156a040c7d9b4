"""The lab monitor core: L1-L6 on ``lab.resulted`` and anti-drug antibodies (R15, R16, S2).

Event time is the specimen collection time (``occurred_at``). Counts compare in 10^9/L, liver
tests against the upper limit of normal (the result's ``reference_high``, else a configured
default), all in exact decimal arithmetic so the table's boundaries hold.
"""

from __future__ import annotations

from bisect import insort
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.inbound import InfusionStarted, LabResulted, is_monitored_drug
from infusion_monitor.schemas.outbound import AntibodyPersistence, AntibodyResulted, PatientContraindicated
from infusion_monitor.schemas.vocab import AlertKind, ContraindicationReason, PolicyProfile, Rule, Severity

from ..engine.alerts import make_alert
from ..engine.config import MonitorConfig
from ..engine.core import Context
from ..engine.ids import stable_id
from . import codes
from .codes import UnitError, canonical_unit, to_canonical
from .state import LabPatient, LiverResult, SpecimenAlert

REVIEW = "Clinician review within the working day."


def _d(value: float) -> Decimal:
    return Decimal(repr(value))


class LabMonitor:
    name: ClassVar[str] = "lab"
    state_model: ClassVar[type] = LabPatient
    handles: ClassVar[frozenset[str]] = frozenset({
        "lab.resulted", "infusion.started", "patient.contraindication_lifted",
    })

    def handle(self, st: LabPatient, event: Any, ctx: Context) -> None:
        match event.type:
            case "infusion.started":
                self._infusion(st, event, ctx)
            case "patient.contraindication_lifted":
                if event.reason is ContraindicationReason.LIVER_INJURY:
                    st.liver_injury_raised = False
            case "lab.resulted":
                self._result(st, event, ctx)

    def fire(self, st: LabPatient, kind: str, key: str, due: datetime, ctx: Context) -> None:
        return None  # no timers

    # -- events -----------------------------------------------------------------------------

    def _infusion(self, st: LabPatient, ev: InfusionStarted, ctx: Context) -> None:
        if is_monitored_drug(ev.drug):
            day = ev.occurred_at.astimezone(ctx.config.tz).date()
            if day not in st.starts:
                insort(st.starts, day)
                del st.starts[:-512]  # decades of treatment; older ones no longer matter (112 days)

    def _result(self, st: LabPatient, ev: LabResulted, ctx: Context) -> None:
        code = ev.code.strip()
        if code == codes.ANTIBODY:
            self._antibody(st, ev, ctx)
            return
        if code not in codes.UNITS:
            return  # a test no rule reads: accepted and ignored
        if isinstance(ev.value, str):
            ctx.reject(f"a number is required for {code}", "value")
            return
        try:
            value = to_canonical(code, ev.value, ev.unit)
            high = to_canonical(code, ev.reference_high, ev.unit) if ev.reference_high is not None else None
        except UnitError as exc:
            ctx.reject(str(exc), "unit")
            return
        if code in codes.EXPECTED_RISE_CODES:
            self._expected_rise(st, ev, code, value, high, ctx)
        elif code in codes.NEUTROPHIL_CODES:
            self._neutrophils(st, ev, code, value, ctx)
        elif code in codes.PLATELET_CODES:
            self._platelets(st, ev, code, value, ctx)
        else:
            default = ctx.config.default_uln.get(code, ctx.config.default_uln.get(codes.DEFAULT_ULN_OF.get(code, code)))
            uln = high if high is not None else (_d(default) if default is not None else None)
            self._liver(st, ev, code, value, uln, ctx)

    # -- L1, L2 -----------------------------------------------------------------------------

    def _expected_rise(self, st: LabPatient, ev: LabResulted, code: str, value: Decimal,
                       high: Decimal | None, ctx: Context) -> None:
        cfg = ctx.config
        specimen_day = ev.occurred_at.astimezone(cfg.tz).date()
        last = max((d for d in st.starts if d <= specimen_day), default=None)
        if high is None or last is None or not value > high:
            return
        days = (specimen_day - last).days
        evidence = {**_evidence(ev, code, value, ctx.config), "reference_high": float(high),
                    "last_infusion_date": last.isoformat(), "days_since_last_infusion": days}
        name = codes.NAMES[code]
        if days <= cfg.on_treatment_days:  # L1: expected natalizumab effect, never paged
            self._alert(st, ev, Rule.L1, AlertKind.LAB_EXPECTED_EFFECT, Severity.INFO, ctx,
                        f"Expected natalizumab effect: {name} above the reference range (L1)",
                        "None: recorded for the audit trail (natalizumab raises this count on treatment).",
                        evidence, condition=f"{code}@{format_time(ev.occurred_at)}")
        else:  # L2
            self._alert(st, ev, Rule.L2, AlertKind.LAB_CBC_NOT_NORMALISED, Severity.LOW, ctx,
                        f"{name.capitalize()} still above range {days} days after the last infusion (L2)",
                        "Review at the next visit: the natalizumab effect should have resolved by 16 weeks.",
                        evidence, condition=f"{code}@{format_time(ev.occurred_at)}")

    # -- L3, L4 -----------------------------------------------------------------------------

    def _neutrophils(self, st: LabPatient, ev: LabResulted, code: str, value: Decimal, ctx: Context) -> None:
        cfg = ctx.config
        if value < _d(cfg.neutrophils_high):
            severity = Severity.HIGH
        elif value < _d(cfg.neutrophils_medium):
            severity = Severity.MEDIUM
        elif value < _d(cfg.neutrophils_low):
            severity = Severity.LOW
        else:
            return
        self._alert(st, ev, Rule.L3, AlertKind.LAB_NEUTROPENIA, severity, ctx,
                    f"Neutropenia (L3, {severity.value}): neutrophils {value.normalize():f} x10^9/L",
                    "Review: natalizumab does not lower neutrophils; look for another cause, assess infection risk.",
                    _evidence(ev, code, value, cfg))

    def _platelets(self, st: LabPatient, ev: LabResulted, code: str, value: Decimal, ctx: Context) -> None:
        cfg = ctx.config
        if value < _d(cfg.platelets_high):
            severity = Severity.HIGH
        elif value < _d(cfg.platelets_medium):
            severity = Severity.MEDIUM
        else:
            return
        self._alert(st, ev, Rule.L4, AlertKind.LAB_THROMBOCYTOPENIA, severity, ctx,
                    f"Thrombocytopenia (L4, {severity.value}): platelets {value.normalize():f} x10^9/L",
                    "Clinician review; CTCAE grade 2 (medium) or 3+ (high).",
                    _evidence(ev, code, value, cfg))

    # -- L5, L6 -----------------------------------------------------------------------------

    def _liver(self, st: LabPatient, ev: LabResulted, code: str, value: Decimal, uln: Decimal | None,
               ctx: Context) -> None:
        cfg = ctx.config
        result = LiverResult(code=code, at=ev.occurred_at, value=float(value), uln=float(uln or 0), event_id=ev.event_id)
        self._remember(st, result, cfg)  # ALP too: it goes into L6's evidence
        if uln is None or uln <= 0:
            return
        if code in codes.TRANSAMINASES:
            if value > _d(cfg.liver_high_x_uln) * uln:
                severity = Severity.HIGH
            elif value > _d(cfg.liver_medium_x_uln) * uln:
                severity = Severity.MEDIUM
            else:
                severity = None
            if severity is not None:
                self._alert(st, ev, Rule.L5, AlertKind.LAB_LIVER, severity, ctx,
                            f"{codes.NAMES[code]} {_ratio(value, uln)}x upper limit of normal (L5, {severity.value})",
                            "Clinician review of liver function; repeat ALT, AST, bilirubin and ALP.",
                            {**_evidence(ev, code, value, cfg), "uln": float(uln), "x_uln": _ratio(value, uln)})
        if code in codes.TRANSAMINASES or code in codes.BILIRUBIN_CODES:
            self._hys_law(st, ev, ctx)

    def _hys_law(self, st: LabPatient, ev: LabResulted, ctx: Context) -> None:
        """L6: ALT or AST >= 3x ULN and bilirubin > 2x ULN on specimens at most 168 h apart."""
        cfg = ctx.config
        if st.liver_injury_raised:
            return
        window = timedelta(hours=cfg.hys_law_window_hours)
        transaminase = [r for r in st.liver if r.code in codes.TRANSAMINASES
                        and _d(r.value) >= _d(cfg.hys_law_transaminase_x_uln) * _d(r.uln)]
        bilirubin = [r for r in st.liver if r.code in codes.BILIRUBIN_CODES
                     and _d(r.value) > _d(cfg.hys_law_bilirubin_x_uln) * _d(r.uln)]
        pairs = [(t, b) for t in transaminase for b in bilirubin if abs(t.at - b.at) <= window
                 and ev.event_id in (t.event_id, b.event_id)]
        if not pairs:
            return
        t, b = min(pairs, key=lambda p: (abs(p[0].at - p[1].at), p[0].at, p[1].at))
        alp = [r for r in st.liver if r.code == codes.ALP and abs(r.at - t.at) <= window]
        evidence = {
            "transaminase": {"code": t.code, "value": t.value, "uln": t.uln, "x_uln": _ratio(_d(t.value), _d(t.uln)),
                             "specimen_at": format_time(t.at), "event_id": t.event_id},
            "bilirubin_umol_l": {"value": b.value, "uln": b.uln, "x_uln": _ratio(_d(b.value), _d(b.uln)),
                                 "specimen_at": format_time(b.at), "event_id": b.event_id},
            "hours_apart": round(abs(t.at - b.at).total_seconds() / 3600, 1),
        }
        if alp:
            latest = max(alp, key=lambda r: r.at)
            evidence["alp"] = {"value": latest.value, "uln": latest.uln, "specimen_at": format_time(latest.at)}
        alert = self._alert(
            st, ev, Rule.L6, AlertKind.DISCONTINUE_LIVER_INJURY, Severity.CRITICAL, ctx,
            "Possible drug-induced liver injury (Hy's law, L6): stop natalizumab",
            "Stop natalizumab; look for other causes of liver injury; do not restart until cleared.",
            evidence, condition=f"hys-law@{format_time(max(t.at, b.at))}")
        st.liver_injury_raised = True
        ctx.emit(PatientContraindicated(
            event_id=stable_id("ev", "contraindicated", alert.alert_id), occurred_at=ev.occurred_at,
            patient_id=ctx.patient_id, reason=ContraindicationReason.LIVER_INJURY, rule=Rule.L6,
            alert_id=alert.alert_id))

    def _remember(self, st: LabPatient, result: LiverResult, cfg: MonitorConfig) -> None:
        """Keep liver results within the Hy's-law window; a result for the same test and
        specimen (a correction) replaces the earlier one."""
        kept = [r for r in st.liver if not (r.code == result.code and r.at == result.at)]
        kept.append(result)
        newest = max(r.at for r in kept)
        horizon = newest - timedelta(hours=cfg.hys_law_window_hours)
        st.liver = sorted((r for r in kept if r.at >= horizon), key=lambda r: (r.at, r.code))[-64:]

    # -- antibodies: R15, R16, S2 -----------------------------------------------------------

    def _antibody(self, st: LabPatient, ev: LabResulted, ctx: Context) -> None:
        cfg = ctx.config
        if ev.value not in ("positive", "negative"):
            ctx.reject("an antibody result (58012-6) is 'positive' or 'negative'", "value")
            return
        day = ev.occurred_at.astimezone(cfg.tz).date()
        positive = ev.value == "positive"
        first = decides = False
        if positive and not st.persistent:
            if st.first_positive is None:  # R15
                first = True
                st.first_positive = day
                self._alert(st, ev, Rule.R15, AlertKind.ANTIBODY_POSITIVE, Severity.MEDIUM, ctx,
                            "Anti-natalizumab antibodies detected (R15): first positive, retest to confirm",
                            f"Retest in {cfg.confirm_after_days} days to confirm persistence; watch for infusion reactions.",
                            {"specimen_date": day.isoformat(), "lab_event_id": ev.event_id}, condition=f"R15@{day}")
            elif (day - st.first_positive).days >= cfg.persistence_min_days:  # R16
                decides = True
                self._persistent(st, ev, day, ctx)
        elif not positive and st.first_positive is not None and not st.persistent:  # S2: transient
            decides = True
            st.first_positive = None
        ctx.emit(AntibodyResulted(
            event_id=stable_id("ev", "antibody.resulted", ctx.patient_id, ev.event_id),
            occurred_at=ev.occurred_at, patient_id=ctx.patient_id, specimen_date=day, positive=positive,
            first_positive=first, decides_persistence=decides))

    def _persistent(self, st: LabPatient, ev: LabResulted, day: date, ctx: Context) -> None:
        cfg = ctx.config
        first = st.first_positive
        assert first is not None
        st.persistent = True
        eu = cfg.profile is PolicyProfile.EU
        action = ("Discontinue natalizumab (EU product information): persistent antibodies."
                  if eu else
                  "Benefit-risk review: efficacy much reduced with persistent antibodies; consider changing the regimen.")
        alert = self._alert(st, ev, Rule.R16, AlertKind.ANTIBODY_PERSISTENT, Severity.HIGH, ctx,
                            "Persistent anti-natalizumab antibodies (R16): enhanced monitoring from now on",
                            action,
                            {"first_positive_date": first.isoformat(), "confirming_date": day.isoformat(),
                             "days_apart": (day - first).days, "profile": cfg.profile.value},
                            condition="R16")
        ctx.emit(AntibodyPersistence(
            event_id=stable_id("ev", "antibody.persistence", alert.alert_id), occurred_at=ev.occurred_at,
            patient_id=ctx.patient_id, persistent=True, first_positive_date=first, confirming_date=day))
        if eu:
            ctx.emit(PatientContraindicated(
                event_id=stable_id("ev", "contraindicated", alert.alert_id), occurred_at=ev.occurred_at,
                patient_id=ctx.patient_id, reason=ContraindicationReason.PERSISTENT_ANTIBODIES, rule=Rule.R16,
                alert_id=alert.alert_id))

    # -- alerts -----------------------------------------------------------------------------

    def _alert(self, st: LabPatient, ev: LabResulted, rule: Rule, kind: AlertKind, severity: Severity,
               ctx: Context, summary: str, action: str, evidence: dict[str, Any],
               condition: str | None = None) -> Any:
        """One alert per rule and specimen, escalating to a worse grade (a correction or the
        other transaminase of the same specimen), never repeating."""
        condition = condition or f"{rule.value}@{format_time(ev.occurred_at)}"
        key = f"{rule.value}|{condition}"
        current = st.specimen_alerts.get(key)
        if current is not None and severity.rank <= current.rank:
            return None
        alert = make_alert(
            patient_id=ctx.patient_id, at=ev.occurred_at, kind=kind, severity=severity, rule=rule,
            condition=f"{condition}/{severity.value}" if current is not None else condition,
            summary=summary, action=action, evidence=evidence,
            supersedes=current.alert_id if current is not None else None)
        ctx.emit(alert)
        alerts = {**st.specimen_alerts, key: SpecimenAlert(alert_id=alert.alert_id, rank=severity.rank)}
        st.specimen_alerts = dict(list(alerts.items())[-64:])
        return alert


def _ratio(value: Decimal, uln: Decimal) -> float:
    return float(round(value / uln, 2))


def _evidence(ev: LabResulted, code: str, value: Decimal, cfg: MonitorConfig) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "code": code,
        "test": codes.NAMES[code],
        "value": ev.value,
        "unit": ev.unit or canonical_unit(code),
        "value_canonical": float(value),
        "canonical_unit": canonical_unit(code),
        "specimen_at": format_time(ev.occurred_at),
        "lab_event_id": ev.event_id,
    }
    if ev.resulted_at is not None:
        evidence["resulted_at"] = format_time(ev.resulted_at)
    if ev.corrects:
        evidence["corrects"] = ev.corrects
    return evidence
