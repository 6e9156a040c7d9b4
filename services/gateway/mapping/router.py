"""One HL7 message in, a ``Translation`` out: which feed it is, its events or its rejection.

Pure: the book (gateway state) is read and changes are recorded on it; the wall-clock time the
message arrived is an argument. Every event is checked with the contract's own parser.
"""

from __future__ import annotations

import json
from datetime import datetime

from infusion_monitor.schemas import Rejection as ContractRejection
from infusion_monitor.schemas import parse_inbound

from ..config import GatewayConfig
from ..transport import Peer, refusal
from .adt import PROFILE_TRIGGERS, map_adt
from .book import Book
from .common import (
    APPLICATION_ERROR, DUPLICATE_KEY, MapError, Parsed, Rejection, Translation, bind, coded, parse, parts_of,
    patient_of, value,
)
from .lab import map_lab
from .pump import is_event_row, learn_location, map_pump
from .vitals import map_vitals
from .vocab import mdc_term


def feed_of(parsed: Parsed) -> str:
    """``vitals``, ``pump``, ``lab``, ``adt`` or ``other`` (acknowledged and counted)."""
    mtype, _, trigger = parsed.message_type.partition("^")
    if mtype == "ADT":
        return "adt" if trigger in PROFILE_TRIGGERS else "other"
    if mtype != "ORU":
        return "other"
    if parsed.profile is not None and parsed.profile.feed is not None:
        return parsed.profile.feed  # the sender's configured feed (proprietary codes, e.g. MDIL)
    obx = parsed.segments("OBX")
    if trigger == "R42" or any(is_event_row(coded(seg, 3)) for seg in obx):
        return "pump"  # IPEC trial implementations sent ORU^R01 / ORU^Rxx with the event rows
    if trigger != "R01":
        return "other"
    profile = " ".join(value(parsed.message.segment("MSH"), 21, c, r) for r in (1, 2, 3) for c in (1, 2)).upper()
    if "IHE_PCD_001" in profile or "IHE PCD-01" in profile:  # namespace text, never the OID
        return "vitals"
    for seg in obx:
        parts = coded(seg, 3)
        if mdc_term(parts[2]) == "MDC" or any(mdc_term(p).startswith("MDC_") for p in parts if p):
            return "vitals"
    return "lab"


def header_guess(raw: bytes) -> tuple[str, str, str]:
    """Sender, control id and type of a message that could not be parsed (for its ``AR``)."""
    first = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r", 1)[0].decode("latin-1")
    if not first.startswith("MSH") or len(first) < 4:
        return "", "", ""
    parts = first.split(first[3])
    get = (lambda i: parts[i - 1] if len(parts) >= i else "")  # noqa: E731 - MSH-1 is the separator
    comp = first[4] if len(first) > 4 else "^"
    return get(3).split(comp)[0], get(10).split(comp)[0], "^".join(get(9).split(comp)[:2])


def translate(raw: bytes, config: GatewayConfig, book: Book, received_at: datetime,
              peer: Peer | None = None) -> Translation:
    """One HL7 message. ``peer``: the connection it came on, checked against its sender's
    allow-lists (``transport.py``); ``None`` (``hl7 lint``): not checked."""
    try:
        parsed = parse(raw)
    except MapError as exc:
        sender, control_id, mtype = header_guess(raw)
        return Translation(control_id, sender, mtype, rejection=exc.rejection, feed="unparsed")
    parsed = bind(parsed, config)
    out = Translation(parsed.control_id, parsed.sender, parsed.message_type, feed=feed_of(parsed),
                      facility=parsed.facility, identity=parsed.identity, digest=parsed.digest,
                      sender_name=parsed.settings.name)
    if peer is not None:
        msh = parsed.message.segment("MSH")
        if reason := refusal(config, config.sender(parts_of(msh, 3), parts_of(msh, 4)), peer):
            out.rejection = Rejection("AR", "MSH", "3", reason, APPLICATION_ERROR)
            return out
    if parsed.zone_mismatch:
        out.warnings.append("zone-mismatch: the MSH-7 offset disagrees with the sender's configured time zone")
    try:
        match out.feed:
            case "vitals":
                map_vitals(parsed, config, out)
            case "pump":
                map_pump(parsed, config, book, received_at, out)
            case "lab":
                map_lab(parsed, config, out)
            case "adt":
                map_adt(parsed, config, out)
            case _:
                out.ignored += 1
        if out.feed in ("vitals", "adt") and out.events:
            ref = patient_of(parsed, config.secret)
            latest = max(datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) for e in out.events)
            learn_location(book, config, ref, latest)
        check_events(out)
    except MapError as exc:
        book.changes.clear()
        out.events, out.rejection, out.row_errors = [], exc.rejection, []
    return out


def check_identity(out: Translation, stored_digest: str | None, book: Book) -> Translation:
    """Spec, "Identity for idempotency": a message whose identity (MSH-3, MSH-4, MSH-10) was
    stored before with other content is not a retransmission. It gets ``AE`` and nothing of it
    is stored (the shell dead-letters it with both digests); never ``AA`` for nothing stored."""
    if stored_digest is None or not out.identity or stored_digest == out.digest:
        return out
    book.changes.clear()
    out.events, out.row_errors = [], []
    out.rejection = Rejection(
        "AE", "MSH", "10", "conflicting control id: this sender already used it for a different message",
        DUPLICATE_KEY)
    return out


def check_events(out: Translation) -> None:
    """Every event must pass the contract's parser; a failure is the gateway's mapping error."""
    for event in out.events:
        result = parse_inbound(json.dumps(event))
        if isinstance(result, ContractRejection):
            raise MapError("", result.field, f"event does not meet the contract: {result}", APPLICATION_ERROR)


__all__ = ["Rejection", "Translation", "check_identity", "feed_of", "translate"]
