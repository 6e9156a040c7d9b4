"""Bytes in, a validated inbound event or a rejection that names the field out."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from .inbound import InboundEvent

_INBOUND = TypeAdapter(InboundEvent)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was rejected: the field (dotted path, ``""`` for the whole message) and reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


def parse_inbound(raw: bytes | str) -> InboundEvent | Rejection:
    """Validate one JSON event. Never raises for bad input."""
    try:
        return _INBOUND.validate_json(raw)
    except ValidationError as exc:
        return rejection_from(exc)
    except (ValueError, RecursionError) as exc:  # pragma: no cover - defensive
        return Rejection("", f"unreadable: {exc}")


def _common_prefix(locs: list[tuple]) -> tuple:
    prefix = locs[0]
    for loc in locs[1:]:
        n = 0
        while n < min(len(prefix), len(loc)) and prefix[n] == loc[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def rejection_from(exc: ValidationError) -> Rejection:
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
    path = [str(part) for part in loc[1:]]  # loc[0] is the event type (the union tag)
    field = ".".join(path)
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    return Rejection(field, message)
