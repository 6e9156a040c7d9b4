"""Online replay (through a real nats-server and the live worker on event time) gives the
same output as offline replay, byte for byte, including dead letters for bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.replay.online import replay_online_async
from services.runtime.settings import Settings

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
