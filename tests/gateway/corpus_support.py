"""The conformance corpus (``tests/gateway/corpus/``): its files, its site configuration, the
expectations written beside each file, and the identifying strings each message carries.

Each message file (``hl7/*.hl7``: one or more messages; ``fhir/*.json``: one FHIR body) has a
``NAME.expect.toml`` beside it: the public source it follows (an entry of ``SOURCES.md``), the
convention, and per message the ACK, the ERR-2 locations of refused rows, the warnings and the
events (every field but the derived ids; ``patient`` is ``AUTHORITY|NUMBER``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infusion_monitor.gateway.config import SECRET_ENV, GatewayConfig
from infusion_monitor.gateway.identity import patient_key
from infusion_monitor.gateway.sender import split_messages
from tests.gateway.hl7msg import SECRET

CORPUS = Path(__file__).resolve().parent / "corpus"
CONFIG = CORPUS / "gateway.toml"
#: the wall-clock time every corpus message arrives (after the last event time of the corpus day)
RECEIVED_AT = datetime(2025, 3, 10, 18, 0, tzinfo=UTC)
#: fields derived from ids (checked for presence, not value)
DERIVED = ("event_id", "session_id", "result_key", "corrects")


def config(**overrides: Any) -> GatewayConfig:
    return GatewayConfig.load({"INFUSION_MONITOR_CONFIG": str(CONFIG), SECRET_ENV: SECRET}, **overrides)


def files() -> list[Path]:
    """Every message file, in the order the corpus runs (HL7 by name, then FHIR by name)."""
    return sorted((CORPUS / "hl7").glob("*.hl7")) + sorted((CORPUS / "fhir").glob("*.json"))


def messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data] if path.suffix == ".json" else split_messages(data)


@dataclass(frozen=True)
class Expectation:
    source: str
    convention: str
    messages: list[dict[str, Any]]


def expectation(path: Path) -> Expectation:
    sidecar = path.with_suffix(".expect.toml")
    data = tomllib.loads(sidecar.read_text())
    return Expectation(data["source"], data["convention"], data["message"])


def key_of(symbol: str) -> str:
    """``HOSP|MRN10001`` -> the pseudonymous key the corpus secret gives that patient."""
    authority, _, number = symbol.partition("|")
    return patient_key(SECRET.encode(), authority, number)


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """An event as the expectations state it: ids left out, the patient as its key."""
    return {k: v for k, v in event.items() if k not in DERIVED}


def expected_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    for spec in message.get("event", []):
        spec = dict(spec)
        spec["patient_id"] = key_of(spec.pop("patient"))
        events.append(spec)
    return events


# -- identity in the corpus (for the privacy test) ----------------------------------------------

_HL7_FREE_TEXT_TYPES = {"ST", "TX", "FT"}


def identifying_strings(path: Path) -> set[str]:
    """Names, record numbers, addresses, phone numbers and free text the corpus file carries:
    none may appear in an event, the gateway's state or a log."""
    found: set[str] = set()
    if path.suffix == ".json":
        _walk_fhir(__import__("json").loads(path.read_bytes()), found)
    else:
        for raw in messages(path):
            text = raw.decode("utf-8", "replace") if b"8859/1" not in raw else raw.decode("latin-1")
            for segment in re.split(r"\r|\n", text):
                fields = segment.split("|")
                if fields[0] == "PID":
                    for rep in _at(fields, 3).split("~"):
                        found.add(rep.split("^")[0])
                    found.update(p for p in re.split(r"[\^&]", _at(fields, 5)) if len(p) > 1)
                    found.add(_at(fields, 11).split("^")[0])  # the street
                elif fields[0] in ("ORC", "OBR"):  # ordering provider's name
                    found.update(p for p in _at(fields, 12 if fields[0] == "ORC" else 16).split("^")[1:3] if len(p) > 3)
                elif fields[0] == "NTE":
                    found.add(_at(fields, 3))
                elif fields[0] == "OBX" and _at(fields, 2) in _HL7_FREE_TEXT_TYPES \
                        and not re.fullmatch(r"[\d.]+", _at(fields, 5)):
                    found.add(_at(fields, 5))
    return {s.strip() for s in found if len(s.strip()) > 3 and s.strip().upper() not in ("UNKNOWN", "NATALIZUMAB")}


def _at(fields: list[str], n: int) -> str:
    return fields[n] if len(fields) > n else ""


def _walk_fhir(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "name" and isinstance(value, list):
                for name in value:
                    found.update([name.get("family", ""), *name.get("given", [])])
            elif key in ("identifier",) and isinstance(value, list):
                found.update(i.get("value", "") for i in value if isinstance(i, dict))
            elif key == "identifier" and isinstance(value, dict):
                found.add(value.get("value", ""))
            elif key in ("telecom", "address") and isinstance(value, list):
                for item in value:
                    found.update([item.get("value", ""), *item.get("line", [])])
            elif key == "note" and isinstance(value, list):
                found.update(n.get("text", "") for n in value)
            else:
                _walk_fhir(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk_fhir(item, found)
