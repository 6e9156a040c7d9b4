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


def rejection_from(exc: ValidationError) -> Rejection:
    error = exc.errors(include_url=False, include_input=False)[0]
    kind, loc = error["type"], error["loc"]
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
