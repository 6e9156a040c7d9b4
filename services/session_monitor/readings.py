"""The patient's readings as they arrived: baseline candidates and pending readings.

``clinical-rules.md``: the baseline candidates of a session are *all* the patient's readings
taken in [t0 - 30 min, t0 + 5 min], whatever their order of arrival, number or named session;
a reading that no started session claims is **pending** for 24 h of stream time, and a start
that arrives after its readings catches its session up with them, in their order of arrival.

Both need the same memory: every reading of the last 24 h of stream time, in arrival order,
with the stream time at which it arrived. It is held compactly (10,000 open sessions live in
one process; ``bench/memory_bench.py``): one fixed-size binary record per reading, and for the
pending ones only, what judging them later needs beyond their values (event id, symptoms,
named session).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

from pydantic import PlainSerializer, PlainValidator

from infusion_monitor.schemas.inbound import READING_LIMITS

VITALS = tuple(READING_LIMITS)  # the order of values in a record
_RECORD = struct.Struct("<qq6d")  # taken at, arrived at (µs since the epoch, UTC), one value per vital (NaN: absent)
_TIMES = struct.Struct("<qq")  # the start of a record
_ABSENT = (math.nan,) * len(VITALS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _from_hex(kind: type) -> Any:
    return lambda value: kind.fromhex(value) if isinstance(value, str) else kind(value)


def _hex(value: bytes | bytearray) -> str:
    return value.hex()


# stored as hex text; a log grows at the end and is cut at the head (a bytearray does both in place)
Blob = Annotated[bytearray, PlainValidator(_from_hex(bytearray)), PlainSerializer(_hex, return_type=str)]
Packed = Annotated[bytes, PlainValidator(_from_hex(bytes)), PlainSerializer(_hex, return_type=str)]
_VALUES = struct.Struct("<6d")


def pack_values(values: dict[str, float]) -> bytes:
    """Vital-sign values as 48 bytes (a fixed baseline is held so: a dict of floats is ~6x larger)."""
    return _VALUES.pack(*map(values.get, VITALS, _ABSENT)) if values else b""


def unpack_values(packed: bytes) -> dict[str, float]:
    """``pack_values`` undone, in name order (as the baseline is reported)."""
    if not packed:
        return {}
    return dict(sorted((name, v) for name, v in zip(VITALS, _VALUES.unpack(packed)) if v == v))


@dataclass(slots=True)
class Pending:
    """What judging a pending reading needs beyond its record (kept until a session claims it)."""

    serial: int  # its record in the log
    event_id: str
    symptoms: tuple[str, ...] = ()
    session_id: str | None = None  # the session it names (not started when it arrived)


def _size(pending: Pending) -> int:
    """What a pending part weighs when stored (JSON, roughly)."""
    return 48 + len(pending.event_id) + len(pending.session_id or "") + sum(len(code) + 4 for code in pending.symptoms)


class Reading(NamedTuple):
    """One reading of the log, decoded."""

    serial: int  # arrival number within the patient (the log's order)
    at: datetime  # when it was taken
    arrived: datetime  # the stream time at which it arrived
    values: dict[str, float]


@dataclass(slots=True)
class ReadingLog:
    """The patient's readings that arrived in the last ``keep_hours`` of stream time (at most
    ``limit`` of them), in arrival order."""

    blob: Blob = field(default_factory=bytearray)  # fixed-size records in arrival order
    first: int = 0  # serial of the first record
    pending: tuple[Pending, ...] = ()  # the readings no session has claimed yet, in arrival order

    @property
    def end(self) -> int:
        """The serial the next reading will get."""
        return self.first + len(self.blob) // _RECORD.size

    def append(self, at: datetime, arrived: datetime, values: dict[str, float], keep_hours: int,
               event_id: str | None = None, symptoms: tuple[str, ...] = (), session_id: str | None = None) -> int:
        """Log a reading (pending when ``event_id`` is given: what judging it later needs) and
        forget those that arrived more than ``keep_hours`` ago; its serial."""
        at_us = _micros(at)
        arrived_us = at_us if arrived is at else _micros(arrived)  # in order, the clock is the reading's own time
        self._forget_before(arrived_us - keep_hours * 3_600_000_000)
        self.blob += _RECORD.pack(at_us, arrived_us, *map(values.get, VITALS, _ABSENT))
        serial = self.first + len(self.blob) // _RECORD.size - 1
        if event_id is not None:
            self.pending = (*self.pending, Pending(serial, event_id, symptoms, session_id))
        return serial

    def trim(self, limit: int, pending_bytes: int | None = None) -> list[tuple[Reading, Pending]]:
        """Forget the oldest readings beyond ``limit`` and, when given (after a pending reading
        was logged), the oldest pending parts beyond ``pending_bytes`` (their text: ids, symptoms,
        sessions); the pending readings that went."""
        evicted = []
        excess = len(self.blob) // _RECORD.size - limit
        if excess > 0:
            last = self.first + excess
            evicted = [(self._decode(p.serial - self.first), p) for p in self.pending if p.serial < last]
            del self.blob[:excess * _RECORD.size]
            self.first = last
            if evicted:
                self.pending = self.pending[len(evicted):]
        if pending_bytes is not None and self.pending and sum(map(_size, self.pending)) > pending_bytes:
            size, keep = 0, len(self.pending)
            while keep and size + _size(self.pending[keep - 1]) <= pending_bytes:
                keep -= 1
                size += _size(self.pending[keep])
            evicted += [(self._decode(p.serial - self.first), p) for p in self.pending[:keep]]
            self.pending = self.pending[keep:]
        return evicted

    def pending_readings(self) -> list[tuple[Reading, Pending]]:
        """The readings no session has claimed yet, in arrival order."""
        return [(self._decode(p.serial - self.first), p) for p in self.pending]

    def pending_reading(self, serial: int) -> tuple[Reading, Pending] | None:
        return next(((self._decode(serial - self.first), p) for p in self.pending if p.serial == serial), None)

    def in_range(self, low: datetime, high: datetime, *, upto: int | None = None,
                 arrived_by: datetime | None = None, before: int = 0) -> list[Reading]:
        """Readings with values taken in [low, high] that came before the reading ``before`` (a
        serial), or after it while the stream time was still ``arrived_by`` at most; and at most
        up to the reading ``upto`` (its serial, itself included)."""
        size, blob = _RECORD.size, self.blob
        count = len(blob) // size if upto is None else min(len(blob) // size, upto - self.first + 1)
        low_us, high_us = _micros(low), _micros(high)
        by_us = _micros(arrived_by) if arrived_by is not None else None
        found = []
        for index in range(count):
            taken, arrived = _TIMES.unpack_from(blob, index * size)
            if by_us is not None and arrived > by_us and self.first + index >= before:
                break  # the log is in arrival order
            if low_us <= taken <= high_us:
                reading = self._decode(index)
                if reading.values:
                    found.append(reading)
        return found

    def claim(self, serial: int) -> None:
        """A session took this pending reading (or it was reported): an ordinary reading from now on."""
        if self.pending:
            self.pending = tuple(p for p in self.pending if p.serial != serial)

    def _decode(self, index: int) -> Reading:
        taken, arrived, *values = _RECORD.unpack_from(self.blob, index * _RECORD.size)
        return Reading(self.first + index, _moment(taken), _moment(arrived),
                       {name: v for name, v in zip(VITALS, values) if v == v})

    def _forget_before(self, limit_us: int) -> None:
        size, blob = _RECORD.size, self.blob
        if not blob or _TIMES.unpack_from(blob)[1] >= limit_us:
            return
        cut = size
        while cut < len(blob) and _TIMES.unpack_from(blob, cut)[1] < limit_us:
            cut += size
        del blob[:cut]  # (a bytearray forgets its head without copying the rest)
        self.first += cut // size
        if self.pending:
            self.pending = tuple(p for p in self.pending if p.serial >= self.first)
