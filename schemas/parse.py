"""Bytes in, a validated inbound event or a rejection that names the field out."""

from __future__ import annotations

from dataclasses import dataclass

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .inbound import READING_LIMITS, InboundEvent, VitalsRecorded, drop_invalid_readings

_INBOUND = TypeAdapter(InboundEvent)
_VITALS = "vitals.recorded"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was rejected: the field (dotted path, ``""`` for the whole message) and reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


def parse_inbound(raw: bytes | str) -> InboundEvent | Rejection:
    """Validate one JSON event. Never raises for bad input.

    The fast path validates the JSON in pydantic-core. A ``vitals.recorded`` whose only problems
    are readings or symptom entries takes the lenient path: those are dropped (and listed in
    ``dropped``) and the rest of the event is validated and kept."""
    try:
        event = _INBOUND.validate_json(raw)
    except ValidationError as exc:
        if _only_reading_problems(exc):
            return _parse_lenient(raw)
        return rejection_from(exc)
    except (ValueError, RecursionError) as exc:  # pragma: no cover - defensive
        return Rejection("", f"unreadable: {exc}")
    if event.type == _VITALS and (problem := event.problem()):
        return Rejection("", problem)
    return event


def _only_reading_problems(exc: ValidationError) -> bool:
    errors = exc.errors(include_url=False, include_input=False)
    return all(
        len(e["loc"]) >= 2 and e["loc"][0] == _VITALS and (e["loc"][1] in READING_LIMITS or e["loc"][1] == "symptoms")
        for e in errors
    )


def _parse_lenient(raw: bytes | str) -> VitalsRecorded | Rejection:
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):  # pragma: no cover - the fast path parsed it already
        return Rejection("", "invalid JSON")
    try:  # back to JSON, so the same strict JSON-mode validation applies to the rest
        event = VitalsRecorded.model_validate_json(json.dumps(drop_invalid_readings(data)))
    except ValidationError as exc:
        return rejection_from(exc, tagged=False)
    problem = event.problem()
    return Rejection("", problem) if problem else event


def _common_prefix(locs: list[tuple]) -> tuple:
    prefix = locs[0]
    for loc in locs[1:]:
        n = 0
        while n < min(len(prefix), len(loc)) and prefix[n] == loc[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def rejection_from(exc: ValidationError, tagged: bool = True) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    error = errors[0]
    kind, loc = error["type"], error["loc"]
    if len(errors) > 1 and len({e["loc"][:2] for e in errors}) == 1:
        # one field failing every member of a union (e.g. a number or "positive"/"negative")
        loc = _common_prefix([e["loc"] for e in errors])
        error = {**error, "msg": " or ".join(dict.fromkeys(e["msg"] for e in errors))}
    if kind == "json_invalid":
        return Rejection("", f"invalid JSON: {error['msg'].removeprefix('Invalid JSON: ')}")
    if kind == "model_attributes_type" or kind == "model_type":
        return Rejection("", "not a JSON object")
    if kind in ("union_tag_not_found",):
        return Rejection("type", "missing")
    if kind == "union_tag_invalid":
        return Rejection("type", "unknown event type")
    path = [str(part) for part in (loc[1:] if tagged else loc)]  # loc[0]: the union tag
    field = ".".join(path)
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    return Rejection(field, message)
