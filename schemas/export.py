"""JSON Schema for every event, and the services' AsyncAPI document.

``infusion-monitor schemas export DIR`` writes one ``<type>.json`` per event type. The AsyncAPI
document (``schemas/asyncapi.json``) is generated from ``services/contract_doc.py`` and
committed; a test fails when the committed copy drifts from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from .inbound import INBOUND_MODELS
from .outbound import LIFECYCLE_MODELS, OUTBOUND_MODELS, PAGER_MODELS

ALL_MODELS = (*INBOUND_MODELS, *OUTBOUND_MODELS, *LIFECYCLE_MODELS, *PAGER_MODELS)


def event_type_of(model: type) -> str:
    annotation = model.model_fields["type"].annotation
    (value,) = get_args(annotation)
    return value


def json_schemas() -> dict[str, dict]:
    return {event_type_of(m): m.model_json_schema(mode="validation") for m in ALL_MODELS}


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in json_schemas().items():
        path = directory / f"{event_type}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
