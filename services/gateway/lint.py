"""``infusion-monitor hl7 lint FILE...``: what a feed would become, without a server.

Every message goes through exactly the core the gateway runs (``translate``, the identity check
against the messages before it, the pump state across files, in order), and is printed row by
row: each OBX's outcome (the field and value it gives, why it is ignored, or the refusal and its
ERR), the events, the warnings and the ACK the sender would get. A file may hold several
messages; ``.json`` files are FHIR R4 bodies. Names, MRNs and free text are never printed.

Exit code: 0 every message ``AA``; 1 some ``AE``/``AR`` (or a FHIR body refused); 2 a file
could not be read.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from .config import GatewayConfig
from .mapping import pump
from .mapping.ack import build_ack, error_location, msh_fields
from .mapping.book import Book
from .mapping.common import Translation
from .mapping.fhir import FhirError, FhirTranslation, translate_fhir
from .mapping.router import check_identity, translate
from .sender import split_messages

ENVELOPE = ("type", "event_id", "occurred_at", "patient_id")


@dataclass
class FeedReplay:
    """Messages through the core in order, as the gateway would take them: one state (pump
    orders, locations) and one message ledger (identity -> digest) across all of them."""

    config: GatewayConfig
    received_at: datetime
    book: Book = field(default_factory=Book)
    ledger: dict[str, str] = field(default_factory=dict)  # identity -> digest of stored messages

    def hl7(self, raw: bytes) -> Translation:
        work = self.book.fork()
        result = translate(raw, self.config, work, self.received_at)
        result = check_identity(result, self.ledger.get(result.identity), work)
        if result.rejection is None:
            work.commit()
            if result.events and result.identity:
                self.ledger[result.identity] = result.digest
        return result

    def fhir(self, body: bytes) -> FhirTranslation:
        """``FhirError`` when the body is refused."""
        return translate_fhir(body, self.config, self.received_at)


@dataclass
class Linter(FeedReplay):
    out: TextIO = sys.stdout
    counts: dict[str, int] = field(default_factory=lambda: {"AA": 0, "AE": 0, "AR": 0, "fhir_refused": 0})

    def lint_hl7(self, label: str, raw: bytes) -> str:
        result = self.hl7(raw)
        self.counts[result.ack_code] += 1
        self._print_hl7(label, raw, result)
        return result.ack_code

    def _print_hl7(self, label: str, raw: bytes, result: Translation) -> None:
        p = self._p
        who = f" (sender config {result.sender_name!r})" if result.sender_name else ""
        facility = f" / {result.facility}" if result.facility else ""
        p(f"{label}: {result.message_type or '?'} control {result.control_id or '?'} from "
          f"{result.sender or '-'}{facility}{who} -> {result.feed}: {result.ack_code}")
        for row in sorted(result.rows, key=lambda r: (r.segment != "PID", r.index)):
            where = f"{row.segment}[{row.index}]"
            if row.outcome == "rejected":
                match = next((r for r in result.row_errors if r.segment == row.segment
                              and r.segment_index == row.index), None)
                err = f"ERR {error_location(match)}, {match.error_code}" if match else "ERR"
                p(f"  {where:<8} {row.code:<48} REFUSED ({err}): {row.detail}")
            else:
                p(f"  {where:<8} {row.code:<48} {row.outcome}{': ' + row.detail if row.detail else ''}")
        if result.rejection is not None:
            rej = result.rejection
            p(f"  message REJECTED (ERR {error_location(rej)}, {rej.error_code}): {rej.reason}")
        for event in result.events:
            p("  -> " + describe(event))
        if result.ignored:
            p(f"  {result.ignored} row(s) or event(s) not needed (acknowledged, counted)")
        for warning in result.warnings:
            p(f"  warning: {warning}")
        ack = build_ack(result, msh_fields(raw), self.received_at).decode("utf-8", "replace")
        lines = [line for line in ack.split("\r") if line and not line.startswith("MSH")]
        p("  ACK: " + "\n       ".join(lines))

    def lint_fhir(self, label: str, body: bytes) -> bool:
        try:
            result = self.fhir(body)
        except FhirError as exc:
            self.counts["fhir_refused"] += 1
            self._p(f"{label}: FHIR REFUSED {exc.status} at {exc.path or '(body)'}: {exc.reason}")
            return False
        self._p(f"{label}: FHIR {result.resource_type}: 200, {len(result.events)} event(s), "
                f"{result.ignored} resource(s) not needed")
        for event in result.events:
            self._p("  -> " + describe(event))
        for warning in result.warnings:
            self._p(f"  warning: {warning}")
        return True

    def pending(self) -> None:
        """Pump STOPs still waiting for their grace, decided as if the pump then went quiet."""
        work = self.book.fork()
        later = self.received_at + timedelta(days=365)
        for event in pump.advance(work, self.config, later):
            self._p(f"after the grace ({self.config.grace_minutes:g} min) with no START: -> {describe(event)}")

    def _p(self, text: str) -> None:
        print(text, file=self.out)


def describe(event: dict[str, Any]) -> str:
    fields = " ".join(f"{k}={_short(v)}" for k, v in event.items() if k not in ENVELOPE)
    return f"{event['type']} at {event['occurred_at']} patient {event['patient_id']} {fields} (id {event['event_id']})"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def lint_files(files: list[Path], config: GatewayConfig, out: TextIO | None = None, err: TextIO | None = None,
               received_at: datetime | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    linter = Linter(config, received_at or datetime.now(UTC), out=out)
    worst = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read ({exc.strerror})", file=err)
            worst = 2
            continue
        if path.suffix.lower() == ".json" or data.lstrip()[:1] in (b"{", b"["):
            if not linter.lint_fhir(str(path), data):
                worst = max(worst, 1)
            continue
        for n, raw in enumerate(split_messages(data), start=1):
            if linter.lint_hl7(f"{path} #{n}", raw) != "AA":
                worst = max(worst, 1)
    linter.pending()
    c = linter.counts
    print(f"{c['AA']} AA, {c['AE']} AE, {c['AR']} AR" + (f", {c['fhir_refused']} FHIR refused" if c["fhir_refused"]
                                                           else ""), file=out)
    return worst
