"""Issue 14, the board: the attacks against the running service (real nats-server, real HTTP on
loopback): the SSO header from an address that is not the configured proxy, a user the users
file does not list, a foreign ``Host`` (DNS rebinding), a session cookie replayed after sign-out;
and the HTTPS option with ``Secure`` cookies."""

from __future__ import annotations

import contextlib
import re
import ssl
from dataclasses import replace

import httpx
import pytest

from infusion_monitor.board.auth import Authenticator, User, users_from_pairs
from infusion_monitor.board.config import BoardConfig
from infusion_monitor.board.service import run_board
from infusion_monitor.runtime.settings import Settings
from infusion_monitor.runtime.tls import ServerTls
from infusion_monitor.worker.app import run_worker
from tests.integration.live import connect, now_minus, publish, stream_messages, wait_for
from tests.integration.test_security import make_certificates

pytestmark = pytest.mark.integration
P = "pk-boardsec"


def _config(tmp_path, **changes) -> BoardConfig:
    return replace(BoardConfig(), bind="127.0.0.1:0", secret_path=tmp_path / "board" / "secret", sse_refresh_s=1.0,
                   **changes)


async def _critical(js, board) -> str:
    await publish(js, {"type": "vitals.recorded", "event_id": "bs-1", "occurred_at": now_minus(12),
                       "patient_id": P, "systolic_mmhg": 128, "spo2_pct": 98})
    await publish(js, {"type": "infusion.started", "event_id": "bs-2", "occurred_at": now_minus(10),
                       "patient_id": P, "session_id": "ses-bs", "pump_id": "pump-7"})
    await publish(js, {"type": "vitals.recorded", "event_id": "bs-3", "occurred_at": now_minus(0.1),
                       "patient_id": P, "systolic_mmhg": 80, "spo2_pct": 89, "symptoms": ["stridor"]})

    async def alert_id():
        for tile in board.hub.board().tiles:
            for alert in tile.open_alerts:
                if alert.severity == "critical":
                    return alert.alert_id
        return None

    return await wait_for(alert_id, timeout=30)


@contextlib.asynccontextmanager
async def _board_with_a_critical_alert(nats_server, config: BoardConfig, auth: Authenticator):
    """The monitor and the board on a real server; a critical alert open on the board."""
    settings = Settings()
    nc, js = await connect(nats_server.url)
    try:
        async with run_worker(settings, nats_server.url), run_board(settings, nats_server.url, config, auth=auth) as board:
            yield board, js, await _critical(js, board)
    finally:
        await nc.close()


async def _acks(js) -> list:
    return [m for m in await stream_messages(js, "IM_ALERTS") if m.subject.endswith(".alert.acknowledged")]


async def test_sso_header_only_from_the_configured_proxy_for_listed_users(nats_server, tmp_path):
    """Issue 14: in SSO mode X-Forwarded-User was trusted from any local process, for users not
    in the users file. The proxy here is 10.9.9.9: a request from this host is refused, whatever
    the header says."""
    auth = Authenticator({"nurse.k": User("nurse.k", "Nurse K.")}, b"s" * 32, trusted_header="X-Forwarded-User",
                         trusted_proxies=("10.9.9.9",))
    async with _board_with_a_critical_alert(nats_server, _config(tmp_path), auth) as (board, js, alert_id):
        async with httpx.AsyncClient(base_url=board.url) as http:
            for user in ("nurse.k", "mallory"):
                page = await http.get("/", headers={"x-forwarded-user": user, "accept": "text/html"})
                assert page.status_code == 401, user
                ack = await http.post(f"/alerts/{alert_id}/ack", headers={
                    "x-forwarded-user": user, "origin": board.url, "accept": "application/json"})
                assert ack.status_code == 401, user
        assert await _acks(js) == []


async def test_sso_mode_without_proxy_addresses_does_not_start(tmp_path, nats_server):
    from infusion_monitor.board.service import run_board_service

    config = _config(tmp_path, trusted_header="X-Forwarded-User")
    assert run_board_service(nats_server.url, Settings(), config) == 2


async def test_a_foreign_host_is_refused_and_a_cookie_dies_at_sign_out(nats_server, tmp_path):
    """Issue 14: a DNS-rebinding-shaped request (foreign Host) acknowledged an alert (202); a
    cookie stayed valid 12 h after sign-out."""
    auth = Authenticator(users_from_pairs([("anna", "Anna K., RN", "pw")]), b"s" * 32, cookie_secure=False)
    async with _board_with_a_critical_alert(nats_server, _config(tmp_path), auth) as (board, js, alert_id):
        async with httpx.AsyncClient(base_url=board.url) as http:
            assert (await http.post("/login", data={"username": "anna", "password": "pw"},
                                    headers={"origin": board.url})).status_code == 303
            cookie = http.cookies["im_board"]
            page = await http.get("/")
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
            rebound = await http.post(f"/alerts/{alert_id}/ack", headers={
                "host": "attacker.example:8090", "origin": "http://attacker.example:8090", "x-csrf-token": csrf,
                "accept": "application/json"})
            assert rebound.status_code == 403
            assert await _acks(js) == []
            assert (await http.post("/logout", data={"csrf": csrf}, headers={"origin": board.url})).status_code == 303
        async with httpx.AsyncClient(base_url=board.url, cookies={"im_board": cookie}) as replay:
            assert (await replay.get("/whoami")).status_code == 401
            ack = await replay.post(f"/alerts/{alert_id}/ack", headers={
                "origin": board.url, "x-csrf-token": csrf, "accept": "application/json"})
            assert ack.status_code == 401
        assert await _acks(js) == []


async def test_https_with_secure_cookies(nats_server, tmp_path):
    """The HTTPS option (certificate and key): sign-in sets a Secure, HttpOnly, SameSite=Strict
    cookie over TLS, and an acknowledgement goes through."""
    certs = make_certificates(tmp_path / "tls")
    auth = Authenticator(users_from_pairs([("anna", "Anna K., RN", "pw")]), b"s" * 32)
    config = _config(tmp_path, tls=ServerTls(str(certs["server-cert"]), str(certs["server-key"])))
    async with _board_with_a_critical_alert(nats_server, config, auth) as (board, js, alert_id):
        assert board.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        async with httpx.AsyncClient(base_url=board.url, verify=context) as http:
            login = await http.post("/login", data={"username": "anna", "password": "pw"},
                                    headers={"origin": board.url})
            cookie = login.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            page = await http.get("/")
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
            ack = await http.post(f"/alerts/{alert_id}/ack", headers={
                "origin": board.url, "x-csrf-token": csrf, "accept": "application/json"})
            assert ack.status_code == 202
        await wait_for(lambda: _acks(js))
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets nothing
            async with httpx.AsyncClient(base_url=board.url.replace("https", "http")) as plain:
                await plain.get("/healthz")
