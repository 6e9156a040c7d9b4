"""The board in a real headless Chromium (Selenium) against the running services and a real
nats-server (issue #9): the monitor, the paging bridge and the board as child processes.

A chair in its second hour appears when its events are published; an R7 reading shows as a
critical alert within the functional deadline without a reload; the nurse acknowledges it from the
keyboard, the board shows who did, and the bridge relays the acknowledgement and never escalates;
the session closes with its outcome; the board service restarts and the open page recovers by
itself. axe-core (vendored) finds no serious or critical violation on any page. The screenshots
of docs/board/ are taken here: into a temporary folder, or into docs/board/ with
``python3 run.py screenshots`` (see docs/board.md).

Skips only when chromium/chromedriver are genuinely absent (``apt-get install -y chromium
chromium-driver``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infusion_monitor.board.auth import hash_password
from tests.board.browser import browser, serious  # noqa: F401  (the fixture)
from tests.board.live import LoopThread, board_process, pager_process, wait_http
from tests.integration.live import MonitorProcess, connect, publish, stream_messages
from tests.pager.receiver import Receiver, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 5.0  # functional deadline for "on the page within a second" (measured time is printed)
P = "pk-7f3a91"
SESSION = "ses-live-N04"
ESCALATE_AFTER_S = 15  # the bridge would page the backup this long after the alert, unless acknowledged
CLOSE_AFTER_S = 40  # the session's window ends this long after the test publishes it

ROUTES = """
[destinations.clinician]
adapter = "webhook"
url = "{base}/clinician"
[destinations.backup]
adapter = "webhook"
url = "{base}/backup"

[[routes]]
name = "emergency"
severities = ["critical", "high"]
  [[routes.tiers]]
  destinations = ["clinician"]
  escalate_after = "{escalate}s"
  [[routes.tiers]]
  destinations = ["backup"]
[[routes]]
name = "record"
severities = ["medium", "low", "info"]
"""
# infusion 13+ without keep_observation: the window ends at t0 + 120 min (end + 0), so a test
# can see a close within a minute by starting the session 2 h ago; a long M1 gap, so the readings
# back-filled for those 2 h raise no gap alerts when they arrive late (the board reads the same file)
MONITOR_TOML = "[monitor]\nkeep_observation = false\ngap_minutes = 300\n"


def _t(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _js(by_css: str) -> str:
    """The first element matching, read in one step as {text, phase, state} (tiles are swapped live:
    an element handle may go stale between two calls)."""
    return (f"const e = document.querySelector({json.dumps(by_css)});"
            "return e && {text: e.innerText, phase: e.dataset.phase || null, state: e.dataset.state || null};")


@pytest.fixture
def services(nats_server, tmp_path):
    loop = LoopThread()
    receiver = Receiver()
    loop.run(receiver.start())
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES.replace("{base}", receiver.base).replace("{escalate}", str(ESCALATE_AFTER_S)))
    config = tmp_path / "monitor.toml"
    config.write_text(MONITOR_TOML)
    users = tmp_path / "users.toml"
    users.write_text(f'[users.anna]\nname = "Anna K., RN"\npassword = "{hash_password("night shift")}"\n')
    env = {"INFUSION_MONITOR_CONFIG": str(config), "INFUSION_MONITOR_BOARD_SECRET": "s" * 64}
    port = free_port()
    monitor = MonitorProcess(nats_server.url, tmp_path / "monitor.log", env).start()
    pager = pager_process(nats_server.url, routes, tmp_path / "pager.log", env).start()
    board = board_process(nats_server.url, port, users, tmp_path / "data", tmp_path / "board.log", env).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", 60)
        nc, js = loop.run(connect(nats_server.url))
        yield {"loop": loop, "js": js, "nc": nc, "base": base, "receiver": receiver, "board": board,
               "restart_board": lambda: board_process(nats_server.url, port, users, tmp_path / "data",
                                                      tmp_path / "board2.log", env).start(),
               "tmp": tmp_path}
        loop.run(nc.close())
    finally:
        for proc in (board, pager):
            proc.stop()
        monitor.stop()
        loop.run(receiver.stop())
        loop.stop()


def _publish_all(services, events) -> None:
    async def go():
        for e in events:
            await publish(services["js"], e)
    services["loop"].run(go())


def _subjects(services, stream: str) -> list[tuple[str, dict]]:
    msgs = services["loop"].run(stream_messages(services["js"], stream))
    return [(m.subject, json.loads(m.data)) for m in msgs]


def test_a_nurse_runs_a_chair_from_the_board(services, browser):  # noqa: F811
    base, driver = services["base"], browser.driver
    browser.driver.get(f"{base}/login")
    browser.screenshot("board-login.png")
    assert not serious(browser.axe()), serious(browser.axe())
    browser.login(base, "anna", "night shift")
    browser.wait(lambda: driver.find_element("css selector", ".empty"), 10, what="an empty board")
    driver.execute_script("window.__noReload = true;")

    # a chair in its second hour: baseline, start 2 h ago (less CLOSE_AFTER_S), vitals every 20 min
    now = datetime.now(UTC)
    t0 = now - timedelta(minutes=120) + timedelta(seconds=CLOSE_AFTER_S)
    normal = {"systolic_mmhg": 122, "diastolic_mmhg": 76, "heart_rate_bpm": 70, "spo2_pct": 97,
              "respiratory_rate_bpm": 14, "temperature_c": 36.7}
    events = [{"type": "patient.profile", "event_id": "ehr-1", "occurred_at": _t(t0 - timedelta(hours=2)),
               "patient_id": P, "birth_date": "1984-06-12"},
              {"type": "vitals.recorded", "event_id": "mon-0", "occurred_at": _t(t0 - timedelta(minutes=5)),
               "patient_id": P, **normal},
              {"type": "infusion.started", "event_id": "pump-start", "occurred_at": _t(t0), "patient_id": P,
               "session_id": SESSION, "site_id": "site-north", "pump_id": "pump-N04", "infusion_number": 14}]
    events += [{"type": "vitals.recorded", "event_id": f"mon-{m}", "occurred_at": _t(t0 + timedelta(minutes=m)),
                "patient_id": P, "session_id": SESSION, **normal} for m in (20, 40, 60, 80, 100)]
    sent = time.monotonic()
    _publish_all(services, events)
    browser.wait(lambda: driver.execute_script(_js(f'.tile[data-session="{SESSION}"]')), DEADLINE_S,
                 what="the session's tile")
    print(f"\nsession published -> tile on the page: {(time.monotonic() - sent) * 1000:.0f} ms")
    tile = browser.wait(lambda: (t := driver.execute_script(_js(f'.tile[data-session="{SESSION}"]')))
                        and "BP 122/76" in t["text"] and t, 10, what="the tile with its last vitals")
    assert "pump-N04" in tile["text"] and P in tile["text"] and "infusion #14" in tile["text"]
    assert tile["phase"] == "infusing" and "elapsed" in tile["text"]

    # R7: systolic 82 -> a critical alert on the open page, no reload
    reading = {"type": "vitals.recorded", "event_id": "mon-r7", "occurred_at": _t(datetime.now(UTC)), "patient_id": P,
               "session_id": SESSION, "systolic_mmhg": 82, "spo2_pct": 93, "symptoms": ["flushing"]}
    sent = time.monotonic()
    _publish_all(services, [reading])
    alert = browser.wait(lambda: driver.execute_script(_js('.alert.sev-critical[data-state="open"]')), DEADLINE_S,
                         every=0.02, what="the critical alert")
    latency = time.monotonic() - sent
    print(f"R7 reading published -> critical alert on the page: {latency * 1000:.0f} ms")
    assert driver.execute_script("return window.__noReload === true;"), "the page reloaded"
    assert "CRITICAL" in alert["text"] and "R7" in alert["text"]
    assert "Stop the infusion" in alert["text"]
    browser.wait(lambda: "New critical alert R7 at pump-N04" in driver.find_element("id", "announcer").text, 3,
                 what="the screen-reader announcement")
    browser.screenshot("board-critical.png")
    violations = browser.axe()
    assert not serious(violations), serious(violations)

    # acknowledge from the keyboard: Tab to the button, Enter
    from selenium.webdriver.common.keys import Keys

    button = driver.find_element("css selector", '.alert.sev-critical button.ack')
    driver.execute_script("arguments[0].focus();", button)
    assert driver.switch_to.active_element == button
    clicked = time.monotonic()
    button.send_keys(Keys.ENTER)
    acked = browser.wait(lambda: driver.execute_script(_js(f'.tile[data-session="{SESSION}"] .alert-acked')), DEADLINE_S,
                         what="the acknowledged state")
    print(f"acknowledged -> shown on the page: {(time.monotonic() - clicked) * 1000:.0f} ms")
    assert "acknowledged by Anna K., RN" in acked["text"]
    assert not driver.execute_script(_js('.alert.sev-critical[data-state="open"]'))
    browser.screenshot("board-acknowledged.png")
    raised_at = datetime.fromisoformat(reading["occurred_at"].replace("Z", "+00:00"))

    # the bridge: the acknowledgement relayed to the clinician's webhook, no escalation to the backup
    receiver = services["receiver"]
    services["loop"].run(receiver.wait_for(2, timeout=15))
    actions = [(r.path, r.headers["x-im-event-action"]) for r in receiver.requests]
    assert actions[:2] == [("/clinician", "trigger"), ("/clinician", "acknowledge")]
    ack_subjects = [(s, e) for s, e in _subjects(services, "IM_ALERTS") if e["type"] == "alert.acknowledged"]
    assert len(ack_subjects) == 1 and ack_subjects[0][0] == f"im.alert.{P}.alert.acknowledged"
    assert ack_subjects[0][1]["via"] == "board" and ack_subjects[0][1]["by"] == "Anna K., RN"

    # the timeline of the session (opened from the tile's link, audited)
    driver.find_element("css selector", f'.tile[data-session="{SESSION}"] .tile-foot a').click()
    browser.wait(lambda: "Events and alerts in order" in driver.page_source, 10, what="the timeline")
    text = driver.find_element("css selector", "ol.timeline").text
    assert text.index("Infusion #14 started") < text.index("CRITICAL R7") < text.index("acknowledged by Anna K., RN")
    browser.screenshot("board-timeline.png")
    assert not serious(browser.axe())
    driver.find_element("link text", "Day view").click()
    browser.wait(lambda: "Day view:" in driver.page_source, 10, what="the day view")
    assert "pump-N04" in driver.page_source
    assert not serious(browser.axe())
    driver.find_element("link text", "Chairs").click()
    browser.wait(lambda: driver.execute_script(_js(f'.tile[data-session="{SESSION}"]')), 10, what="back on the board")
    driver.execute_script("window.__noReload = true;")

    # past the escalation time: still no escalation (the acknowledgement stopped it)
    wait_s = (raised_at + timedelta(seconds=ESCALATE_AFTER_S + 3) - datetime.now(UTC)).total_seconds()
    if wait_s > 0:
        time.sleep(wait_s)
    assert not [e for _, e in _subjects(services, "IM_ALERTS") if e["type"] == "alert.escalated"]
    assert "/backup" not in [r.path for r in receiver.requests]

    # the infusion ends; the window (t0 + 120 min) closes; the tile shows the outcome
    _publish_all(services, [{"type": "infusion.ended", "event_id": "pump-end", "occurred_at": _t(datetime.now(UTC)),
                             "patient_id": P, "session_id": SESSION, "outcome": "stopped"}])
    closed = browser.wait(lambda: driver.execute_script(_js(f'.tile[data-session="{SESSION}"][data-phase="closed"]')),
                          CLOSE_AFTER_S + 30, what="the closed session")
    assert "Outcome: hypersensitivity: discontinue" in closed["text"]
    assert driver.execute_script("return window.__noReload === true;")
    browser.screenshot("board-closed.png")

    # the board restarts: the page says so, reconnects by itself and reloads the state
    services["board"].stop()
    browser.wait(lambda: "conn-lost" in driver.find_element("id", "conn").get_attribute("class"), 15,
                 what="the lost connection shown")
    browser.screenshot("board-reconnecting.png")
    services["board"] = services["restart_board"]()
    wait_http(f"{services['base']}/healthz", 60)
    browser.wait(lambda: "conn-live" in driver.find_element("id", "conn").get_attribute("class"), 20,
                 what="the page reconnected")
    tile = browser.wait(lambda: driver.execute_script(_js(f'.tile[data-session="{SESSION}"][data-phase="closed"]')), 10,
                        what="the tile after the restart")
    assert "hypersensitivity: discontinue" in tile["text"] and "acknowledged by Anna K., RN" in tile["text"]
    assert driver.execute_script("return window.__noReload === true;"), "recovered without a reload"

    audit = [e for s, e in _subjects(services, "IM_AUDIT") if ".board." in s]
    assert {"board.login", "board.acknowledge", "board.timeline_open", "board.day_view"} <= {e["type"] for e in audit}
    assert all(e["user"] == "anna" for e in audit)


def test_the_clinic_day_on_a_wall_display(browser, tmp_path):  # noqa: F811
    """The bundled clinic day at 09:46 (a busy moment: every phase, a critical alert, vitals due soon) served by the board app in-process: the
    wall-display screenshot for the docs, keyboard order, and axe-core on a full board."""
    import uvicorn

    from infusion_monitor.board.app import board_app
    from infusion_monitor.board.auth import Authenticator, users_from_pairs
    from infusion_monitor.board.hub import BoardHub
    from infusion_monitor.board.projection import board_engine
    from infusion_monitor.engine.config import MonitorConfig
    from infusion_monitor.replay.offline import replay_lines

    config = MonitorConfig()
    moment = datetime.fromisoformat("2025-03-03T09:46:00+00:00")
    engine = board_engine(config)
    replay_lines((ROOT / "examples/clinic-day.jsonl").read_bytes().splitlines(), config, until=moment, engine=engine)
    port = free_port()
    started = threading.Event()
    holder: dict = {}

    def serve() -> None:
        async def main() -> None:
            hub = BoardHub(config, engine=engine, wall=lambda: moment, clock="event")
            hub.ready = True

            async def nothing(*_):
                return None

            app = board_app(hub, Authenticator(users_from_pairs([("anna", "Anna K., RN", "pw")]), b"k" * 32),
                            nothing, nothing)
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                   lifespan="off", timeout_graceful_shutdown=1))
            holder["server"], holder["hub"] = server, hub
            started.set()
            await server.serve()
        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", 20)
        browser.driver.set_window_size(1920, 1080)
        browser.login(base, "anna", "pw")
        driver = browser.driver
        expected = len(holder["hub"].board().tiles)
        browser.wait(lambda: len(driver.find_elements("css selector", ".tile")) == expected, 10, what="every chair")
        assert driver.find_elements("css selector", ".due-soon") and driver.find_elements("css selector", ".sev-critical")
        browser.screenshot("board-wall-display.png", full=True)
        violations = browser.axe()
        assert not serious(violations), serious(violations)
        # keyboard: the first Tab reaches the skip link, then every control in reading order
        from selenium.webdriver.common.keys import Keys

        body = driver.find_element("tag name", "body")
        body.send_keys(Keys.TAB)
        assert driver.switch_to.active_element.text == "Skip to content"
        focused = []
        for _ in range(12):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            focused.append(driver.switch_to.active_element.text.split("\n")[0])
        assert "Acknowledge" in focused and "Timeline" in focused
        driver.get(f"{base}/day")
        browser.screenshot("board-day.png", full=True)
        assert not serious(browser.axe())
        driver.get(f"{base}/sessions/pk-91d2f7/ses-20250303-N04-1")
        assert not serious(browser.axe())
    finally:
        holder["hub"].close()
        holder["server"].should_exit = True
        thread.join(15)
