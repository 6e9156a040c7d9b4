"""The bundled HL7 story on the live board (issue 17, point 6): ``hl7 send examples/hl7/*.hl7
--now`` through a real gateway process, the monitor worker and the board against a real
nats-server. Moved so that it started five and a half minutes ago (what a newcomer sees once
the story has played, without waiting for it), it shows one open session with the reaction's
critical R7 alert and its vitals; nothing old fires (no M1, M2, R6 or S3: before the move, the
March 2025 messages opened a session that closed at once with those)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infusion_monitor.board.auth import Authenticator, users_from_pairs
from infusion_monitor.board.config import BoardConfig
from infusion_monitor.board.service import run_board
from infusion_monitor.gateway.sender import send_files
from infusion_monitor.runtime.settings import Settings
from infusion_monitor.worker.app import run_worker
from tests.gateway.live import GatewayProcess
from tests.integration.live import alerts, connect, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hl7"


async def test_the_bundled_hl7_story_sent_with_now_plays_on_the_live_board(nats_server, tmp_path):
    settings = Settings()
    board_config = replace(BoardConfig(), bind="127.0.0.1:0", secret_path=tmp_path / "secret")
    auth = Authenticator(users_from_pairs([("anna", "Anna K., RN", "pw")]), b"t" * 32)
    gateway = GatewayProcess(nats_server.url, tmp_path / "gateway.log", env={"INFUSION_MONITOR_SITE_TZ": "Europe/Berlin"}).start()
    nc, js = await connect(nats_server.url)
    try:
        async with run_worker(settings, nats_server.url), \
                run_board(settings, nats_server.url, board_config, auth=auth) as board:
            await gateway.ready()
            started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5, seconds=30)
            out, err, waits = io.StringIO(), io.StringIO(), []

            async def no_wait(seconds: float) -> None:
                waits.append(seconds)

            code = await send_files(sorted(EXAMPLES.glob("*.hl7")), "127.0.0.1", gateway.mllp_port,
                                    out=out, err=err, now=started, sleep=no_wait)
            assert code == 0 and out.getvalue().count(": AA") == 12, out.getvalue() + err.getvalue()
            assert waits == []  # every message was due already

            async def reaction_on_the_board():
                tiles = board.hub.board().tiles
                return tiles if tiles and tiles[0].worst == "critical" else None

            (tile,) = await wait_for(reaction_on_the_board, timeout=30)
            assert tile.outcome is None  # open: in its reaction window
            assert [a.rule for a in tile.open_alerts] == ["R7"]
            assert tile.started_at == started + timedelta(minutes=1)
            assert "84" in (tile.last_vitals_text or "")

            async def story_alerts():
                raised = await alerts(js)
                return raised if len(raised) >= 4 else None

            raised = await wait_for(story_alerts, timeout=30)
            assert sorted(a["rule"] for a in raised) == ["L1", "L3", "R15", "R7"]
    finally:
        await nc.close()
        gateway.stop()
