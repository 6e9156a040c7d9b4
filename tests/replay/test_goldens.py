"""Replay goldens: bundled logs with expected outputs, byte for byte (contract.md, "Replay").

Regenerate after a deliberate change with
``infusion-monitor replay LOG --out LOG.expected.jsonl 2> LOG.expected.stderr`` and review the diff.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.engine.config import MonitorConfig
from services.replay.offline import replay_lines

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = Path(__file__).parent / "goldens"
LOGS = {
    "clinic-day": ROOT / "examples" / "clinic-day.jsonl",
    "bad-input": GOLDENS / "bad-input.jsonl",
}


def _replay_text(log: Path) -> tuple[str, str]:
    result = replay_lines(log.read_bytes().splitlines(), MonitorConfig())
    return "".join(result.jsonl()), "".join(f"{r}\n" for r in result.reports)


@pytest.mark.parametrize("name", sorted(LOGS))
def test_replay_matches_golden(name):
    out, err = _replay_text(LOGS[name])
    assert out == (GOLDENS / f"{name}.expected.jsonl").read_text()
    stderr_golden = GOLDENS / f"{name}.expected.stderr"
    assert err == (stderr_golden.read_text() if stderr_golden.exists() else "")


@pytest.mark.parametrize("name", sorted(LOGS))
def test_same_log_twice_is_byte_identical(name):
    assert _replay_text(LOGS[name]) == _replay_text(LOGS[name])


def test_cli_replay_writes_golden_and_reports_on_stderr(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "replay", str(LOGS["bad-input"]), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0
    assert out.read_text() == (GOLDENS / "bad-input.expected.jsonl").read_text()
    assert proc.stderr == (GOLDENS / "bad-input.expected.stderr").read_text()


def test_cli_replay_unreadable_log_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "services.cli.main", "replay", str(tmp_path / "missing.jsonl")],
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
