"""Offline replay throughput against a parse-only baseline, and growth with log size.

Replay runs the real command (``infusion-monitor replay LOG --out /dev/null``) in a child
process; the baseline reads and validates every line into the schema models in a child process
too (``python -m bench.parse_only LOG``). Both therefore pay the same interpreter start-up.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from infusion_monitor.runtime.children import die_with_parent

from .common import Results, median_of

Tick = Callable[[str], None]


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   preexec_fn=die_with_parent())
    return time.perf_counter() - start


def replay_seconds(log: Path) -> float:
    return _timed([sys.executable, "-m", "infusion_monitor.cli.main", "replay", str(log), "--out", "/dev/null"])


def parse_seconds(log: Path) -> float:
    return _timed([sys.executable, "-m", "bench.parse_only", str(log)])


def run(log: Path, events: int, runs: int, results: Results, tick: Tick | None = None) -> None:
    replay_runs, parse_runs, ratios = [], [], []
    for i in range(runs):  # interleaved, so both see the same machine load; ratio per run
        p = parse_seconds(log)
        r = replay_seconds(log)
        parse_runs.append(events / p)
        replay_runs.append(events / r)
        ratios.append(p / r)
        if tick:
            tick(f"run {i + 1}")
    import statistics

    replay_rate, parse_rate, ratio = (statistics.median(v) for v in (replay_runs, parse_runs, ratios))
    results.add("offline replay", f"{replay_rate:,.0f} events/s", ">= 100,000 events/s", replay_rate >= 100_000,
                f"{events:,} events, median of {runs}: " + ", ".join(f"{v:,.0f}" for v in replay_runs))
    results.add("parse-only baseline", f"{parse_rate:,.0f} events/s", "", None,
                "validate every line into the models, nothing else")
    results.add("replay / parse-only", f"{ratio:.0%}", ">= 50 %", ratio >= 0.5,
                "ratio measured in the same run, median of runs: " + ", ".join(f"{v:.0%}" for v in ratios))


def growth(logs: dict[int, Path], runs: int, results: Results, tick: Tick | None = None) -> None:
    per_event = {}
    for size, log in sorted(logs.items()):
        seconds, _ = median_of(runs, lambda log=log: replay_seconds(log))
        per_event[size] = seconds / size * 1e6
        if tick:
            tick(f"{size:,} events")
    sizes = sorted(per_event)
    smallest, largest = per_event[sizes[0]], per_event[sizes[-1]]
    note = ", ".join(f"{s:,}: {per_event[s]:.1f} us/event" for s in sizes)
    # linear: the cost per event does not grow with the log (start-up dominates the smallest)
    results.add("growth (replay time per event)", f"{largest / per_event[sizes[len(sizes) // 2]]:.2f}x from "
                f"{sizes[len(sizes) // 2]:,} to {sizes[-1]:,}", "linear (~1.0x)",
                largest <= 1.3 * per_event[sizes[len(sizes) // 2]], note)
    del smallest
