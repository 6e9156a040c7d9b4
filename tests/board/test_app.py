"""The board's web app and sign-in without a network: scrypt hashes, server-side sessions that
sign-out ends, sign-in throttling by source and account, CSRF, allowed hosts, the SSO proxy mode,
acknowledgement publishing the pager's ``alert.acknowledged`` (``via: board``, the user's name),
the audit of every action, server-sent events, and no asset from elsewhere (issue 14)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from infusion_monitor.board.app import board_app
from infusion_monitor.board.auth import (
    BY_ACCOUNT,
    BY_SOURCE,
    COOKIE,
    Authenticator,
    LoginThrottle,
    Sessions,
    User,
    hash_password,
    load_users,
    users_from_pairs,
    verify_password,
)
from infusion_monitor.board.hub import BoardHub
from infusion_monitor.board.projection import board_engine
from infusion_monitor.engine.config import MonitorConfig
from infusion_monitor.replay.offline import replay_lines
from infusion_monitor.runtime.names import Names

ROOT = Path(__file__).resolve().parents[2]
AT = datetime.fromisoformat("2025-03-03T09:40:00+00:00")
ORIGIN = {"origin": "https://board"}


def _hub() -> BoardHub:
    config = MonitorConfig()
    engine = board_engine(config)
    replay_lines((ROOT / "examples/clinic-day.jsonl").read_bytes().splitlines(), config, until=AT, engine=engine)
    hub = BoardHub(config, engine=engine, wall=lambda: AT)
    hub.ready = True
    return hub


@pytest.fixture
def board():
    published, audited = [], []

    async def publish(event):
        published.append(event)

    async def audit(action, user, details):
        audited.append((action, user, details))

    hub = _hub()
    auth = Authenticator(users_from_pairs([("anna", "Anna K., RN", "correct horse")]), b"s" * 32)
    app = board_app(hub, auth, publish, audit, refresh_s=0.2)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://board")
    return client, published, audited, hub, auth


async def _login(client) -> str:
    answer = await client.post("/login", data={"username": "anna", "password": "correct horse"}, headers=ORIGIN)
    assert answer.status_code == 303 and COOKIE in answer.cookies
    page = await client.get("/")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def _sse_html(payload: str) -> str:
    """The HTML carried by one ``event: board`` message."""
    return "\n".join(line[6:] for line in payload.splitlines() if line.startswith("data: "))


def _critical_alert_id(html: str) -> str:
    return re.search(r'data-alert="([^"]+)" data-severity="critical"', html).group(1)


# -- passwords and cookies ---------------------------------------------------------------------

def test_scrypt_hashes_are_salted_and_verified():
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert verify_password("pw", a) and not verify_password("PW", a)
    for broken in ("", "plain", "scrypt$1$2", "md5$x$y$z$00$00"):
        assert not verify_password("pw", broken)


def test_users_file(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text(f'[users.anna]\nname = "Anna K., RN"\npassword = "{hash_password("pw")}"\n')
    users = load_users(path)
    assert users["anna"].name == "Anna K., RN" and verify_password("pw", users["anna"].password)
    path.write_text('[users.bob]\npassword = "plaintext"\n')
    with pytest.raises(ValueError, match="users.bob.password"):
        load_users(path)
    path.write_text(f'[users."bad name"]\npassword = "{hash_password("pw")}"\n')
    with pytest.raises(ValueError, match="user names"):
        load_users(path)


def test_users_without_a_password_cannot_sign_in_with_one(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text('[users."nurse.k"]\nname = "Nurse K."\n')
    assert load_users(path)["nurse.k"] == User("nurse.k", "Nurse K.", "")


def test_sessions_are_server_side_end_at_sign_out_expire_and_survive_a_restart(tmp_path):
    now = [1_000_000.0]
    path = tmp_path / "board" / "sessions.json"
    sessions = Sessions(hours=1, path=path, clock=lambda: now[0])
    sid = sessions.start("anna")
    assert sessions.user(sid) == "anna" and sessions.user(sid + "x") is None and sessions.user(None) is None
    assert sid not in path.read_text() and path.stat().st_mode & 0o777 == 0o600  # only its digest is kept
    assert Sessions(hours=1, path=path, clock=lambda: now[0]).user(sid) == "anna"  # a restart keeps it
    other = sessions.start("anna")
    assert sessions.end(sid) and sessions.user(sid) is None and not sessions.end(sid)  # sign-out: dead at once
    assert sessions.user(other) == "anna"  # another browser's session stays
    now[0] += 3601
    assert sessions.user(other) is None  # expired


@pytest.mark.parametrize(("failures", "source_wait", "account_wait"), [
    (4, 0, 0), (5, 1, 1), (6, 2, 2), (10, 32, 30), (20, 15 * 60, 30),
])
def test_backoff_instead_of_a_lockout(failures, source_wait, account_wait):
    """After 5 failures the next attempt waits 1 s, 2 s, 4 s ...: a source up to 15 min, an
    account at most 30 s (nobody can keep a nurse out longer)."""
    assert BY_SOURCE.delay(failures) == source_wait and BY_ACCOUNT.delay(failures) == account_wait


def test_throttle_slows_a_source_spraying_accounts_and_an_account_attacked_from_many_sources():
    throttle = LoginThrottle()
    for i in range(8):  # one source, a different user each time
        throttle.failed("10.0.0.9", f"user{i}", now=100.0)
    assert throttle.wait("10.0.0.9", "anna", now=100.0) == 8.0  # 1 * 2**(8-5)
    assert throttle.wait("10.0.0.7", "anna", now=100.0) == 0.0  # the nurse at her own station is not affected
    for i in range(40):  # many sources, one account
        throttle.failed(f"10.1.{i}.1", "anna", now=200.0)
    assert throttle.wait("10.0.0.7", "anna", now=200.0) == 30.0  # capped: never a 15-minute lock-out
    assert throttle.wait("10.0.0.7", "anna", now=230.0) == 0.0
    throttle.succeeded("10.0.0.7", "anna")
    assert throttle.wait("10.1.3.1", "anna", now=200.0) == 0.0
    assert throttle.wait("10.0.0.9", "x", now=100.0 + 16 * 60) == 0.0  # failures are forgotten after 15 min


def test_throttle_memory_is_bounded():
    throttle = LoginThrottle(max_keys=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", f"u{i}", now=1.0)
    assert len(throttle._sources) == 100 and len(throttle._accounts) == 100


async def test_sign_in_is_throttled_and_a_refused_attempt_is_not_hashed():
    now = [0.0]
    auth = Authenticator(users_from_pairs([("anna", "Anna", "pw")]), b"k" * 32, clock=lambda: now[0])
    for _ in range(5):
        assert not (await auth.sign_in("anna", "wrong", "10.0.0.9")).ok
    throttled = await auth.sign_in("anna", "pw", "10.0.0.9")
    assert not throttled.ok and throttled.retry_after == 1.0
    now[0] += 1.0
    ok = await auth.sign_in("anna", "pw", "10.0.0.9")
    assert ok.ok and auth.sessions.user(ok.session_id) == "anna"


def test_proxy_mode_trusts_the_header_only_from_the_proxy_and_for_listed_users():
    users = {"nurse.k": User("nurse.k", "Nurse K.")}
    auth = Authenticator(users, b"k" * 32, trusted_header="X-Forwarded-User", trusted_proxies=("10.1.2.0/24",))
    assert auth.identify({"x-forwarded-user": "nurse.k"}, {}, "10.1.2.7")[0].name == "Nurse K."
    assert auth.identify({"x-forwarded-user": "nurse.k"}, {}, "127.0.0.1") is None  # around the proxy
    assert auth.identify({"x-forwarded-user": "mallory"}, {}, "10.1.2.7") is None  # not in the users file
    assert auth.identify({}, {}, "10.1.2.7") is None
    assert auth.identify({"x-forwarded-user": "bad name;"}, {}, "10.1.2.7") is None
    nobody = Authenticator(users, b"k" * 32, trusted_header="X-Forwarded-User")  # no proxies configured
    assert nobody.identify({"x-forwarded-user": "nurse.k"}, {}, "127.0.0.1") is None
    same_host = Authenticator(users, b"k" * 32, trusted_header="X-Forwarded-User", trusted_proxies=("127.0.0.1",),
                              proxy_secret="p" * 32)
    assert same_host.identify({"x-forwarded-user": "nurse.k"}, {}, "127.0.0.1") is None  # a local process
    assert same_host.identify({"x-forwarded-user": "nurse.k", "x-board-proxy-secret": "p" * 32}, {},
                              "127.0.0.1")[0].username == "nurse.k"


# -- the app -------------------------------------------------------------------------------------

async def test_pages_need_a_sign_in(board):
    client, _, audited, _, _ = board
    for path in ("/", "/day", "/board/fragment", "/sessions/pk-91d2f7/ses-20250303-N04-1"):
        answer = await client.get(path, headers={"accept": "text/html"})
        assert answer.status_code == 303 and answer.headers["location"] == "/login", path
    assert (await client.get("/events")).status_code == 401
    assert (await client.post("/alerts/x/ack", headers=ORIGIN)).status_code == 401
    bad = await client.post("/login", data={"username": "anna", "password": "nope"}, headers=ORIGIN)
    assert bad.status_code == 401 and "Sign-in failed" in bad.text
    assert audited == [("login_failed", "anna", {})]
    assert (await client.get("/healthz")).json()["ready"] is True


async def test_acknowledge_publishes_the_pagers_fact_and_is_audited(board):
    client, published, audited, _, _ = board
    csrf = await _login(client)
    page = await client.get("/")
    alert_id = _critical_alert_id(page.text)
    answer = await client.post(f"/alerts/{alert_id}/ack", headers={**ORIGIN, "x-csrf-token": csrf,
                                                                   "accept": "application/json"})
    assert answer.status_code == 202
    (event,) = published
    assert (event.type, event.alert_id, event.by, event.via.value) == ("alert.acknowledged", alert_id, "Anna K., RN", "board")
    assert event.patient_id == "pk-91d2f7" and event.occurred_at == AT
    assert Names().outbound(event.type, event.patient_id) == "im.alert.pk-91d2f7.alert.acknowledged"
    actions = [a for a, _, _ in audited]
    assert actions == ["login", "acknowledge"]
    details = audited[1][2]
    assert details["alert_id"] == alert_id and details["rule"] == "R7" and details["event_id"] == event.event_id
    # the same user acknowledging again: the same deterministic event id (the stream drops the repeat)
    again = await client.post(f"/alerts/{alert_id}/ack", data={"csrf": csrf}, headers=ORIGIN)
    assert again.status_code == 303 and published[1].event_id == event.event_id


async def test_acknowledge_needs_csrf_and_the_same_origin(board):
    client, published, _, _, _ = board
    csrf = await _login(client)
    alert_id = _critical_alert_id((await client.get("/")).text)
    assert (await client.post(f"/alerts/{alert_id}/ack", headers=ORIGIN)).status_code == 403
    assert (await client.post(f"/alerts/{alert_id}/ack", data={"csrf": "forged"}, headers=ORIGIN)).status_code == 403
    evil = {"origin": "http://evil.example", "x-csrf-token": csrf}
    assert (await client.post(f"/alerts/{alert_id}/ack", headers=evil)).status_code == 403
    assert (await client.post("/alerts/al-unknown/ack", headers={**ORIGIN, "x-csrf-token": csrf})).status_code == 404
    assert published == []


async def test_timeline_and_day_view_are_audited(board):
    client, _, audited, _, _ = board
    await _login(client)
    timeline = await client.get("/sessions/pk-91d2f7/ses-20250303-N04-1")
    assert timeline.status_code == 200 and "Events and alerts in order" in timeline.text
    assert (await client.get("/sessions/pk-91d2f7/nope")).status_code == 404
    day = await client.get("/day?date=2025-03-03")
    assert day.status_code == 200 and "pump-N04" in day.text and "site-south" in day.text
    assert [(a, d) for a, _, d in audited[1:]] == [
        ("timeline_open", {"patient_id": "pk-91d2f7", "session_id": "ses-20250303-N04-1"}),
        ("day_view", {"date": "2025-03-03"})]


async def test_events_stream_starts_with_the_board(board):
    """(Following changes live is tested against the real service: tests/integration/test_board_*.)"""
    client, _, _, hub, _ = board
    await _login(client)
    hub.close()  # the stream ends after its first message (a transport in memory buffers the body)
    answer = await client.get("/events")
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.text.startswith("retry: 1500")
    html = _sse_html(answer.text.split("event: board", 1)[1])
    assert 'id="board-content"' in html and "pump-N04" in html and "{{csrf}}" not in html


async def test_security_headers_and_no_asset_from_elsewhere(board):
    client, *_ = board
    await _login(client)
    page = await client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    for asset in ("/static/board.css", "/static/board.js"):
        assert (await client.get(asset)).status_code == 200
    here = ROOT / "services" / "board"
    for path in [*here.glob("templates/*.html"), *here.glob("static/*")]:
        text = path.read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), path  # no CDN, no remote asset
        assert not re.search(r"https?://", text), path  # not even in a comment


async def test_proxy_mode_app(board):
    _, published, audited, hub, _ = board

    async def publish(event):
        published.append(event)

    async def audit(*a):
        audited.append(a)

    auth = Authenticator({"nurse.k": User("nurse.k", "nurse.k")}, b"s" * 32, trusted_header="X-Remote-User",
                         trusted_proxies=("127.0.0.1",))
    app = board_app(hub, auth, publish, audit)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 5000)), base_url="https://board")
    page = await client.get("/", headers={"x-remote-user": "nurse.k"})
    assert page.status_code == 200 and "nurse.k" in page.text and "Sign out" not in page.text
    assert (await client.get("/login")).status_code == 404
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    alert_id = _critical_alert_id(page.text)
    answer = await client.post(f"/alerts/{alert_id}/ack", headers={**ORIGIN, "x-remote-user": "nurse.k",
                                                                   "x-csrf-token": csrf, "accept": "application/json"})
    assert answer.status_code == 202 and published[-1].by == "nurse.k"
    outsider = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.9", 5000)), base_url="https://board")
    assert (await outsider.get("/", headers={"x-remote-user": "nurse.k", "accept": "text/html"})).status_code == 401
    unlisted = await client.get("/", headers={"x-remote-user": "mallory", "accept": "text/html"})
    assert unlisted.status_code == 401


async def test_a_foreign_host_is_refused_on_every_request(board):
    """Issue 14: a DNS-rebinding-shaped request (Host: the attacker's name, Origin the same)
    acknowledged an alert."""
    client, published, _, _, _ = board
    csrf = await _login(client)
    alert_id = _critical_alert_id((await client.get("/")).text)
    rebinding = {"host": "attacker.example", "origin": "https://attacker.example", "x-csrf-token": csrf,
                 "accept": "application/json"}
    for method, path in (("POST", f"/alerts/{alert_id}/ack"), ("GET", "/"), ("GET", "/healthz"), ("POST", "/login")):
        answer = await client.request(method, path, headers=rebinding)
        assert answer.status_code == 403, path
    assert published == []
    assert (await client.get("/", headers={"host": "localhost:8090"})).status_code == 200


async def test_sign_out_ends_the_session_on_the_server(board):
    """Issue 14: a cookie stayed valid after sign-out (12 h, no server-side session)."""
    client, _, audited, _, _ = board
    csrf = await _login(client)
    cookie = client.cookies[COOKIE]
    answer = await client.post("/logout", data={"csrf": csrf}, headers=ORIGIN)
    assert answer.status_code == 303 and audited[-1][0] == "logout"
    replayed = await client.get("/", headers={"accept": "text/html", "cookie": f"{COOKIE}={cookie}"})
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"


async def test_the_session_cookie_is_secure_httponly_samesite_and_random(board):
    client, *_ = board
    answer = await client.post("/login", data={"username": "anna", "password": "correct horse"}, headers=ORIGIN)
    cookie = answer.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "anna" not in answer.cookies[COOKIE] and len(answer.cookies[COOKIE]) >= 40


async def test_a_login_flood_gets_429_with_retry_after(board):
    client, _, audited, _, _ = board
    statuses = []
    for _ in range(7):
        answer = await client.post("/login", data={"username": "anna", "password": "guess"}, headers=ORIGIN)
        statuses.append(answer.status_code)
    assert statuses[:5] == [401] * 5 and statuses[5] == 429 and int(answer.headers["retry-after"]) >= 1
    assert "Too many attempts" in answer.text
    assert [a for a, _, _ in audited].count("login_throttled") == 2


async def test_a_pagers_link_leads_to_the_alerts_timeline(board):
    client, *_ = board
    await _login(client)
    alert_id = _critical_alert_id((await client.get("/")).text)
    answer = await client.get(f"/alerts/{alert_id}")
    assert answer.status_code == 303 and answer.headers["location"] == "/sessions/pk-91d2f7/ses-20250303-N04-1"
    assert (await client.get("/alerts/al-nope")).status_code == 404


async def test_the_page_shows_each_destination_s_delivery_state(board):
    """Issue 16: the tile's open alert says where its pages got (escaped like any text)."""
    from infusion_monitor.schemas.outbound import AlertDelivery
    from infusion_monitor.schemas.vocab import DeliveryState

    client, _, _, hub, _ = board
    await _login(client)
    alert_id = _critical_alert_id((await client.get("/")).text)
    for n, (dest, state, by) in enumerate([("pd1", "sent", None), ("acm", "accepted", "<nurse-7>")]):
        hub.apply(AlertDelivery(type="alert.delivery", event_id=f"dl-{n}", occurred_at=AT, patient_id="pk-91d2f7",
                                alert_id=alert_id, destination=dest, state=DeliveryState(state), by=by))
    hub.publish_change()
    html = (await client.get("/")).text
    assert '<p class="deliveries"><span class="label">Paged:</span> acm accepted by &lt;nurse-7&gt;; pd1 sent</p>' in html
