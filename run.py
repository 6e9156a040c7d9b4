#!/usr/bin/env python3
"""Two commands on a fresh machine with only Python 3.11+:

    python3 run.py demo     # the bundled clinic day through an embedded NATS server
    python3 run.py test     # the whole test suite (what CI runs)
    python3 run.py bench    # the benchmarks (docs/performance.md), about fifteen minutes
    python3 run.py screenshots   # regenerate docs/board/*.png (the board's browser tests)

Creates ``.venv`` beside this file on first use and installs the project into it (again when
``pyproject.toml`` changes). Any other arguments are passed to ``infusion-monitor``:
``python3 run.py replay examples/clinic-day.jsonl``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit("infusion-monitor needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing infusion-monitor and its test tools ...", flush=True)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", f"{ROOT}[test]"],
        check=True,
    )
    STAMP.write_text(wanted)


def ensure_browser() -> None:
    """The board's browser tests drive Debian's Chromium (no browser download works here)."""
    if Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists():
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        print("note: chromium and chromium-driver are not installed; the browser tests will skip "
              "(as root on Debian: apt-get install -y chromium chromium-driver)", flush=True)
        return
    print("installing chromium and chromium-driver for the browser tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-qq"], check=True, env=env)
    subprocess.run([apt, "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


SCREENSHOTS = ROOT / "docs" / "board"
BROWSER_TESTS = "tests/integration/test_board_browser.py"


def screenshots_command(extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """The board's browser tests, writing their screenshots into docs/board/ (the suite itself
    writes them to a temporary folder and never changes a tracked file)."""
    env = {**os.environ, "INFUSION_MONITOR_SCREENSHOTS": str(SCREENSHOTS)}
    return [str(BIN / "python"), "-m", "pytest", BROWSER_TESTS, "-q", *extra], env


def main(argv: list[str]) -> int:
    ensure_venv()
    if argv[:1] == ["test"]:
        ensure_browser()
        command = [str(BIN / "python"), "-m", "pytest", *argv[1:]]
    elif argv[:1] == ["screenshots"]:
        ensure_browser()
        command, env = screenshots_command(argv[1:])
        os.environ.update(env)
    elif argv[:1] == ["bench"]:
        command = [str(BIN / "python"), "-m", "bench", *argv[1:]]
    else:
        command = [str(BIN / "infusion-monitor"), *(argv or ["--help"])]
    os.chdir(ROOT)
    sys.stdout.flush()
    if os.name == "posix":  # become the command: Ctrl-C and SIGTERM reach it alone, nothing in between
        os.execv(command[0], command)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
