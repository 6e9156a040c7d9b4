"""The envelope every event shares, and the time type used on the wire."""

from __future__ import annotations

import re

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when present (byte-stable output)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _rfc3339(value: object) -> object:
    """Only RFC 3339 text: pydantic alone would also take epoch seconds, even as a string."""
    if isinstance(value, datetime):  # built in code, not parsed
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 timestamp with offset, e.g. 2025-03-03T10:00:00+01:00")
    return value


def _iso_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


# Bounds (architecture.md rule 9): no single input may stop a service, and every arithmetic on
# times must be safe for any value the schema admits (a date 84 days after 9999-12-31 is an
# OverflowError). Times before 1970 or from 2100 on, and dates outside 1900-2099, are bad input.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(2100, 1, 1, tzinfo=UTC)
EARLIEST_DATE, END_OF_DATES = date(1900, 1, 1), date(2100, 1, 1)


def _time_in_range(value: datetime) -> datetime:
    if 1970 < value.year < 2099:  # the common case, decided without comparing offsets
        return value
    if not EARLIEST <= value < END_OF_TIME:
        raise ValueError("out of range: before 1970-01-01 or from 2100-01-01 on")
    return value


def _date_in_range(value: date) -> date:
    if not EARLIEST_DATE <= value < END_OF_DATES:
        raise ValueError("out of range: before 1900-01-01 or from 2100-01-01 on")
    return value


# Models are strict; times and dates must be RFC 3339 text. The shape check runs first and
# refuses anything else (numbers, numeric strings), so the parse itself can be lax about text.
EventTime = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    Field(strict=False),
    PlainSerializer(format_time, return_type=str, when_used="json"),
    Field(description="RFC 3339 timestamp with offset (event time)"),
]
CalendarDate = Annotated[date, BeforeValidator(_iso_date), Field(strict=False, description="calendar date, YYYY-MM-DD")]
# what the product accepts: bounded (the product's own outputs may run past 2100 by a due date)
InboundTime = Annotated[
    EventTime, AfterValidator(_time_in_range),
    Field(description="RFC 3339 timestamp with offset (event time), from 1970-01-01 to before 2100-01-01"),
]
InboundDate = Annotated[CalendarDate, AfterValidator(_date_in_range),
                        Field(description="calendar date, YYYY-MM-DD, from 1900-01-01 to 2099-12-31")]
EventId = Annotated[str, Field(min_length=1, max_length=256, description="globally unique id; the idempotency key (Nats-Msg-Id)")]
PatientKey = Annotated[str, Field(min_length=1, max_length=128, description="pseudonymous patient key, never a name")]
# Privacy by default (issue 14): what producers send as ``patient_id`` must look like a
# pseudonymous key, so a raw record number or a name is bad input (dead-lettered with the
# reason), never an alert, an audit record or a page. The default is the shape of the gateway's
# keys and the contract's examples; a site whose producers key patients otherwise sets its own
# (``INFUSION_MONITOR_PATIENT_KEY_PATTERN``, applied by the command line at start).
DEFAULT_PATIENT_KEY_PATTERN = r"pk-[0-9a-z][0-9a-z_-]{0,63}"
_PATIENT_KEY = [re.compile(DEFAULT_PATIENT_KEY_PATTERN)]


def set_patient_key_pattern(pattern: str | None) -> None:
    """The pattern every producer's ``patient_id`` must match in full (``None``: the default)."""
    _PATIENT_KEY[0] = re.compile(pattern or DEFAULT_PATIENT_KEY_PATTERN)


def _pseudonymous(value: str) -> str:
    if not _PATIENT_KEY[0].fullmatch(value):
        raise ValueError("not a pseudonymous patient key (INFUSION_MONITOR_PATIENT_KEY_PATTERN): "
                         "never a record number or a name")
    return value


ProducerPatientKey = Annotated[PatientKey, AfterValidator(_pseudonymous)]
SessionId = Annotated[str, Field(min_length=1, max_length=128)]
ShortText = Annotated[str, Field(max_length=256)]
FreeText = Annotated[str, Field(max_length=4000)]


class Event(BaseModel):
    """Envelope fields common to every event, in and out."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=False, populate_by_name=True)

    type: str
    event_id: EventId
    occurred_at: InboundTime


class PatientEvent(Event):
    patient_id: PatientKey


class ProducerPatientEvent(PatientEvent):
    """An event a producer sends: its ``patient_id`` must be a pseudonymous key."""

    patient_id: ProducerPatientKey


class OutboundEvent(BaseModel):
    """Outbound events are built by the product: no extras, fixed field order."""

    model_config = ConfigDict(extra="forbid")

    type: str
    event_id: str
    occurred_at: EventTime
    patient_id: str | None = None
