"""Storing and loading a core's state slice (slotted dataclasses) through pydantic."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter


@cache
def _adapter(model: type) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def load_state(model: type, data: dict[str, Any]) -> Any:
    return _adapter(model).validate_python(data)


def dump_state(model: type, state: Any) -> dict[str, Any]:
    return _adapter(model).dump_python(state, mode="json")


def dump_state_json(model: type, state: Any) -> bytes:
    """The state as JSON bytes, serialised in pydantic-core (fast; no Python-level walk)."""
    return _adapter(model).dump_json(state)
