"""IHE PCD-10 (``ORU^R42``) pump delivery events -> ``infusion.started`` / ``infusion.ended``.

- the event is the OBX with OBX-3 ``MDC_ATTR_EVT_COND``; OBX-5 START, STOP or COMP;
- only natalizumab (also "Tysabri", any case; from ``MDC_DRUG_NAME_LABEL`` or OBR-4) is a session;
- the session is the order (OBR-2, else OBR-3); ``pump_id`` is the device identifier: OBX-18.3
  when OBX-18.4 is ``EUI-64``, else OBX-18.1 (``pump_bindings`` may name either);
- codes are matched as MDC terms: spaces for underscores, any case, the trial ``MDCX_`` prefix
  (``mapping/vocab.py``), or the numeric codes (START 197288, COMP 197292, EVT_COND 68487);
- first START of an order -> ``infusion.started``; COMP -> ``infusion.ended completed``;
  a STOP not followed by a START of the same order within the grace (default 15 min) ->
  ``infusion.ended stopped`` at the STOP's time; a rate change (STOP ``transitioning`` + START)
  and a pause that resumes within the grace -> nothing.

**The grace timer** (event time, the spec's rule). A pending STOP is decided when

1. the pump's own event clock (the latest event time any message from that pump carried) moves
   past STOP + grace (a later event of this pump, e.g. the next order's START), or
2. the wall clock passes both STOP + grace and the STOP's arrival + grace: a pump that went
   quiet after a STOP has ended; one that flushes a buffer of old events gets the whole grace
   to deliver the START that may follow the STOP in its buffer.

A START that arrives after its order was ended is acknowledged and ignored (``late resume``):
sessions are not reopened (raise the grace if a site pauses longer).
"""

from __future__ import annotations

from bisect import insort
from datetime import datetime
from typing import Any

from ...engine.ids import stable_id
from ..config import GatewayConfig
from ..identity import keyed_token
from .book import Book
from .common import (
    REQUIRED_MISSING, MapError, Parsed, PatientRef, Translation, coded, event_id, iso, normalise_location,
    parse_time, patient_of, value,
)
from .vocab import mdc_term

START, STOP, COMP = "MDC_EVT_PUMP_DELIV_START", "MDC_EVT_PUMP_DELIV_STOP", "MDC_EVT_PUMP_DELIV_COMP"
EVENT_CODES = {START: "start", "197288": "start", STOP: "stop", COMP: "complete", "197292": "complete"}
EVT_COND = "MDC_ATTR_EVT_COND"
EVT_COND_CODE = "68487"
DRUG_LABEL = "MDC_DRUG_NAME_LABEL"
DRUG_WORDS = ("natalizumab", "tysabri")
MAX_STARTS = 32
LOCATION_HISTORY = 8


def is_event_row(parts: tuple[str, ...]) -> bool:
    """OBX-3 names the event condition (``MDC_ATTR_EVT_COND``, however spelled, or 68487)."""
    if EVT_COND in {mdc_term(p) for p in parts if p}:
        return True
    return any(parts[i].strip() == EVT_COND_CODE and mdc_term(parts[i + 2]) in ("", "MDC") for i in (0, 3))


def event_kind(parts: tuple[str, ...]) -> str:
    """``start``, ``stop``, ``complete`` or ``other`` from OBX-5 (text before numeric code)."""
    terms = [mdc_term(p) for p in parts if p]
    return next((EVENT_CODES[t] for t in terms if t in EVENT_CODES and not t.isdigit()),
                next((EVENT_CODES[t] for t in terms if t in EVENT_CODES), "other"))


def device_ids(seg) -> list[str]:
    """A device row's identifiers, the pump id first: OBX-18.3 when OBX-18.4 is EUI-64, else
    OBX-18.1 (spec, "pump identity"); then the other one."""
    first, universal, kind = value(seg, 18, 1), value(seg, 18, 3), value(seg, 18, 4).upper()
    ordered = [universal, first] if kind == "EUI-64" and universal else [first, universal]
    return [i for i in dict.fromkeys(ordered) if i]


def is_natalizumab(text: str) -> bool:
    low = text.lower()
    return any(word in low for word in DRUG_WORDS)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- locations (pumps that send no patient) ----------------------------------------------------

def location_key(config: GatewayConfig, location: str) -> str:
    return "loc." + keyed_token(config.secret, "loc", location)


def learn_location(book: Book, config: GatewayConfig, ref: PatientRef, at: datetime | None) -> None:
    """Remember who was seen at a point of care (from a message that names both)."""
    if ref.key is None or not ref.location or at is None:
        return
    key = location_key(config, ref.location)
    doc = book.get(key) or {"seen": []}
    seen = [s for s in doc["seen"] if not (s["patient"] == ref.key and s["at"] == iso(at))]
    seen.append({"patient": ref.key, "at": iso(at)})
    seen.sort(key=lambda s: _t(s["at"]))
    doc["seen"] = seen[-LOCATION_HISTORY:]
    if doc != book.get(key):
        book.put(key, doc)


def patient_at(book: Book, config: GatewayConfig, location: str, at: datetime) -> str | None:
    """The patient seen last at ``location`` at or before ``at`` (and within the binding time)."""
    if not location:
        return None
    doc = book.get(location_key(config, location))
    if not doc:
        return None
    found = None
    for seen in doc["seen"]:
        moment = _t(seen["at"])
        if moment <= at and at - moment <= config.location_binding:
            found = seen["patient"]
    return found


# -- the pump core -----------------------------------------------------------------------------

def _pump_key(pump_id: str) -> str:
    return "pump." + stable_id("p", pump_id).removeprefix("p-")


def _ended(order: dict[str, Any], outcome: str, at: str, eid: str) -> dict[str, Any]:
    return {"type": "infusion.ended", "event_id": eid, "occurred_at": at, "patient_id": order["patient_id"],
            "session_id": order["session_id"], "outcome": outcome}


def _decide(book: Book, key: str, order: dict[str, Any], events: list[dict[str, Any]]) -> None:
    pending = order.pop("pending")
    order["ended"] = "stopped"
    events.append(_ended(order, "stopped", pending["at"], pending["event_id"]))
    book.put(key, order)


def advance(book: Book, config: GatewayConfig, now: datetime) -> list[dict[str, Any]]:
    """The wall-clock side of the grace timer: decide every pending STOP whose grace is over on
    both the event clock and the arrival clock. Also forgets ended orders and old locations."""
    events: list[dict[str, Any]] = []
    for key in book.keys("order."):
        order = book.get(key)
        assert order is not None
        pending = order.get("pending")
        if pending and now > _t(pending["due_wall"]):
            _decide(book, key, order, events)
        elif order.get("ended") and now - _t(order["last_seen"]) > config.location_binding * 14:
            book.delete(key)
    for key in book.keys("loc."):
        doc = book.get(key)
        assert doc is not None
        if now - _t(doc["seen"][-1]["at"]) > config.location_binding * 2:
            book.delete(key)
    return events


def _pump_clock(book: Book, config: GatewayConfig, pump_id: str, at: datetime,
                events: list[dict[str, Any]]) -> None:
    """Move the pump's event clock; decide its orders' pending STOPs the clock moved past."""
    key = _pump_key(pump_id)
    doc = book.get(key) or {"clock": iso(at), "orders": []}
    clock = max(_t(doc["clock"]), at)
    doc["clock"] = iso(clock)
    keep = []
    for order_key in doc["orders"]:
        order = book.get(order_key)
        if not order or not order.get("pending"):
            continue
        if clock > _t(order["pending"]["at"]) + config.grace:
            _decide(book, order_key, order, events)
        else:
            keep.append(order_key)
    doc["orders"] = keep
    if doc != book.get(key):
        book.put(key, doc)


def _watch(book: Book, pump_id: str | None, order_key: str) -> None:
    if pump_id is None:
        return
    key = _pump_key(pump_id)
    doc = book.get(key)
    if doc is not None and order_key not in doc["orders"]:
        doc["orders"].append(order_key)
        book.put(key, doc)


def map_pump(parsed: Parsed, config: GatewayConfig, book: Book, received_at: datetime, out: Translation) -> None:
    msh_time = parse_time(value(parsed.message.segment("MSH"), 7), parsed.zone, ("MSH", "7"))
    obrs = parsed.segments("OBR")
    obr = obrs[0] if obrs else None
    obr_time = parse_time(value(obr, 7), parsed.zone, ("OBR", "7")) if obr is not None else None
    pump_ids: list[str] = []
    kind = None
    event_seg = None
    drug_label = ""
    position = 0
    for n, seg in enumerate(parsed.segments("OBX"), start=1):
        code_text = "^".join(coded(seg, 3)[:3])
        if not pump_ids and value(seg, 18):
            pump_ids = device_ids(seg)
        if is_event_row(coded(seg, 3)) and event_seg is None:
            event_seg, position = seg, n
            kind = event_kind(coded(seg, 5))
            note = {"other": "event not used", "stop": "event stop: an infusion.ended (stopped) follows unless "
                    "a START of the order comes within the grace"}.get(kind, f"event {kind}")
            out.trace("OBX", n, code_text, "ignored" if kind == "other" else "used", note)
        elif mdc_term(coded(seg, 3)[1]) == DRUG_LABEL or mdc_term(coded(seg, 3)[0]) == DRUG_LABEL:
            drug_label = value(seg, 5, 1) or value(seg, 5, 2)
            out.trace("OBX", n, code_text, "used", "drug label")
        else:
            valued = any(coded(seg, 5))
            out.trace("OBX", n, code_text, "ignored" if valued else "structure",
                      "pump attribute not used" if valued else "")
    pump_id = pump_ids[0] if pump_ids else None
    at = None
    if event_seg is not None:
        at = parse_time(value(event_seg, 14), parsed.zone, ("OBX", "14")) or obr_time or msh_time
    elif obr_time or msh_time:
        at = obr_time or msh_time
    if at is None:
        raise MapError("OBX", "14", "no event time (OBX-14, OBR-7 or MSH-7)", REQUIRED_MISSING)
    ref = patient_of(parsed, config.secret)
    learn_location(book, config, ref, at)
    if pump_id is not None:
        _pump_clock(book, config, pump_id, at, out.events)
    if kind not in ("start", "stop", "complete"):
        out.ignored += 1  # another pump event (alarm, status): acknowledged, counted
        return
    if obr is None or not (value(obr, 2) or value(obr, 3)):
        raise MapError("OBR", "2", "no order number (OBR-2 or OBR-3)", REQUIRED_MISSING)
    order_no = (value(obr, 2, 1), value(obr, 2, 2)) if value(obr, 2) else (value(obr, 3, 1), value(obr, 3, 2))
    order_key = "order." + stable_id("o", *order_no).removeprefix("o-")
    order = book.get(order_key)
    drug_text = drug_label or value(obr, 4, 2) or value(obr, 4, 1)
    if order is None and not is_natalizumab(drug_text):
        out.ignored += 1  # another drug's pump: not a session
        return
    patient = ref.key
    if patient is None and order is not None:
        patient = order["patient_id"]
    if patient is None:
        bound = next((config.pump_bindings[i.upper()] for i in pump_ids if i.upper() in config.pump_bindings), "")
        location = ref.location or normalise_location(bound)
        patient = patient_at(book, config, location, at)
    if patient is None:
        raise MapError("PID", "3", "no patient (PID-3 type MR, a known order or a bound location)", REQUIRED_MISSING)
    if order is None:
        order = {"patient_id": patient, "session_id": stable_id("ses", *order_no), "pump_id": pump_id,
                 "started": False, "ended": None, "starts": [], "pending": None}
    order["last_seen"] = max(order.get("last_seen", iso(at)), iso(at), key=_t)
    stamp = iso(at)
    if order["ended"]:
        out.ignored += 1  # a late resume, a repeated end: the session is over
        return
    if kind == "start":
        if not order["started"]:
            order["started"] = True
            started = {"type": "infusion.started", "event_id": event_id(parsed, position, "start"),
                       "occurred_at": stamp, "patient_id": order["patient_id"],
                       "session_id": order["session_id"], "drug": "natalizumab"}
            if order["pump_id"]:
                started["pump_id"] = order["pump_id"]
            out.events.append(started)
        if stamp not in order["starts"]:
            insort(order["starts"], stamp, key=_t)
            order["starts"] = order["starts"][-MAX_STARTS:]
        pending = order.get("pending")
        if pending and _t(pending["at"]) <= at <= _t(pending["at"]) + config.grace:
            order["pending"] = None  # a rate change or a pause that resumed
    elif kind == "stop":
        if not order["started"]:
            out.ignored += 1  # a STOP before any START of this order: nothing to end
            return
        resumed = any(at <= _t(s) <= at + config.grace for s in order["starts"])
        pending = order.get("pending")
        if not resumed and (pending is None or at < _t(pending["at"])):
            order["pending"] = {
                "at": stamp, "event_id": event_id(parsed, position, "stopped"),
                "due_wall": iso(max(at, received_at) + config.grace),
            }
            _watch(book, order["pump_id"], order_key)
    else:  # complete
        if not order["started"]:
            out.ignored += 1
            return
        order["pending"] = None
        order["ended"] = "completed"
        out.events.append(_ended(order, "completed", stamp, event_id(parsed, position, "completed")))
    book.put(order_key, order)
