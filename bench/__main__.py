"""Run every benchmark and print a table: ``python3 run.py bench`` (or ``python -m bench``).

    python -m bench [--runs 3] [--events 1000000] [--live-events 200000] [--latency-seconds 15]
                    [--pager-alerts 300] [--quick] [--only replay|growth|live|latency|memory|pager]

Figures are medians of ``--runs`` runs; every ratio is measured within the same run. Nothing
here is a test: it prints figures (docs/performance.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import latency_bench, live_bench, pager_bench, replay_bench
from .common import Results
from .generate import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--live-events", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--pager-alerts", type=int, default=300, help="alerts per pager latency run")
    parser.add_argument("--pager-rate", type=float, default=20.0, help="alerts per second to the healthy ward")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    parser.add_argument("--only", choices=["replay", "live", "latency", "memory", "growth", "pager"], action="append")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.events, args.live_events, args.latency_seconds, args.sessions = 1, 3000, 2000, 2.0, 300
        args.pager_alerts = 20
    only = set(args.only or ["replay", "growth", "live", "latency", "memory", "pager"])
    results = Results()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="im-bench-") as tmp:
        logs: dict[int, Path] = {}
        if only & {"replay", "growth"}:
            for size in sorted({args.events // 100, args.events // 10, args.events}):
                path = Path(tmp) / f"log-{size}.jsonl"
                path.write_text("\n".join(generate(size)) + "\n")
                logs[size] = path
                print(f"generated {size:,} events", file=sys.stderr)
        if "replay" in only:
            replay_bench.run(logs[args.events], args.events, args.runs, results)
            print(results.table(), file=sys.stderr, flush=True)  # progress, in case a later step fails
        if "growth" in only:
            replay_bench.growth(logs, args.runs, results)
            print(results.table(), file=sys.stderr, flush=True)  # progress, in case a later step fails
        if "live" in only:
            live_bench.run(args.live_events, args.runs, results, patients=max(50, min(2000, args.live_events // 100)))
            print(results.table(), file=sys.stderr, flush=True)  # progress, in case a later step fails
        if "latency" in only:
            latency_bench.run([500, 2000, 5000], args.latency_seconds, args.runs, results)
            print(results.table(), file=sys.stderr, flush=True)  # progress, in case a later step fails
        if "pager" in only:
            pager_bench.run(args.pager_alerts, args.pager_rate, args.runs, results)
            print(results.table(), file=sys.stderr, flush=True)  # progress, in case a later step fails
        if "memory" in only:
            out = subprocess.run([sys.executable, "-m", "bench.memory_bench", str(args.sessions)],
                                 capture_output=True, text=True, check=True)
            figures = json.loads(out.stdout)
            per = figures["rss_bytes_per_session"]
            results.add(f"memory with {figures['open_sessions']:,} open sessions", f"{per / 1024:.2f} KB/session",
                        "<= 4 KB/session", per <= 4096, "growth of the resident set / open sessions, fresh process")
            out = subprocess.run([sys.executable, "-m", "bench.memory_bench", str(args.sessions), "--pending"],
                                 capture_output=True, text=True, check=True)
            figures = json.loads(out.stdout)
            per = figures["rss_bytes_per_patient"]
            results.add(f"memory per patient with {figures['pending_per_patient']} pending readings", f"{per / 1024:.2f} KB/patient",
                        "", None, f"{figures['patients_with_pending']:,} patients whose start has not arrived yet")
    print(results.table())
    print(f"\n(total {time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
