"""Headless Chromium from the distribution's packages, driven by Selenium (no browser download).

``chromium_or_skip()`` gives a driver or skips the test with the reason when chromium or its
driver is genuinely absent (CI installs them: ``apt-get install -y chromium chromium-driver``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("INFUSION_MONITOR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("INFUSION_MONITOR_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--force-device-scale-factor=1")
AXE = Path(__file__).resolve().parent / "assets" / "axe.min.js"
SCREENSHOTS_ENV = "INFUSION_MONITOR_SCREENSHOTS"


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests write their screenshots: ``$INFUSION_MONITOR_SCREENSHOTS`` when set
    (``python3 run.py screenshots`` sets it to ``docs/board`` to regenerate the documentation's
    pictures), else a temporary folder: running the suite never changes a tracked file."""
    configured = os.environ.get(SCREENSHOTS_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("board-screenshots")


def chromium_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not installed (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed"
    return None


class Browser:
    """One headless Chromium with a fresh profile; ``quit()`` removes the profile."""

    def __init__(self, shots: Path, width: int = 1600, height: int = 1000) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything
        self.shots = shots
        self.profile = tempfile.mkdtemp(prefix="im-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(60)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------

    def wait(self, predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.05, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:  # stale elements while the page swaps a tile
                last_error = exc
            time.sleep(every)
        raise TimeoutError(f"browser: {what or 'condition'} not met within {timeout} s (last error: {last_error!r})")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def login(self, base: str, username: str, password: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{base}/login")
        self.driver.find_element(By.ID, "username").send_keys(username)
        self.driver.find_element(By.ID, "password").send_keys(password)
        self.driver.find_element(By.ID, "sign-in").click()
        self.wait(lambda: self.driver.current_url.rstrip("/") == base.rstrip("/"), 15, what="signed in")

    def axe(self) -> list[dict[str, Any]]:
        """axe-core (vendored, injected from the test's own copy) on the current page: violations."""
        self.driver.execute_script(AXE.read_text(encoding="utf-8"))
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(JSON.stringify(r.violations)))"
            ".catch(e => done(JSON.stringify([{id: 'axe-error', impact: 'critical', description: String(e), nodes: []}])));")
        return json.loads(result)

    def screenshot(self, name: str, full: bool = False) -> Path:
        """A PNG into ``screenshot_dir()`` (``full``: the whole page height, as a tall wall display
        shows it)."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / name
        size = self.driver.get_window_size()
        if full:
            height = self.driver.execute_script("return document.documentElement.scrollHeight;")
            self.driver.set_window_size(size["width"], min(int(height) + 160, 4000))
        try:
            self.driver.save_screenshot(str(path))
        finally:
            if full:
                self.driver.set_window_size(size["width"], size["height"])
        return path


def serious(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']} ({v.get('impact')}): {v.get('description')} -> "
            + "; ".join(n.get("target", [""])[0] if isinstance(n.get("target"), list) else str(n) for n in v.get("nodes", [])[:3])
            for v in violations if v.get("impact") in ("serious", "critical")]


@pytest.fixture
def browser(tmp_path_factory):
    reason = chromium_missing()
    if reason:
        pytest.skip(f"browser test needs headless Chromium: {reason}")
    b = Browser(screenshot_dir(tmp_path_factory))
    try:
        yield b
    finally:
        b.quit()
