"""Every file in examples/hl7 maps as examples/hl7/README.md says (in order, one state)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.gateway.mapping import pump
from services.gateway.mapping.book import Book
from services.gateway.mapping.router import translate
from services.gateway.sender import split_messages
from tests.gateway.hl7msg import config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hl7"
EXPECTED = {
    "01-adt-a04-registration.hl7": [["patient.profile"]],
    "02-vitals-baseline.hl7": [["vitals.recorded", "vitals.recorded"]],
    "03-pump-start.hl7": [["infusion.started"]],
    "04-pump-rate-change.hl7": [[], []],
    "05-pump-pause.hl7": [[], []],
    "06-vitals-reaction.hl7": [["vitals.recorded"]],
    "07-pump-complete.hl7": [["infusion.ended"]],
    "08-pump-stop.hl7": [["infusion.started"], []],
    "09-lab-cbc-liver.hl7": [["lab.resulted"] * 4],
    "10-lab-correction.hl7": [["lab.resulted"]],
    "11-lab-antibody.hl7": [["lab.resulted"]],
}


def test_examples_map_as_documented():
    cfg = config(site_timezone="Europe/Berlin", local_lab_codes={"ALT": "1742-6"})
    book = Book()
    received = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert sorted(p.name for p in EXAMPLES.glob("*.hl7")) == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        got = []
        for raw in split_messages((EXAMPLES / name).read_bytes()):
            work = book.fork()
            result = translate(raw, cfg, work, received)
            assert result.ack_code == "AA", (name, result.rejection)
            work.commit()
            got.append([e["type"] for e in result.events])
        assert got == expected, name
    work = book.fork()
    ended = pump.advance(work, cfg, datetime(2025, 3, 1, 14, 0, tzinfo=UTC))
    assert [(e["outcome"], e["occurred_at"]) for e in ended] == [("stopped", "2025-03-01T13:40:00Z")]
