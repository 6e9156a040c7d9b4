"""The board service against a real nats-server and the real monitor worker (issue #9), without a
browser: a session's events make a tile, an R7 reading reaches an open event stream as a critical
alert, an acknowledgement over HTTP lands on the alert stream as the pager's ``alert.acknowledged``
(``via: board``) and in the audit stream, and a restarted board rebuilds the same board from the
streams."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace

import httpx
import pytest

from infusion_monitor.board.auth import Authenticator, users_from_pairs
from infusion_monitor.board.config import BoardConfig
from infusion_monitor.board.service import run_board
from infusion_monitor.board.view import render_text
from infusion_monitor.runtime.settings import Settings
from infusion_monitor.worker.app import run_worker
from tests.integration.live import connect, now_minus, publish, stream_messages, wait_for

pytestmark = pytest.mark.integration
DEADLINE_S = 5.0  # functional deadline for "within a second" (generous on a loaded 2-core machine)
P = "pk-board1"


def _auth() -> Authenticator:
    # plain HTTP on loopback in these tests: the cookie without Secure (the HTTPS option is tested
    # in test_board_security.py)
    return Authenticator(users_from_pairs([("anna", "Anna K., RN", "pw")]), b"t" * 32, cookie_secure=False)


def _config(tmp_path) -> BoardConfig:
    return replace(BoardConfig(), bind="127.0.0.1:0", secret_path=tmp_path / "secret", sse_refresh_s=1.0)


async def _tiles(board, n=1):
    tiles = board.hub.board().tiles
    return tiles if len(tiles) >= n else None


async def _signed_in(url: str) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(base_url=url, timeout=10)
    answer = await client.post("/login", data={"username": "anna", "password": "pw"}, headers={"origin": url})
    assert answer.status_code == 303
    page = await client.get("/")
    return client, re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


async def test_board_follows_the_streams_acknowledges_and_rebuilds(nats_server, tmp_path):
    settings = Settings()
    nc, js = await connect(nats_server.url)
    try:
        async with run_worker(settings, nats_server.url), \
                run_board(settings, nats_server.url, _config(tmp_path), auth=_auth()) as board:
            await publish(js, {"type": "vitals.recorded", "event_id": "b-1", "occurred_at": now_minus(12),
                               "patient_id": P, "systolic_mmhg": 128, "spo2_pct": 98})
            await publish(js, {"type": "infusion.started", "event_id": "b-2", "occurred_at": now_minus(10),
                               "patient_id": P, "session_id": "ses-b1", "site_id": "site-north", "pump_id": "pump-N04",
                               "infusion_number": 3})
            (tile,) = await wait_for(lambda: _tiles(board), timeout=10)
            assert (tile.label, tile.phase, tile.patient_id) == ("pump-N04", "infusing", P)

            client, csrf = await _signed_in(board.url)
            async with client.stream("GET", "/events") as stream:
                seen = asyncio.get_running_loop().create_future()

                async def read() -> None:
                    buffer = ""
                    async for chunk in stream.aiter_text():
                        buffer += chunk
                        if "sev-critical" in buffer and not seen.done():
                            seen.set_result(time.monotonic())
                            return

                reader = asyncio.create_task(read())
                await asyncio.sleep(0.5)  # the stream is open and has sent the board once
                sent = time.monotonic()
                await publish(js, {"type": "vitals.recorded", "event_id": "b-3", "occurred_at": now_minus(0),
                                   "patient_id": P, "session_id": "ses-b1", "systolic_mmhg": 82, "spo2_pct": 95})
                arrived = await asyncio.wait_for(seen, DEADLINE_S)
                print(f"\nR7 reading published -> critical alert on the event stream: {(arrived - sent) * 1000:.0f} ms")
                reader.cancel()

            alert = board.hub.board().tiles[0].open_alerts[0]
            assert (alert.severity, alert.rule) == ("critical", "R7")
            answer = await client.post(f"/alerts/{alert.alert_id}/ack", headers={
                "origin": board.url, "x-csrf-token": csrf, "accept": "application/json"})
            assert answer.status_code == 202

            async def acknowledged():
                t = board.hub.board().tiles[0]
                return t if t.acknowledged_alerts else None

            tile = await wait_for(acknowledged, timeout=DEADLINE_S)
            assert tile.acknowledged_alerts[0].acknowledged_by == "Anna K., RN" and not tile.open_alerts
            acks = [m for m in await stream_messages(js, "IM_ALERTS") if m.subject.endswith(".alert.acknowledged")]
            assert [m.subject for m in acks] == [f"im.alert.{P}.alert.acknowledged"]
            ack = json.loads(acks[0].data)
            assert (ack["alert_id"], ack["by"], ack["via"]) == (alert.alert_id, "Anna K., RN", "board")
            audit = [json.loads(m.data) for m in await wait_for(lambda: _audit(js, 2))]
            assert [a["type"] for a in audit] == ["board.login", "board.acknowledge"]
            assert audit[1]["user"] == "anna" and audit[1]["target"]["alert_id"] == alert.alert_id
            assert audit[1]["target"]["patient_id"] == P
            assert "alert_id" not in audit[1]  # kept apart from the pager's alert states (audit.fold)
            await client.aclose()
            now = board.hub.now()
            before = render_text(replace_now(board.hub, now), settings.monitor)

        # restart: the board is rebuilt from the streams (nothing stored)
        async with run_board(settings, nats_server.url, _config(tmp_path), auth=_auth()) as again:
            assert again.hub.ready
            assert render_text(replace_now(again.hub, now), settings.monitor) == before
    finally:
        await nc.close()


def replace_now(hub, now):
    from infusion_monitor.board.view import build_board

    return build_board(hub.patients(), now, hub.config, hub.options)


async def _audit(js, n):
    msgs = [m for m in await stream_messages(js, "IM_AUDIT") if ".board." in m.subject]
    return msgs if len(msgs) >= n else None
