"""Moving HL7 v2 messages in time (``hl7 send --now``): every time the gateway reads moves by
the same amount, so that the first message lands now and the rest keep their spacing; and the
moved set gets fresh identities, so that it can be sent again later as a new story.

Pure: bytes in, bytes out, no clock. The fields moved are every HL7 time the gateway reads
(MSH-7; EVN-2 and EVN-6; OBR-7 and OBR-22; OBX-14; SPM-17) and their siblings a feed may
carry (OBR-8 end, OBX-19 analysis, SPM-18 received, ORC-9 transaction, TQ1-7/8 start and
end); a test maps the whole corpus before and after a shift and finds every event time moved.
Other times are left alone: a birth date (PID-7) is not an event time.

A time keeps its precision and offset; one with an offset is moved as the instant it names. A
time without an offset is read as the gateway reads it: in MSH-7's offset when MSH-7 has one,
else in ``zone`` (the site's time zone), and written back in that zone. When the move has
seconds and a time is to the minute, the seconds are added (HL7 allows any precision). A
date-only value moves by whole days; year or month alone is left as it is.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

ID_FIELDS: dict[str, tuple[int, ...]] = {"MSH": (10,), "ORC": (2, 3), "OBR": (2, 3)}
MAX_CONTROL_ID = 20  # MSH-10 is ST(20) in HL7 v2.5
TIME_FIELDS: dict[str, tuple[int, ...]] = {
    "MSH": (7,), "EVN": (2, 6), "OBR": (7, 8, 22), "OBX": (14, 19), "SPM": (17, 18), "ORC": (9,), "TQ1": (7, 8),
}
_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{2})?(\d{2})?$")
_SEGMENTS = re.compile(r"\r\n|\r|\n")


def _offset(match: re.Match[str]) -> timezone | None:
    if match.group(8) is None:
        return None
    sign = -1 if match.group(8)[0] == "-" else 1
    minutes = int(match.group(8)[1:]) * 60 + int(match.group(9) or "0")
    return timezone(sign * timedelta(minutes=minutes))


def parse_dtm(text: str, zone: tzinfo) -> datetime | None:
    """An HL7 DTM to the minute or finer as an aware datetime (``zone`` when it has no offset)."""
    m = _DTM.match(text.strip())
    if not m or m.group(5) is None:
        return None
    fraction = m.group(7) or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    local = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                     int(m.group(6) or "0"), micro)
    return local.replace(tzinfo=_offset(m) or zone)


def shift_dtm(text: str, delta: timedelta, zone: tzinfo) -> str:
    """``text`` moved by ``delta`` (unchanged when it is not a DTM of a day or finer)."""
    m = _DTM.match(text.strip())
    if not m:
        return text
    if m.group(4) is None:  # a date, a month or a year
        if m.group(3) is None or m.group(8) is not None:
            return text
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return (datetime.combine(day, time()) + delta).strftime("%Y%m%d")
    moment = parse_dtm(text, zone)
    if moment is None:  # to the hour only
        moment = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)),
                          tzinfo=_offset(m) or zone)
    own_zone = moment.tzinfo
    moved = (moment.astimezone(UTC) + delta).astimezone(own_zone)
    digits = "%Y%m%d%H"
    if m.group(5) is not None or moved.minute:
        digits += "%M"
    if m.group(6) is not None or moved.second or m.group(7):
        digits += "%S"
    out = moved.strftime(digits)
    if m.group(7):
        places = len(m.group(7)) - 1
        out += "." + f"{moved.microsecond:06d}"[:places]
    elif moved.microsecond:
        out += f".{moved.microsecond // 100:04d}"
    if m.group(8) is not None:
        out += m.group(8) + (m.group(9) or "")
    return out


class _Message:
    """A message's segments split into fields with its own separators (MSH-1, MSH-2)."""

    def __init__(self, message: bytes) -> None:
        self.text = message.decode("latin-1")  # byte for byte: only ASCII digits are rewritten
        self.segments = [s for s in _SEGMENTS.split(self.text) if s]
        head = self.segments[0] if self.segments else ""
        self.fs = head[3] if head.startswith("MSH") and len(head) > 3 else "|"
        encoding = head.split(self.fs)[1][:4] if head.startswith("MSH") and head.count(self.fs) > 1 else ""
        encoding += "^~\\&"[len(encoding):]  # MSH-2 as sent, completed with the defaults
        self.cs, self.rs, self.ss = encoding[0], encoding[1], encoding[3]
        self.ending = "\r\n" if "\r\n" in self.text else ("\n" if "\r" not in self.text else "\r")

    def fields(self, segment: str) -> list[str]:
        return segment.split(self.fs)

    @staticmethod
    def index(name: str, number: int) -> int:
        """Position of field ``number`` in ``segment.split(fs)`` (MSH counts its separator)."""
        return number - 1 if name == "MSH" else number

    def msh7(self) -> str:
        fields = self.fields(self.segments[0]) if self.segments and self.segments[0].startswith("MSH") else []
        return fields[6].split(self.cs)[0] if len(fields) > 6 else ""


def message_time(message: bytes, zone: tzinfo = UTC) -> datetime | None:
    """MSH-7 as an instant (``zone`` when it has no offset), ``None`` when absent or not a time."""
    return parse_dtm(_Message(message).msh7(), zone)


def tagged(identifier: str, tag: str, limit: int | None = None) -> str:
    """``identifier`` with ``.tag`` appended (its head cut to stay within ``limit``)."""
    if not identifier or not tag:
        return identifier
    suffix = f".{tag}"
    return (identifier[:limit - len(suffix)] if limit else identifier) + suffix


def shift_message(message: bytes, delta: timedelta, zone: tzinfo = UTC, tag: str = "") -> bytes:
    """The message with every time of ``TIME_FIELDS`` moved by ``delta`` and, with a ``tag``,
    its control id and order numbers tagged (``ID_FIELDS``); everything else as it was."""
    parsed = _Message(message)
    msh7 = _DTM.match(parsed.msh7().strip())
    naive_zone = _offset(msh7) if msh7 and msh7.group(8) else zone  # as the gateway reads the message

    def moved(field: str) -> str:
        return parsed.rs.join(
            parsed.cs.join(parsed.ss.join(shift_dtm(leaf, delta, naive_zone) for leaf in component.split(parsed.ss))
                           for component in repetition.split(parsed.cs))
            for repetition in field.split(parsed.rs))

    def renamed(name: str, field: str) -> str:
        if name == "MSH":
            return tagged(field, tag, MAX_CONTROL_ID)
        head, sep, rest = field.partition(parsed.cs)
        return tagged(head, tag) + sep + rest

    out = []
    for segment in parsed.segments:
        name = segment[:3]
        fields = parsed.fields(segment)
        for numbers, rewrite in ((TIME_FIELDS.get(name, ()), moved),
                                 (ID_FIELDS.get(name, ()) if tag else (), lambda f, n=name: renamed(n, f))):
            for number in numbers:
                i = parsed.index(name, number)
                if i < len(fields) and fields[i]:
                    fields[i] = rewrite(fields[i])
        out.append(parsed.fs.join(fields))
    text = parsed.ending.join(out) + (parsed.ending if parsed.text.endswith(("\r", "\n")) else "")
    return text.encode("latin-1")


def shift_tag(start: datetime) -> str:
    """The identity tag of a set moved to ``start``: its UTC second in base 36 (``now`` and a
    second later give different tags; the same second, the same one)."""
    number, digits = int(start.timestamp()), ""
    while number:
        number, rest = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
    return digits[-5:] or "0"


def shift_to(messages: list[bytes], start: datetime, zone: tzinfo = UTC) -> tuple[list[bytes], timedelta]:
    """Every message moved so that the first one's MSH-7 is ``start`` (to the second), with fresh
    identities (``shift_tag``); the move."""
    if not messages:
        return [], timedelta(0)
    first = message_time(messages[0], zone)
    if first is None:
        raise ValueError("the first message has no MSH-7 time to move to now")
    delta = timedelta(seconds=round((start - first).total_seconds()))
    tag = shift_tag(first + delta)
    return [shift_message(m, delta, zone, tag) for m in messages], delta
