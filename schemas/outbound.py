"""Outbound events (``contract.md``, "Outbound events"), the alert lifecycle and internal facts.

Internal facts are how cores tell each other what they learned (a patient became
contraindicated, a reaction happened, antibodies became persistent). They travel on the
same bus as every other outbound event and are part of the contract like the public ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import CalendarDate, EventTime, OutboundEvent, PatientEvent, ShortText, FreeText
from .vocab import (
    AckVia,
    AlertKind,
    ContraindicationReason,
    DeliveryState,
    DueReason,
    ResolveReason,
    Rule,
    Severity,
)


class AlertRaised(OutboundEvent):
    type: Literal["alert.raised"] = "alert.raised"
    patient_id: str
    alert_id: str
    kind: AlertKind
    severity: Severity
    rule: Rule
    session_id: str | None = None
    site_id: str | None = Field(default=None, description="the session's site (for routing pages by site)")
    pump_id: str | None = Field(default=None, description="the session's pump or chair (where to go)")
    summary: str
    action: str
    evidence: dict[str, Any]
    outside_window: bool = False
    dedup_key: str
    supersedes: str | None = None


class AntibodyTestDue(OutboundEvent):
    type: Literal["antibody_test.due"] = "antibody_test.due"
    patient_id: str
    due_date: CalendarDate
    reason: DueReason
    rule: Rule


class SessionClosed(OutboundEvent):
    type: Literal["session.closed"] = "session.closed"
    patient_id: str
    session_id: str
    outcome: str = Field(description="`uneventful` or the kind of the worst R7-R13/M1 alert")
    alert_ids: list[str] = Field(default_factory=list, description=(
        "every alert the session monitor raised for this session before its close (pre-infusion, baseline, "
        "gaps, end, reactions; superseded ones too), in the order raised"))


# --- alert lifecycle (shared by the paging bridge and the board) ---------------------------


class AlertAcknowledged(PatientEvent):
    type: Literal["alert.acknowledged"]
    alert_id: Annotated[str, Field(min_length=1, max_length=256)]
    by: ShortText
    via: AckVia
    note: FreeText | None = None


class AlertResolved(PatientEvent):
    type: Literal["alert.resolved"]
    alert_id: Annotated[str, Field(min_length=1, max_length=256)]
    reason: ResolveReason
    by: ShortText | None = None


PageAction = Literal["trigger", "acknowledge", "resolve"]


class AlertDelivery(PatientEvent):
    """Where one destination's copy of an alert got: published by the paging bridge's delivery
    (sent, retrying, failed) and by its IHE PCD-05 listener (what the alarm manager reports).
    A trigger that ``failed``, was ``rejected`` or is ``undeliverable`` escalates the alert at once."""

    type: Literal["alert.delivery"]
    alert_id: Annotated[str, Field(min_length=1, max_length=256)]
    destination: Annotated[str, Field(min_length=1, max_length=128)]
    state: DeliveryState
    event_action: PageAction | None = Field(default=None, description="the request it is about (bridge states)")
    page_event_id: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="the page.requested it is about (bridge states)")
    attempts: Annotated[int, Field(ge=0)] | None = None
    reason: ShortText | None = Field(default=None, description="error class, ACK code or status text; never a body")
    by: ShortText | None = Field(default=None, description="the recipient an alarm manager named (PCD-05 PRT)")


# --- the paging bridge (services/pager): escalations and deliveries, kept in IM_AUDIT -------


class AlertEscalated(OutboundEvent):
    """An unacknowledged alert moved to the next tier of its route (or to the failsafe)."""

    type: Literal["alert.escalated"] = "alert.escalated"
    patient_id: str
    alert_id: str
    dedup_key: str
    severity: Severity
    route: str
    from_tier: int = Field(description="1-based tier that did not acknowledge")
    to_tier: int = Field(description="1-based tier now paged (the failsafe: one past the last tier)")
    failsafe: bool = False
    destinations: list[str]


class PageRequested(OutboundEvent):
    """The pager core asks the bridge's shell to send one request to one destination."""

    type: Literal["page.requested"] = "page.requested"
    patient_id: str
    alert_id: str
    dedup_key: str
    destination: str
    adapter: Literal["pagerduty", "webhook", "acm", "fhir"]
    route: str
    tier: int = Field(description="1-based tier; the failsafe is one past the last tier")
    failsafe: bool = False
    event_action: PageAction
    sequence: int = Field(description="n-th request of this alert to this destination (re-pages count up)")
    severity: Severity
    alert: dict[str, Any] = Field(description="the alert.raised event as the contract defines it")
    lifecycle: dict[str, Any] | None = Field(
        default=None, description="the alert.acknowledged / alert.resolved event an acknowledge / resolve relays")
    superseded_severity: Severity | None = Field(
        default=None, description="the severity of the alert this one supersedes (IHE ACM: escalate or update)")
    acknowledged_by: str | None = Field(
        default=None, description="who acknowledged the alert, once someone has (FHIR: the request's note)")


class PageAttempted(OutboundEvent):
    """One delivery attempt of a ``page.requested`` and its result (``occurred_at``: wall clock)."""

    type: Literal["page.attempted"] = "page.attempted"
    patient_id: str
    page_event_id: str
    alert_id: str
    dedup_key: str
    destination: str
    event_action: PageAction
    attempt: int
    delivered: bool
    status_code: int | None = None
    error: str | None = Field(default=None, description="the error class (timeout, refused, ...), never a body")


class OperatorCondition(OutboundEvent):
    """A condition about the product itself began (``active``) or ended, as a shell observed it
    (a paging destination down past its cap; later: a silent service). The pager core turns it
    into an operator alert (``kind`` ``system.*``) with its own lifecycle: one open alert per
    condition and subject, resolved when the condition ends. Filed under the operator key."""

    type: Literal["operator.condition"] = "operator.condition"
    patient_id: str = Field(description="the operator key (`_operator`), never a patient's")
    kind: AlertKind = Field(description="a `system.*` alert kind")
    subject: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="what it is about, e.g. the destination's name")
    active: bool
    severity: Severity = Severity.HIGH
    summary: ShortText = ""
    action: ShortText = ""
    evidence: dict[str, Any] = Field(default_factory=dict)


# --- internal facts ---------------------------------------------------------------------------


class PatientContraindicated(OutboundEvent):
    """A contraindication reason was set on the patient (R5 checks it at the next start)."""

    type: Literal["patient.contraindicated"] = "patient.contraindicated"
    patient_id: str
    reason: ContraindicationReason
    rule: Rule
    alert_id: str | None = None


class ContraindicationLifted(OutboundEvent):
    """A contraindication reason was cleared by a clinician (kept in the audit trail)."""

    type: Literal["patient.contraindication_lifted"] = "patient.contraindication_lifted"
    patient_id: str
    reason: ContraindicationReason
    clinician: str | None = None
    source_event_id: str


class ReactionRecorded(OutboundEvent):
    """The first R7-R13 alert of a session, or a confirmed hypersensitivity (A6): R14."""

    type: Literal["reaction.recorded"] = "reaction.recorded"
    patient_id: str
    session_id: str | None = None
    alert_id: str
    rule: Rule


class ReexposureRecorded(OutboundEvent):
    """An infusion after a gap of more than 84 days (R17)."""

    type: Literal["reexposure.recorded"] = "reexposure.recorded"
    patient_id: str
    session_id: str
    gap_days: int


class AntibodyResulted(OutboundEvent):
    """An anti-natalizumab antibody result as the lab side judged it (for the scheduler)."""

    type: Literal["antibody.resulted"] = "antibody.resulted"
    patient_id: str
    specimen_date: CalendarDate
    positive: bool
    first_positive: bool = Field(description="R15: a positive with no positive on record")
    decides_persistence: bool = Field(description="a negative after a positive, or R16's confirming positive")


class AntibodyPersistence(OutboundEvent):
    """Persistent antibodies established (R16): P5 and enhanced monitoring (M1 at 15 min)."""

    type: Literal["antibody.persistence"] = "antibody.persistence"
    patient_id: str
    persistent: bool
    first_positive_date: CalendarDate
    confirming_date: CalendarDate


class ServiceHeartbeat(BaseModel):
    """What every service publishes every few seconds on ``{ns}.health.<service>.<instance>``
    (core NATS, not stored): the watchdog in the paging bridge raises an operator alert when one
    stops, falls behind, restarts again and again, or reports a message set aside or a defect."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["service.heartbeat"] = "service.heartbeat"
    service: Annotated[str, Field(min_length=1, max_length=32)]
    instance: Annotated[str, Field(min_length=1, max_length=32, description="stable across restarts, e.g. `0`")]
    started_at: EventTime = Field(description="when this process started (wall clock): a new value is a restart")
    at: EventTime = Field(description="when this heartbeat was sent (wall clock)")
    every_s: float = Field(description="the heartbeat interval: silence is judged against it")
    position: int | None = Field(default=None, description="the last input stream sequence handled")
    lag: int | None = Field(default=None, description="input messages not handled yet")
    last_error: ShortText | None = Field(default=None, description="the last defect met (a type, never data)")
    counters: dict[str, int] = Field(default_factory=dict, description=(
        "counts since start: rejected, duplicate, future, unmatched, quarantined, internal, republished, ..."))


OUTBOUND_MODELS: tuple[type[OutboundEvent], ...] = (
    AlertRaised,
    AntibodyTestDue,
    SessionClosed,
    PatientContraindicated,
    ContraindicationLifted,
    ReactionRecorded,
    ReexposureRecorded,
    AntibodyResulted,
    AntibodyPersistence,
)
LIFECYCLE_MODELS = (AlertAcknowledged, AlertResolved, AlertDelivery)
PAGER_MODELS: tuple[type[OutboundEvent], ...] = (AlertEscalated, PageRequested, PageAttempted, OperatorCondition)

__all__ = [m.__name__ for m in OUTBOUND_MODELS + LIFECYCLE_MODELS + PAGER_MODELS] + ["EventTime", "ServiceHeartbeat"]


OutboundUnion = Annotated[
    AlertRaised
    | AntibodyTestDue
    | SessionClosed
    | PatientContraindicated
    | ContraindicationLifted
    | ReactionRecorded
    | ReexposureRecorded
    | AntibodyResulted
    | AntibodyPersistence,
    Field(discriminator="type"),
]
