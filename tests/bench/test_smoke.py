"""The benchmarks keep working: each runs on a tiny input. Nothing here asserts a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_every_benchmark_runs_on_a_tiny_input():
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "[8/8] login-flood (4 part(s))" in proc.stderr  # wired into python -m bench, with --quick sizes
    for figure in ("offline replay", "parse-only baseline", "replay / parse-only", "growth",
                   "live: raw nats-py pull + ack", "live: monitor worker", "live monitor / raw",
                   "alert latency at 500 events/s", "alert latency at 2,000 events/s", "memory with 300 open sessions",
                   "pager: publish-to-page, second destination healthy",
                   "pager: publish-to-page, second destination down (refusing)",
                   "pager: publish-to-page, second destination hanging (timeouts)",
                   "login flood: wall display update, quiet", "login flood: wall display update, flood, throttled",
                   "login flood: wall display update, flood, every attempt hashed",
                   "login flood: wall display update, flood, hashed on the event loop"):
        assert figure in table, f"{figure!r} missing from\n{table}"


def test_generator_is_deterministic_and_valid():
    from bench.generate import generate
    from infusion_monitor.schemas import Rejection, parse_inbound

    first, second = generate(2000), generate(2000)
    assert first == second and len(first) == 2000
    assert not any(isinstance(parse_inbound(line), Rejection) for line in first)
