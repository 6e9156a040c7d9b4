"""Shared pieces of the HL7 mapping: parsing with ``hl7``, field access, time, identity, results."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Literal

import hl7

from infusion_monitor.schemas.base import format_time

from ...engine.ids import stable_id
from ..config import GatewayConfig, SenderProfile
from ..identity import patient_key

# HL7 error codes (table 0357) used in ERR-3
REQUIRED_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE = "200"
DUPLICATE_KEY = "205"
APPLICATION_ERROR = "207"
_ERROR_TEXT = {
    REQUIRED_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE: "Unsupported message type",
    DUPLICATE_KEY: "Duplicate key identifier",
    APPLICATION_ERROR: "Application internal error",
}

# MSH-18 character sets -> Python codecs (HL7 table 0211)
_CHARSETS = {
    "": "utf-8", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UNICODE": "utf-8", "ASCII": "ascii",
    "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/15": "iso8859-15", "WINDOWS-1252": "cp1252",
}
_MSH18 = re.compile(rb"^MSH(.)", re.DOTALL)
_DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")


class MapError(Exception):
    """A well-formed message the gateway cannot map (``AE``) or cannot parse (``AR``)."""

    def __init__(self, segment: str, field_: str, reason: str, error_code: str = APPLICATION_ERROR,
                 ack: Literal["AE", "AR"] = "AE", segment_index: int = 1) -> None:
        super().__init__(reason)
        self.rejection = Rejection(ack, segment, field_, reason, error_code, segment_index)


@dataclass(frozen=True)
class Rejection:
    ack: Literal["AE", "AR"]
    segment: str  # e.g. "PID" (empty when unknown)
    field: str  # e.g. "3" or "3.1" (HL7 position) or a FHIR element path
    reason: str  # never contains message content
    error_code: str = APPLICATION_ERROR
    segment_index: int = 1  # the segment's sequence among those with its id

    @property
    def error_text(self) -> str:
        return _ERROR_TEXT.get(self.error_code, "Application error")

    def where(self) -> str:
        if not (self.segment and self.field):
            return self.segment or self.field
        index = f"[{self.segment_index}]" if self.segment_index != 1 else ""
        return f"{self.segment}{index}-{self.field}"

    def at(self, index: int) -> Rejection:
        """The same rejection naming the ``index``-th segment of its kind (ERR-2.2)."""
        return replace(self, segment_index=index)


@dataclass(frozen=True)
class RowTrace:
    """What became of one segment (for ``hl7 lint``): ``used`` (``detail`` = field and value),
    ``ignored`` (why), ``rejected`` (the reason; the ERR names it) or ``structure`` (a device or
    channel row, no value)."""

    segment: str
    index: int  # among the segments with this id (ERR-2.2)
    code: str  # OBX-3 as sent (identifier^text^system), never a value
    outcome: Literal["used", "ignored", "rejected", "structure"]
    detail: str = ""


@dataclass
class Translation:
    """What one message becomes: events to store, or a rejection, plus what was not needed.

    ``rejection``: the whole message is refused (``AE``/``AR``), nothing is stored.
    ``row_errors``: single rows refused while the message's other rows are stored (``AE``)."""

    control_id: str
    sender: str
    message_type: str
    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0  # observations or events the product does not need (counted, not stored)
    rejection: Rejection | None = None
    feed: str = ""
    row_errors: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # logged and counted by the shell
    rows: list[RowTrace] = field(default_factory=list)
    facility: str = ""  # MSH-4 as sent
    identity: str = ""  # hash of MSH-3, MSH-4, MSH-10: the idempotency key ("" when unparsed)
    digest: str = ""  # hash of the segments after MSH
    sender_name: str = ""  # the matching per-sender configuration entry

    @property
    def ack_code(self) -> str:
        if self.rejection:
            return self.rejection.ack
        return "AE" if self.row_errors else "AA"

    @property
    def errors(self) -> list[Rejection]:
        return [self.rejection] if self.rejection else list(self.row_errors)

    def reject_row(self, rejection: Rejection, code: str = "") -> None:
        self.row_errors.append(rejection)
        self.rows.append(RowTrace(rejection.segment, rejection.segment_index, code, "rejected", rejection.reason))

    def trace(self, segment: str, index: int, code: str, outcome: Literal["used", "ignored", "structure"],
              detail: str = "") -> None:
        self.rows.append(RowTrace(segment, index, code, outcome, detail))


@dataclass(frozen=True)
class Parsed:
    """A parsed HL7 message and its header facts.

    Identity (spec, "Identity for idempotency"): the whole sending application (MSH-3, every
    component: vendors put the model in the first and the device's EUI-64 in the second), the
    sending facility (MSH-4) and the control id (MSH-10). ``digest`` covers the segments after
    MSH, so a retransmission (same content, MSH-7 possibly rebuilt) is told from a new message
    that reuses a restarting counter."""

    message: hl7.Message
    text: str
    sender: str  # MSH-3 as sent (all components)
    facility: str  # MSH-4 as sent
    control_id: str  # MSH-10
    message_type: str  # MSH-9.1 ^ MSH-9.2, e.g. "ORU^R01"
    version: str
    digest: str  # SHA-256 (hex) of the segments after MSH
    profile: SenderProfile | None = None  # set by ``bind``
    zone: tzinfo = timezone.utc  # the sender's zone for times without an offset (``bind``)
    zone_mismatch: bool = False  # MSH-7's offset disagrees with the sender's configured zone

    @property
    def identity(self) -> str:
        return stable_id("msgid", self.sender, self.facility, self.control_id).removeprefix("msgid-")

    @property
    def settings(self) -> SenderProfile:
        assert self.profile is not None, "bind() the message to a configuration first"
        return self.profile

    def segments(self, name: str) -> list[hl7.Segment]:
        return [seg for seg in self.message if str(seg[0]) == name]


def decode(raw: bytes) -> str:
    """Bytes to text, with the character set from MSH-18 (UTF-8 by default)."""
    data = raw.removeprefix(b"\xef\xbb\xbf")
    charset = ""
    match = _MSH18.match(data)
    if match:
        sep = match.group(1)
        first = re.split(rb"\r\n|\r|\n", data, maxsplit=1)[0]
        parts = first.split(sep)
        if len(parts) > 17:
            charset = parts[17].split(b"~")[0].decode("ascii", "replace").strip().upper()
    codec = _CHARSETS.get(charset)
    if codec is None:
        raise MapError("MSH", "18", f"unsupported character set {charset!r}", TABLE_VALUE_NOT_FOUND, "AR")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise MapError("MSH", "18", f"bytes are not valid {codec}", DATA_TYPE_ERROR, "AR") from exc


def normalise(text: str) -> str:
    """Segments end with ``\\r``; real senders also use ``\\n`` or ``\\r\\n``. Blank lines go."""
    lines = re.split(r"\r\n|\r|\n", text)
    return "\r".join(line for line in lines if line.strip())


def parse(raw: bytes) -> Parsed:
    """Raw bytes (MLLP framing already removed) to a parsed message, or ``MapError`` (``AR``)."""
    text = normalise(decode(raw))
    if not text.startswith("MSH") or len(text) < 8:
        raise MapError("MSH", "", "not an HL7 v2 message (no MSH segment first)", REQUIRED_MISSING, "AR")
    try:
        message = hl7.parse(text)
    except Exception as exc:  # the library raises several types for malformed input
        raise MapError("MSH", "", f"cannot be parsed ({type(exc).__name__})", DATA_TYPE_ERROR, "AR") from exc
    msh = message.segment("MSH")
    control_id = value(msh, 10)
    if not control_id:
        raise MapError("MSH", "10", "message control id missing", REQUIRED_MISSING, "AR")
    mtype = value(msh, 9, 1).upper()
    trigger = value(msh, 9, 2).upper()
    if not mtype:
        raise MapError("MSH", "9", "message type missing", REQUIRED_MISSING, "AR")
    sender = whole(msh, 3)
    if not sender.strip("^& ") and not whole(msh, 4).strip("^& "):  # some monitors name themselves in MSH-4 only
        raise MapError("MSH", "3", "sending application and facility missing", REQUIRED_MISSING, "AR")
    body = "\r".join(text.split("\r")[1:])
    digest = hashlib.sha256(body.encode()).hexdigest()
    return Parsed(message, text, sender, whole(msh, 4), control_id, f"{mtype}^{trigger}", value(msh, 12, 1), digest)


def whole(seg: hl7.Segment, field_num: int) -> str:
    """A field as sent (all components, first repetition), stripped."""
    try:
        return str(seg(field_num)).split("~")[0].strip() if field_num < len(seg) else ""
    except (IndexError, AttributeError, TypeError):
        return ""


def parts_of(seg: hl7.Segment, field_num: int) -> tuple[str, ...]:
    """The whole field and each of its (sub)components: what a per-sender entry may name."""
    text = whole(seg, field_num)
    return (text, *re.split(r"[\^&]", text))


def bind(parsed: Parsed, config: GatewayConfig) -> Parsed:
    """The message with its sender's settings and the zone of its times without an offset
    (spec, "Time"): MSH-7's own offset, else the sender's configured zone, else the site's."""
    msh = parsed.message.segment("MSH")
    profile = config.profile(parts_of(msh, 3), parts_of(msh, 4))
    stamp = value(msh, 7)
    offset = _offset(stamp)
    zone, mismatch = profile.tz, False
    if offset is not None:
        zone = timezone(offset)
        if profile.zone_configured:
            try:
                local = parse_time(stamp, timezone.utc, ("MSH", "7"))
            except MapError:
                local = None
            if local is not None:
                mismatch = local.replace(tzinfo=profile.tz).utcoffset() != offset
    return replace(parsed, profile=profile, zone=zone, zone_mismatch=mismatch)


def value(seg: hl7.Segment, field_num: int, component: int = 1, repetition: int = 1, sub: int = 1) -> str:
    """One leaf of a segment (1-based HL7 positions), unescaped and stripped; ``""`` if absent."""
    try:
        result = seg.extract_field(None, field_num, repetition, component, sub)
    except (IndexError, AttributeError, TypeError):
        return ""
    return str(result).strip()


def repetitions(seg: hl7.Segment, field_num: int) -> int:
    if field_num >= len(seg):
        return 0
    item = seg(field_num)
    if isinstance(item, hl7.Field) and item and isinstance(item[0], hl7.Repetition):
        return len(item)
    return 1 if str(item) else 0


def coded(seg: hl7.Segment, field_num: int) -> tuple[str, ...]:
    """The six components of a CE/CWE field (identifier, text, system, alt id, alt text, alt system)."""
    return tuple(value(seg, field_num, c) for c in range(1, 7))


# -- time ---------------------------------------------------------------------------------------

def parse_time(text: str, tz: tzinfo, where: tuple[str, str]) -> datetime | None:
    """An HL7 DTM (``YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]``) as an aware datetime. Without an
    offset it is in the site's time zone. ``None`` when empty; ``MapError`` when malformed."""
    text = text.strip()
    if not text:
        return None
    if not _DTM.match(text):
        raise MapError(where[0], where[1], "malformed timestamp", DATA_TYPE_ERROR)
    try:
        moment = hl7.parse_datetime(text)
    except (ValueError, TypeError, OverflowError) as exc:
        raise MapError(where[0], where[1], "malformed timestamp", DATA_TYPE_ERROR) from exc
    if moment is None:
        return None
    offset = _offset(text)
    if offset is not None:  # the library's own offset is wrong for -00MM; read it here
        return moment.replace(tzinfo=timezone(offset))
    return moment.replace(tzinfo=tz)


def _offset(text: str) -> timedelta | None:
    sign = re.search(r"\d([+-])(\d{2})(\d{2})$", text.strip())
    if not sign:
        return None
    minutes = int(sign.group(2)) * 60 + int(sign.group(3))
    return timedelta(minutes=minutes if sign.group(1) == "+" else -minutes)


def iso(moment: datetime) -> str:
    return format_time(moment)


# -- identity -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatientRef:
    key: str | None  # the pseudonymous key, None when the message names no patient
    location: str  # PV1-3 point of care, normalised ("" when absent)


_UNKNOWN = {"", "UNKNOWN", "UNK", "NULL", "\"\"", "0", "NONE"}


def patient_of(parsed: Parsed, secret: bytes) -> PatientRef:
    """The key from PID-3: assigning authority + the number of the first identifier type the
    site (or the sender) accepts for that authority (``MR`` unless configured), and PV1-3."""
    settings = parsed.settings
    candidates: list[tuple[int, int, str, str]] = []  # (preference of the type, repetition, authority, number)
    pids = parsed.segments("PID")
    if pids:
        pid = pids[0]
        for rep in range(1, repetitions(pid, 3) + 1):
            number_ = value(pid, 3, 1, rep)
            kind = value(pid, 3, 5, rep).upper()
            authority = value(pid, 3, 4, rep) or value(pid, 3, 4, rep, 2) or settings.assigning_authority
            accepted = settings.accepted_types(authority)
            if number_.upper() not in _UNKNOWN and kind in accepted:
                candidates.append((accepted.index(kind), rep, authority, number_))
    key = None
    if candidates:
        _, _, authority, number_ = min(candidates)
        key = patient_key(secret, authority, number_)
    return PatientRef(key, location_of(parsed))


def location_of(parsed: Parsed) -> str:
    pv1 = parsed.segments("PV1")
    if not pv1:
        return ""
    parts = [value(pv1[0], 3, c).upper() for c in range(1, 5)]
    return normalise_location(parts)


def normalise_location(parts: list[str] | str) -> str:
    if isinstance(parts, str):
        parts = parts.upper().split("^")[:4]
    parts = [p.strip() for p in parts] + [""] * (4 - len(parts))
    return "^".join(parts[:4]).rstrip("^")


def require_patient(ref: PatientRef) -> str:
    if ref.key is None:
        raise MapError("PID", "3", "no patient identifier of an accepted type (MR unless configured)",
                       REQUIRED_MISSING)
    return ref.key


def event_id(parsed: Parsed, position: object, kind: str = "") -> str:
    """Deterministic: the message identity (MSH-3, MSH-4, MSH-10) + position (spec,
    "Identity for idempotency"), and the content digest: a retransmission or a replay gives the
    same ids, while a message that reuses a control id long after it was forgotten can never
    collide with the first one's events downstream."""
    return stable_id("gw", parsed.sender, parsed.facility, parsed.control_id, parsed.digest[:16], position, kind)


def number(text: str, where: tuple[str, str]) -> float:
    try:
        result = float(text.strip())
    except ValueError as exc:
        raise MapError(where[0], where[1], "not a number", DATA_TYPE_ERROR) from exc
    if result != result or result in (float("inf"), float("-inf")):
        raise MapError(where[0], where[1], "not a finite number", DATA_TYPE_ERROR)
    return result


def code_parts(parts: tuple[str, ...]) -> set[str]:
    """Every non-empty identifier and text of a coded field, upper case (for matching)."""
    return {p.upper() for i, p in enumerate(parts) if p and i in (0, 1, 3, 4)}
