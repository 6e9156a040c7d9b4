"""Replay goldens: bundled logs with expected outputs, byte for byte (contract.md, "Replay").

Regenerate after a deliberate change with
``infusion-monitor replay LOG --out LOG.expected.jsonl 2> LOG.expected.stderr`` and review the diff.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.replay.offline import replay_lines

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = Path(__file__).parent / "goldens"
MONTHS = GOLDENS / "months-of-treatment.jsonl"
#: golden name -> (log, policy profile)
CASES = {
    "clinic-day": (ROOT / "examples" / "clinic-day.jsonl", "us"),
    "bad-input": (GOLDENS / "bad-input.jsonl", "us"),
    "months-of-treatment": (MONTHS, "us"),
    "months-of-treatment.eu": (MONTHS, "eu"),
}
LOGS = {name: log for name, (log, _) in CASES.items()}


def _replay_text(log: Path, profile: str = "us") -> tuple[str, str]:
    result = replay_lines(log.read_bytes().splitlines(), MonitorConfig(profile=profile))
    return "".join(result.jsonl()), "".join(f"{r}\n" for r in result.reports)


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_matches_golden(name):
    out, err = _replay_text(*CASES[name])
    assert out == (GOLDENS / f"{name}.expected.jsonl").read_text()
    stderr_golden = GOLDENS / f"{name}.expected.stderr"
    assert err == (stderr_golden.read_text() if stderr_golden.exists() else "")


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_log_twice_is_byte_identical(name):
    assert _replay_text(*CASES[name]) == _replay_text(*CASES[name])


def test_months_golden_log_is_what_its_generator_writes(tmp_path):
    import shutil

    script = tmp_path / "make_months.py"
    shutil.copy(GOLDENS / "make_months.py", script)
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    assert (tmp_path / "months-of-treatment.jsonl").read_bytes() == MONTHS.read_bytes()


def test_months_golden_tells_the_story_of_each_patient():
    import json

    out, _ = _replay_text(MONTHS)
    events = [json.loads(line) for line in out.splitlines()]

    def rules(patient):
        return [e["rule"] for e in events if e["type"] == "alert.raised" and e["patient_id"] == patient]

    def dues(patient):
        return [e["reason"] for e in events if e["type"] == "antibody_test.due" and e["patient_id"] == patient]

    assert rules("pk-routine") == [] and dues("pk-routine") == ["routine"] * 3
    assert rules("pk-transient") == ["R15", "S3"] and "confirm_positive" not in dues("pk-transient")
    persist = rules("pk-persist")
    assert persist[:3] == ["R15", "R16", "P5"] and persist.count("P5") == 7 and "M1" in persist
    liver = rules("pk-liver")
    assert liver.index("L6") < liver.index("R5") and {"L1", "L3", "L5"} <= set(liver)


def test_months_golden_eu_profile_contraindicates_persistent_antibodies():
    import json

    out, _ = _replay_text(MONTHS, "eu")
    persist = [e for e in map(json.loads, out.splitlines()) if e["patient_id"] == "pk-persist"]
    r5 = [e for e in persist if e.get("rule") == "R5"]
    assert r5 and all(e["evidence"]["reasons"] == ["persistent_antibodies"] for e in r5)


def test_cli_replay_writes_golden_and_reports_on_stderr(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "infusion_monitor.cli.main", "replay", str(LOGS["bad-input"]), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0
    assert out.read_text() == (GOLDENS / "bad-input.expected.jsonl").read_text()
    assert proc.stderr == (GOLDENS / "bad-input.expected.stderr").read_text()


def test_cli_replay_unreadable_log_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "infusion_monitor.cli.main", "replay", str(tmp_path / "missing.jsonl")],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 1 and "cannot read" in proc.stderr


def test_until_stops_the_clock_and_ignores_later_events(tmp_path):
    from datetime import datetime

    lines = LOGS["clinic-day"].read_bytes().splitlines()
    until = datetime.fromisoformat("2025-03-03T09:30:00+00:00")
    result = replay_lines(lines, MonitorConfig(), until=until)
    times = [e.occurred_at for e in result.sorted_outputs()]
    assert times and max(times) <= until
    assert "session.closed" not in {e.type for e in result.outputs if e.occurred_at.date().isoformat() == "2025-03-03"}
    # the full replay closes sessions that the --until replay leaves open
    assert any(e.type == "session.closed" and e.occurred_at > until for e in
               replay_lines(lines, MonitorConfig()).outputs)


def test_outputs_are_sorted_by_occurred_at_ties_in_production_order():
    out, _ = _replay_text(LOGS["clinic-day"])
    import json

    events = [json.loads(line) for line in out.splitlines()]
    assert [e["occurred_at"] for e in events] == sorted(e["occurred_at"] for e in events)
    # R10 alert, its contraindication fact, its R14 request, then the scheduler's due event
    at_0925 = [e["type"] for e in events if e["occurred_at"] == "2025-03-03T09:25:00Z"]
    assert at_0925 == ["alert.raised", "patient.contraindicated", "reaction.recorded", "antibody_test.due"]
