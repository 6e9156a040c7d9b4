"""``python3 run.py bench`` tells how long is left and leaves nothing behind (issue 17, points
8 and 2): the estimate of the time left, and SIGINT, SIGTERM or SIGKILL of the bench while its
nats-server and a service run (the latency step), or its nats-server, the board's process and the
login flood's (the login-flood step)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.progress import Progress, Step, duration, plan, time_left
from tests.processes import HAS_PROC, command_of, descendants, wait_gone

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("planned", "done", "spent", "left"), [
    (100, 0, 0, 100),      # nothing done yet: the plan
    (100, 50, 50, 50),     # as planned
    (100, 50, 25, 25),     # this machine is twice as fast: the rest too
    (100, 50, 100, 100),   # twice as slow
    (100, 100, 80, 0),     # done
])
def test_time_left_is_the_rest_of_the_plan_at_this_machines_pace(planned, done, spent, left):
    assert time_left(planned, done, spent) == pytest.approx(left)


def test_progress_reports_each_part_with_the_time_left():
    now = [0.0]
    out = io.StringIO()
    progress = Progress([Step("replay", 2, 20.0), Step("live", 1, 60.0)], out=out, clock=lambda: now[0])
    progress.begin()
    progress.start("replay")
    now[0] = 5.0
    progress.tick("run 1")  # 10 s planned in 5 s: the machine is twice as fast
    assert progress.left_s() == pytest.approx((80 - 10) / 2)
    progress.start("live")  # the replay's second part was not reported: counted as done
    assert progress.planned_done_s == 20.0
    now[0] = 40.0
    progress.tick("run 1")
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "bench: 2 step(s), about 80 s on a 2-core machine (the estimate follows this machine as steps finish)"
    assert lines[1] == "[1/2] replay (2 part(s)); about 80 s left"
    assert lines[2] == "      replay run 1: 1/2 done, 5 s so far, about 35 s left"
    assert lines[-1] == "bench: done in 40 s"


def test_the_default_plan_is_the_documented_quarter_hour():
    steps = plan({"replay", "growth", "live", "latency", "memory", "pager", "login-flood"}, runs=3, events=1_000_000,
                 live_events=200_000, latency_seconds=15, rates=3, pager_alerts=300, pager_rate=20,
                 pager_cases=3, sessions=10_000)
    assert [s.name for s in steps] == ["generate", "replay", "growth", "live", "latency", "pager", "memory",
                                       "login-flood"]
    assert 10 * 60 <= sum(s.estimate_s for s in steps) <= 20 * 60
    assert duration(45) == "45 s" and duration(13 * 60) == "13 min" and duration(3 * 3600) == "3.0 h"


CHILDREN = {  # a step of the bench -> what its children's command lines show once all run
    "latency": ("nats-server", "service monitor"),  # the monitor service as a child
    "login-flood": ("nats-server", "run_board(", '"password": "wrong"'),  # the board's process, the flood's
}


@pytest.mark.integration
@pytest.mark.skipif(not HAS_PROC, reason="process checks use Linux /proc")
@pytest.mark.parametrize("step", sorted(CHILDREN))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_bench_leaves_no_nats_server_or_service_behind(sig, step):
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--quick", "--only", step], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # every kind of child the step starts is running
            children = descendants(proc.pid)
            commands = [command_of(p) for p in children]
            if all(any(mark in c for c in commands) for mark in CHILDREN[step]):
                break
            assert proc.poll() is None and time.monotonic() < deadline, f"the bench did not start its children: {commands}"
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 128 + sig, err[-2000:]
            assert f"bench: stopped by {signal.Signals(sig).name}" in err
        assert "about" in err and "left" in err  # the progress it printed before
        assert wait_gone(children, timeout=15) == [], [command_of(p) for p in children]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
