"""The board's browser tests write their screenshots to a temporary folder, so running the
suite never modifies a tracked file; ``python3 run.py screenshots`` regenerates docs/board/
(issue 17, point 8)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.board.browser import SCREENSHOTS_ENV, screenshot_dir

ROOT = Path(__file__).resolve().parents[2]


def test_screenshots_go_to_a_temporary_folder_outside_the_repository(tmp_path_factory, monkeypatch):
    monkeypatch.delenv(SCREENSHOTS_ENV, raising=False)
    where = screenshot_dir(tmp_path_factory).resolve()
    assert not where.is_relative_to(ROOT.resolve())


def test_the_documented_command_writes_them_into_docs_board(tmp_path_factory, monkeypatch):
    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    run_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_py)  # type: ignore[union-attr]
    command, env = run_py.screenshots_command([])
    assert Path(env[SCREENSHOTS_ENV]) == ROOT / "docs" / "board"
    assert (ROOT / run_py.BROWSER_TESTS).is_file() and run_py.BROWSER_TESTS in command
    monkeypatch.setenv(SCREENSHOTS_ENV, env[SCREENSHOTS_ENV])
    assert screenshot_dir(tmp_path_factory) == ROOT / "docs" / "board"
