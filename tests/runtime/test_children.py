"""A child started with ``die_with_parent`` never outlives its parent, SIGKILL of the parent
included; the embedded nats-server is started that way (issue 17, point 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.processes import HAS_PROC, alive, command_of, wait_gone

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not HAS_PROC, reason="PR_SET_PDEATHSIG and /proc are Linux only")

PARENT = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from infusion_monitor.runtime.children import die_with_parent
    from infusion_monitor.runtime.embedded import EmbeddedNats
    kind, where = sys.argv[1], Path(sys.argv[2])
    if kind == "nats":
        child = EmbeddedNats(where / "nats").start().process
    else:
        child = subprocess.Popen(["sleep", "120"], preexec_fn=die_with_parent())
    print(child.pid, flush=True)
    time.sleep(120)
""")


def _parent_with_a_child(kind: str, tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, kind, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    line = parent.stdout.readline()  # type: ignore[union-attr]
    assert line.strip().isdigit(), f"the parent did not start its child: {line!r}"
    return parent, int(line)


@pytest.mark.parametrize("kind", ["nats", "sleep"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_the_child_dies_with_its_parent_whatever_kills_the_parent(kind, sig, tmp_path):
    parent, child = _parent_with_a_child(kind, tmp_path)
    try:
        assert alive(child)
        if kind == "nats":
            assert "nats-server" in command_of(child)
        os.kill(parent.pid, sig)
        parent.wait(15)
        assert wait_gone([child], timeout=15) == [], f"{command_of(child)} outlived its parent ({sig.name})"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_of_a_living_parent_keeps_running(tmp_path):
    """The signal comes at the parent's death only (a check that the test above can fail)."""
    parent, child = _parent_with_a_child("sleep", tmp_path)
    try:
        assert wait_gone([child], timeout=1.0) == [child]
    finally:
        parent.kill()
        parent.wait(5)
        wait_gone([child], timeout=10)
