"""Run every benchmark and print a table: ``python3 run.py bench`` (or ``python -m bench``).

    python -m bench [--runs 3] [--events 1000000] [--live-events 200000] [--latency-seconds 15]
                    [--pager-alerts 300] [--flood-samples 50] [--flooders 32] [--quick]
                    [--only replay|growth|live|latency|memory|pager|login-flood]

Figures are medians of ``--runs`` runs (the login flood: one run, medians of its samples per
phase); every ratio is measured within the same run. Nothing
here is a test: it prints figures (docs/performance.md quotes them). Progress, with an estimate
of the time left, goes to standard error as each part finishes (``bench/progress.py``).

Ctrl-C or SIGTERM stops it at once (the figures measured so far are printed; exit code 128 +
the signal); every nats-server and service it started dies with it, even on SIGKILL
(``services/runtime/children.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from infusion_monitor.cli.helptext import Parser
from infusion_monitor.runtime.children import die_with_parent
from infusion_monitor.runtime.logs import configure

from . import latency_bench, live_bench, login_flood_bench, pager_bench, replay_bench
from .common import Results
from .generate import generate
from .progress import Progress, plan

LATENCY_RATES = [500, 2000, 5000]
STEPS = ["replay", "growth", "live", "latency", "memory", "pager", "login-flood"]


class Stopped(KeyboardInterrupt):
    """A BaseException like Ctrl-C's own: asyncio lets it through instead of logging it away."""

    def __init__(self, sig: int) -> None:
        super().__init__(signal.Signals(sig).name)
        self.signal = sig


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM end the bench through the ordinary unwinding: every ``with`` and
    ``finally`` (embedded servers, child services) cleans up on the way out."""
    def stop(sig: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # one stop at a time; the cleanup is bounded
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Stopped(sig)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m bench", description="Run the benchmarks and print a table of figures "
                    "(docs/performance.md).")
    parser.add_argument("--runs", type=int, default=3, help="runs of each benchmark (figures are medians)")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the largest offline replay log")
    parser.add_argument("--live-events", type=int, default=200_000, help="readings consumed by the live benchmark")
    parser.add_argument("--latency-seconds", type=float, default=15.0, help="seconds of each alert latency run")
    parser.add_argument("--sessions", type=int, default=10_000, help="open sessions of the memory benchmark")
    parser.add_argument("--pager-alerts", type=int, default=300, help="alerts per pager latency run")
    parser.add_argument("--pager-rate", type=float, default=20.0, help="alerts per second to the healthy ward")
    parser.add_argument("--flood-samples", type=int, default=50,
                        help="login flood: wall display updates measured per phase (at most 50)")
    parser.add_argument("--flooders", type=int, default=32, help="login flood: clients posting wrong passwords")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that every benchmark runs, in about a minute")
    parser.add_argument("--only", choices=STEPS, action="append",
                        help="run only this benchmark (repeatable; default: all of them)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.runs, args.events, args.live_events, args.latency_seconds, args.sessions = 1, 3000, 2000, 2.0, 300
        args.pager_alerts = 20
        args.flood_samples, args.flooders, flood_gap_s = 5, 4, 0.05
    else:
        flood_gap_s = 0.25
    only = set(args.only or STEPS)
    progress = Progress(plan(only, runs=args.runs, events=args.events, live_events=args.live_events,
                             latency_seconds=args.latency_seconds, rates=len(LATENCY_RATES),
                             pager_alerts=args.pager_alerts, pager_rate=args.pager_rate,
                             pager_cases=len(pager_bench.CASES), sessions=args.sessions,
                             flood_samples=args.flood_samples, flood_gap_s=flood_gap_s,
                             flood_phases=len(login_flood_bench.PHASES)))
    results = Results()
    configure(None, level=logging.WARNING)  # the services' info lines would drown the progress
    _stop_on_signals()
    try:
        progress.begin()
        _run(args, only, results, progress, flood_gap_s)
    except Stopped as stop:
        print(f"\nbench: stopped by {stop}; the figures measured so far:", file=sys.stderr)
        print(results.table(), file=sys.stderr)
        return 128 + stop.signal
    progress.finish()
    print(results.table())
    return 0


def _run(args: argparse.Namespace, only: set[str], results: Results, progress: Progress, flood_gap_s: float) -> None:
    def table() -> None:  # progress, in case a later step fails
        print(results.table(), file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="im-bench-") as tmp:
        logs: dict[int, Path] = {}
        if only & {"replay", "growth"}:
            progress.start("generate")
            for size in sorted({args.events // 100, args.events // 10, args.events}):
                path = Path(tmp) / f"log-{size}.jsonl"
                path.write_text("\n".join(generate(size)) + "\n")
                logs[size] = path
                progress.tick(f"{size:,} events")
        if "replay" in only:
            progress.start("replay")
            replay_bench.run(logs[args.events], args.events, args.runs, results, tick=progress.tick)
            table()
        if "growth" in only:
            progress.start("growth")
            replay_bench.growth(logs, args.runs, results, tick=progress.tick)
            table()
        if "live" in only:
            progress.start("live")
            live_bench.run(args.live_events, args.runs, results, patients=max(50, min(2000, args.live_events // 100)),
                           tick=progress.tick)
            table()
        if "latency" in only:
            progress.start("latency")
            latency_bench.run(LATENCY_RATES, args.latency_seconds, args.runs, results, tick=progress.tick)
            table()
        if "pager" in only:
            progress.start("pager")
            pager_bench.run(args.pager_alerts, args.pager_rate, args.runs, results, tick=progress.tick)
            table()
        if "memory" in only:
            progress.start("memory")
            figures = _memory(args.sessions)
            progress.tick("open sessions")
            per = figures["rss_bytes_per_session"]
            results.add(f"memory with {figures['open_sessions']:,} open sessions", f"{per / 1024:.2f} KB/session",
                        "<= 4 KB/session", per <= 4096, "growth of the resident set / open sessions, fresh process")
            figures = _memory(args.sessions, "--pending")
            progress.tick("pending readings")
            per = figures["rss_bytes_per_patient"]
            results.add(f"memory per patient with {figures['pending_per_patient']} pending readings", f"{per / 1024:.2f} KB/patient",
                        "", None, f"{figures['patients_with_pending']:,} patients whose start has not arrived yet")
        if "login-flood" in only:
            progress.start("login-flood")
            phases = asyncio.run(login_flood_bench.run(args.flood_samples, args.flooders, flood_gap_s,
                                                       tick=progress.tick))
            login_flood_bench.add_figures(phases, args.flood_samples, args.flooders, results)
            table()


def _memory(sessions: int, *flags: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.memory_bench", str(sessions), *flags],
                         capture_output=True, text=True, check=True, preexec_fn=die_with_parent())
    return json.loads(out.stdout)


if __name__ == "__main__":
    sys.exit(main())
