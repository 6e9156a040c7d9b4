"""The envelope every event shares, and the time type used on the wire."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when present (byte-stable output)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


# Models are strict and validated from JSON: times and dates must be RFC 3339 text (strict JSON
# mode refuses numbers such as epoch seconds), validated in pydantic-core without Python calls.
EventTime = Annotated[
    AwareDatetime,
    PlainSerializer(format_time, return_type=str, when_used="json"),
    Field(description="RFC 3339 timestamp with offset (event time)"),
]
CalendarDate = Annotated[date, Field(description="calendar date, YYYY-MM-DD")]
EventId = Annotated[str, Field(min_length=1, max_length=256, description="globally unique id; the idempotency key (Nats-Msg-Id)")]
PatientKey = Annotated[str, Field(min_length=1, max_length=128, description="pseudonymous patient key, never a name")]
SessionId = Annotated[str, Field(min_length=1, max_length=128)]
ShortText = Annotated[str, Field(max_length=256)]
FreeText = Annotated[str, Field(max_length=4000)]


class Event(BaseModel):
    """Envelope fields common to every event, in and out."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=False, populate_by_name=True)

    type: str
    event_id: EventId
    occurred_at: EventTime


class PatientEvent(Event):
    patient_id: PatientKey


class OutboundEvent(BaseModel):
    """Outbound events are built by the product: no extras, fixed field order."""

    model_config = ConfigDict(extra="forbid")

    type: str
    event_id: str
    occurred_at: EventTime
    patient_id: str | None = None
