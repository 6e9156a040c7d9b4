"""Online replay (through a real nats-server and the live worker on event time) gives the
same output as offline replay, byte for byte, including dead letters for bad lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infusion_monitor.replay.online import replay_online_async
from infusion_monitor.runtime.settings import Settings

pytestmark = pytest.mark.integration
GOLDENS = Path(__file__).resolve().parents[1] / "replay" / "goldens"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("log,golden,profile", [
    (ROOT / "examples" / "clinic-day.jsonl", "clinic-day", "us"),
    (GOLDENS / "bad-input.jsonl", "bad-input", "us"),
    (GOLDENS / "months-of-treatment.jsonl", "months-of-treatment.eu", "eu"),
])
async def test_online_replay_equals_offline_golden(nats_server, log, golden, profile):
    settings = Settings.load(profile=profile, env={})
    result = await replay_online_async(log.read_bytes().splitlines(), settings, nats_url=nats_server.url)
    assert "".join(result.jsonl()) == (GOLDENS / f"{golden}.expected.jsonl").read_text()
    if golden == "bad-input":
        rejected = sorted((r.line, r.level, r.field) for r in result.reports if r.level != "warning")
        offline = []
        for line in (GOLDENS / "bad-input.expected.stderr").read_text().splitlines():
            where, level, rest = line.split(": ", 2)
            if level != "warning":
                field = rest.split(": ", 1)[0] if ": " in rest else ""
                offline.append((int(where.split()[1]), level, field))
        assert [r[:2] for r in rejected] == [o[:2] for o in sorted(offline)]


async def test_online_replay_uses_its_own_namespace(nats_server):
    import nats

    log = (ROOT / "examples" / "clinic-day.jsonl").read_bytes().splitlines()[:20]
    await replay_online_async(log, Settings(), nats_url=nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        names = [s.config.name async for s in _streams(nc.jetstream())]
        assert names and not any(n.startswith("IM_") for n in names)  # live streams untouched
    finally:
        await nc.close()


async def _streams(js):
    for info in await js.streams_info():
        yield info


def _cli_replay(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("NATS_URL", None)
    return subprocess.run([sys.executable, "-m", "infusion_monitor.cli.main", "replay", *args], cwd=ROOT, env=env,
                          capture_output=True, timeout=300, check=False)


def test_replay_online_on_the_command_line_prints_only_the_json_lines_of_the_offline_replay(tmp_path):
    """``replay --online > out.jsonl`` (issue 17, point 3): logs go to standard error; standard
    output is byte-identical to the offline replay's (and to the golden)."""
    log = ROOT / "examples" / "clinic-day.jsonl"
    online = _cli_replay(str(log), "--online", tmp_path=tmp_path)
    offline = _cli_replay(str(log), tmp_path=tmp_path)
    assert online.returncode == 0 and offline.returncode == 0, online.stderr.decode()
    assert online.stdout == offline.stdout == (GOLDENS / "clinic-day.expected.jsonl").read_bytes()
    assert all(json.loads(line)["type"] for line in online.stdout.splitlines())
    assert not list(tmp_path.glob("im-*")), "the online replay's temporary store was not removed"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_an_online_replay_at_once_and_leaves_nothing_behind(tmp_path, sig):
    from bench.generate import generate
    from tests.processes import HAS_PROC, command_of, descendants, wait_gone

    if not HAS_PROC:
        pytest.skip("process checks use Linux /proc")
    log = tmp_path / "long.jsonl"
    log.write_text("\n".join(generate(40_000)) + "\n")  # several seconds through NATS on any machine
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("NATS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "infusion_monitor.cli.main", "replay", str(log), "--online"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in descendants(proc.pid) if "nats-server" in command_of(p)]:
            assert proc.poll() is None and time.monotonic() < deadline, "no embedded server started"
            time.sleep(0.05)
        time.sleep(1.0)  # the replay is publishing
        children = descendants(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + sig, err.decode()
        assert out == b"" and b"infusion-monitor replay: stopped" in err
        assert wait_gone(children, timeout=10) == []
        assert not list(tmp_path.glob("im-*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
