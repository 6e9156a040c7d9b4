"""What the bridge reads from NATS: the alert lifecycle (``im.alert.>``: raised, acknowledged,
resolved, and ``alert.delivery``, what became of each destination's copy) and ``session.closed``.

Producers may add fields (``contract.md``), so the models here keep extras (an alert's
``site_id`` is one the router uses). Event types the bridge does not act on (its own
``alert.escalated``) are skipped, not rejected."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from infusion_monitor.schemas.outbound import AlertAcknowledged, AlertDelivery, AlertRaised, AlertResolved, SessionClosed
from infusion_monitor.schemas.parse import Rejection, rejection_from


class WireAlertRaised(AlertRaised):
    model_config = ConfigDict(extra="allow")


class WireSessionClosed(SessionClosed):
    model_config = ConfigDict(extra="allow")


_WIRE = TypeAdapter(Annotated[
    WireAlertRaised | AlertAcknowledged | AlertResolved | AlertDelivery | WireSessionClosed,
    Field(discriminator="type")])
HANDLED = frozenset({"alert.raised", "alert.acknowledged", "alert.resolved", "alert.delivery", "session.closed"})


def subject_type(subject: str) -> str:
    """``{ns}.{alert|out}.<patient>.<type>`` -> ``<type>`` (types contain dots)."""
    return subject.split(".", 3)[3] if subject.count(".") >= 3 else ""


def parse_wire(raw: bytes, subject: str) -> Any | Rejection | None:
    """The event, a rejection naming the field, or None for a type the bridge ignores."""
    if subject_type(subject) not in HANDLED:
        return None
    try:
        return _WIRE.validate_json(raw)
    except ValidationError as exc:
        return rejection_from(exc)
