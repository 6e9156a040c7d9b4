"""``up``'s supervision of its embedded nats-server (``cli/supervise.py``, architecture rule 9): a
server that dies is started again with backoff; one that keeps dying right after each start, or
cannot be started, makes ``up`` give up (exit non-zero, so that systemd or Docker act) instead of
restarting it every 0.2 s for ever."""

from __future__ import annotations

import structlog

from infusion_monitor.cli import supervise
from infusion_monitor.cli.supervise import RESTART_BACKOFF_S, SERVER_RESTARTS, ServerSupervision


class DyingServer:
    """Starts each time and is dead again by the next look (a bad config, a full disk)."""

    pid = 4242
    process = None

    def __init__(self, starts_fail: bool = False) -> None:
        self.starts, self.starts_fail = 0, starts_fail

    def running(self) -> bool:
        return False

    def start(self) -> DyingServer:
        self.starts += 1
        if self.starts_fail:
            raise RuntimeError("nats-server did not start")
        return self


def _watch(server: DyingServer, monkeypatch, tmp_path, looks: int = 400, every_s: float = 0.2) -> tuple[int, list[float]]:
    """``up``'s loop looks every ``every_s``; returns the look at which it gave up and the times of
    the starts."""
    now = [0.0]
    monkeypatch.setattr(supervise.time, "monotonic", lambda: now[0])
    supervision = ServerSupervision(server, tmp_path / "nats.pid", structlog.get_logger())
    started_at = []
    for look in range(looks):
        before = server.starts
        if not supervision.check():
            return look, started_at
        if server.starts != before:
            started_at.append(now[0])
        now[0] += every_s
    return -1, started_at


def test_a_server_that_dies_after_every_start_is_given_up_after_backoff(monkeypatch, tmp_path):
    gave_up_at, started_at = _watch(DyingServer(), monkeypatch, tmp_path)
    assert gave_up_at > 0 and len(started_at) == SERVER_RESTARTS
    gaps = [b - a for a, b in zip(started_at, started_at[1:], strict=False)]
    assert all(gap >= RESTART_BACKOFF_S[1] - 1e-9 for gap in gaps), gaps  # not every look


def test_a_server_that_cannot_start_is_given_up(monkeypatch, tmp_path):
    server = DyingServer(starts_fail=True)
    gave_up_at, _ = _watch(server, monkeypatch, tmp_path)
    assert gave_up_at > 0 and server.starts == SERVER_RESTARTS
