"""The conformance corpus on the pure core (issue 15): every message written in the shape of a
public source (``corpus/SOURCES.md``) maps to exactly the ACK, refused rows, warnings and events
written beside it. The corpus runs in order through one state and one message ledger, as the
gateway would take it; ``hl7 lint`` over the corpus prints the same verdicts and no identity."""

from __future__ import annotations

import io
import re
from functools import cache
from pathlib import Path

import pytest

from infusion_monitor.gateway.lint import FeedReplay, lint_files
from infusion_monitor.gateway.mapping.ack import build_ack, error_location, msh_fields
from infusion_monitor.gateway.mapping.common import Translation
from infusion_monitor.gateway.mapping.fhir import FhirError, FhirTranslation
from tests.gateway import corpus_support as C

FILES = C.files()


@cache
def replayed() -> dict[Path, list[Translation | FhirTranslation | FhirError]]:
    replay = FeedReplay(C.config(), C.RECEIVED_AT)
    results: dict[Path, list[Translation | FhirTranslation | FhirError]] = {}
    for path in FILES:
        for raw in C.messages(path):
            if path.suffix == ".json":
                try:
                    outcome: Translation | FhirTranslation | FhirError = replay.fhir(raw)
                except FhirError as exc:
                    outcome = exc
            else:
                outcome = replay.hl7(raw)
            results.setdefault(path, []).append(outcome)
    return results


def test_the_corpus_is_large_enough_and_every_file_has_expectations_and_a_source():
    sources = set(re.findall(r"^### (\S+)$", (C.CORPUS / "SOURCES.md").read_text(), re.M))
    used = set()
    total = 0
    for path in FILES:
        expected = C.expectation(path)
        assert expected.source in sources, f"{path.name}: source {expected.source} not in SOURCES.md"
        assert expected.convention.strip(), path.name
        assert len(expected.messages) == len(C.messages(path)), path.name
        used.add(expected.source)
        total += len(expected.messages)
    assert total >= 40
    assert used == sources, f"sources never used: {sources - used}"
    listed = set(re.findall(r"^\| .* \| ([\d, –]+) \|$", (C.CORPUS / "SOURCES.md").read_text(), re.M))
    assert listed, "the coverage table of SOURCES.md names corpus files"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_message_maps_as_written_beside_it(path):
    expected = C.expectation(path)
    outcomes = replayed()[path]
    raws = C.messages(path)
    for n, (want, got, raw) in enumerate(zip(expected.messages, outcomes, raws, strict=True), start=1):
        where = f"{path.name} #{n}"
        if isinstance(got, FhirError):
            assert (want["status"], want.get("path")) == (got.status, got.path), where
            continue
        events = got.events
        if isinstance(got, FhirTranslation):
            assert want["status"] == 200, where
        else:
            assert got.ack_code == want["ack"], (where, got.errors)
            errors = [f"{error_location(r)} {r.error_code}" for r in got.errors]
            assert errors == want.get("errors", []), where
            ack = build_ack(got, msh_fields(raw), C.RECEIVED_AT).decode()
            assert f"\rMSA|{want['ack']}|" in ack, where
            for location in want.get("errors", []):  # every refused row is named in the ACK's ERR-2
                assert f"\rERR||{location.split()[0]}|" in ack, where
        assert got.ignored == want.get("ignored", 0), where
        assert [w.split(":")[0] for w in got.warnings] == want.get("warnings", []), where
        assert [C.comparable(e) for e in events] == C.expected_events(want), where
        for event in events:
            assert event["event_id"]
            if event["type"].startswith("infusion."):
                assert event["session_id"].startswith("ses-")
        if "retransmission_of" in want:
            first = outcomes[want["retransmission_of"] - 1]
            assert [e["event_id"] for e in events] == [e["event_id"] for e in first.events], where


def test_no_name_number_or_free_text_from_the_corpus_in_any_event():
    secrets = {s for path in FILES for s in C.identifying_strings(path)}
    assert {"BEISPIEL", "MRN10001", "Fhirsen", "Lindenweg 7", "PATID6001"} <= secrets  # the search is real
    blob = repr([o.events for outcomes in replayed().values() for o in outcomes if not isinstance(o, FhirError)])
    assert [s for s in secrets if s in blob] == []


def test_hl7_lint_prints_the_verdicts_row_by_row_and_no_identity():
    out, err = io.StringIO(), io.StringIO()
    code = lint_files(FILES, C.config(), out=out, err=err, received_at=C.RECEIVED_AT)
    text = out.getvalue()
    hl7_outcomes = [o for p in FILES if p.suffix == ".hl7" for o in replayed()[p]]
    counts = {k: sum(o.ack_code == k for o in hl7_outcomes) for k in ("AA", "AE", "AR")}
    assert code == 1 and err.getvalue() == ""
    assert text.rstrip().endswith(f"{counts['AA']} AA, {counts['AE']} AE, {counts['AR']} AR")
    assert "OBX[6]   150344^MDC_TEMP^MDC" in text and "REFUSED (ERR OBX^6^6^1, 103)" in text
    assert "used: systolic_mmhg = 84 at 2025-03-10T09:29:30Z" in text  # the UTC-clocked gateway, read right
    assert "message REJECTED (ERR MSH^1^10^1, 205): conflicting control id" in text
    secrets = {s for path in FILES for s in C.identifying_strings(path)}
    assert [s for s in secrets if s in text] == []


def test_the_cli_verb_lints_files_with_the_site_configuration(capsys, monkeypatch):
    from infusion_monitor.cli.main import main

    monkeypatch.delenv("INFUSION_MONITOR_PATIENT_KEY_SECRET", raising=False)
    files = [str(C.CORPUS / "hl7" / name) for name in ("13-utc-gateway-berlin-site.hl7", "25-pi-identifier-not-configured.hl7")]
    assert main(["hl7", "lint", *files, "--config", str(C.CONFIG)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("(no INFUSION_MONITOR_PATIENT_KEY_SECRET: patient keys below use a placeholder secret")
    assert "used: spo2_pct = 89 at 2025-03-10T09:29:30Z" in out and "(ERR PID^1^3^1, 101)" in out
    assert out.rstrip().endswith("1 AA, 1 AE, 0 AR")
    assert main(["hl7", "lint", str(C.CORPUS / "hl7" / "13-utc-gateway-berlin-site.hl7"), "--site-tz", "Mars/Base"]) == 2
    assert main(["hl7", "lint", str(C.CORPUS / "missing.hl7")]) == 2
