"""The infusion-monitor contract: pydantic models of every event, vocabularies, parsing."""

from .base import Event, OutboundEvent, PatientEvent, format_time
from .inbound import INBOUND_MODELS, InboundEvent
from .outbound import LIFECYCLE_MODELS, OUTBOUND_MODELS
from .parse import Rejection, parse_inbound

__all__ = [
    "Event",
    "OutboundEvent",
    "PatientEvent",
    "format_time",
    "INBOUND_MODELS",
    "InboundEvent",
    "OUTBOUND_MODELS",
    "LIFECYCLE_MODELS",
    "Rejection",
    "parse_inbound",
]
