"""Resident memory with N open sessions: ``python -m bench.memory_bench N`` prints JSON.

Runs in a fresh interpreter: the engine (every core) is fed a profile, a baseline reading, a
start and readings at 10, 20 and 30 minutes per patient (the baseline fixed, the window open,
the state a session has mid-infusion), and the growth of the resident set is divided by N.

``--pending``: instead, N patients whose monitor charts a baseline and readings at 10, 20 and 30
minutes while their pump's start event has not arrived yet: every reading is pending (kept for
24 h of stream time until a start claims it), the cost per patient with pending readings."""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from datetime import UTC, datetime

from infusion_monitor.schemas import parse_inbound
from infusion_monitor.engine.bus import Engine, content_digest
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.cores import all_cores

from .common import rss_bytes
from .workload import profiles, session_starts, vitals


def main(n: int, trace: bool = False, pending: bool = False) -> int:
    t0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
    starts = session_starts(n, t0)
    if pending:  # the baselines without the starts; the readings name no session
        starts = [item for item in starts if item[0] == "vitals.recorded"]
    readings = vitals(n, 3 * n, t0, every_s=600)
    if pending:
        readings = [(t, payload.replace(b'"session_id":"ses-pk-', b'"unused":"'), i) for t, payload, i in readings]
    lines = [payload for _, payload, _ in profiles(n, t0) + starts + readings]
    del starts, readings  # freed before measuring, as the lines' builders are
    engine = Engine(MonitorConfig(), all_cores())
    gc.collect()
    before = rss_bytes()
    if trace:  # Python-level allocations (tracemalloc itself inflates the resident set)
        tracemalloc.start()
    for i, raw in enumerate(lines, start=1):
        engine.handle(parse_inbound(raw), seq=i, digest=content_digest(raw))
    engine.take_dirty()  # as the live worker does at every checkpoint
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] if trace else 0
    tracemalloc.stop()
    after = rss_bytes()
    slices = [r.slices["session"] for r in engine.records.values()]
    if pending:
        with_pending = sum(1 for s in slices if len(s.log.pending) == 4)
        print(json.dumps({"patients_with_pending": with_pending, "pending_per_patient": 4,
                          "rss_bytes_per_patient": (after - before) / with_pending,
                          "python_bytes_per_patient": traced / with_pending}))
        return 0
    open_sessions = sum(1 for s in slices for session in s.sessions.values() if not session.closed)
    print(json.dumps({"open_sessions": open_sessions, "rss_bytes_per_session": (after - before) / open_sessions,
                      "python_bytes_per_session": traced / open_sessions}))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), trace="--trace" in sys.argv, pending="--pending" in sys.argv))
