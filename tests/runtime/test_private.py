"""Secret files (``runtime/private.py``): written 0600 whatever was there, and replaced whole, so a
running reader (the board re-reads its users file while ``board add-user`` writes it) sees the old
text or the new one, never a part or a mix of two writers."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time

import pytest

from infusion_monitor.runtime.private import NotPrivate, locked, read_private, write_private


def test_written_private_even_over_a_leftover_temporary_file(tmp_path):
    path = tmp_path / "secrets" / "users.toml"
    path.parent.mkdir(mode=0o700)
    leftover = path.with_name(path.name + ".tmp")  # the old fixed temporary name, world-readable
    leftover.write_text("old")
    os.chmod(leftover, 0o644)
    write_private(path, "new")
    assert read_private(path) == "new" and os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_world_readable_secret_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("x")
    os.chmod(path, 0o644)
    with pytest.raises(NotPrivate):
        read_private(path)


def _write_many(path: str, text: str) -> None:  # in a process of its own
    for _ in range(300):
        write_private(path, text)


def test_readers_see_one_whole_version_while_two_writers_race(tmp_path):
    """Two writer processes and a reader: with one fixed temporary name, a second writer truncated
    the file the first had just renamed into place, and readers saw parts and mixes."""
    path = tmp_path / "users.toml"
    versions = {name: name * 200_000 for name in "ab"}  # large enough to take several writes each
    write_private(path, versions["a"])
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(path), text)) for text in versions.values()]
    for w in writers:
        w.start()
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while any(w.is_alive() for w in writers) and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            seen.add(path.read_text())
    for w in writers:
        w.join(timeout=30)
    assert [w.exitcode for w in writers] == [0, 0]
    assert seen <= set(versions.values()) and seen


def test_the_lock_makes_read_change_write_take_turns(tmp_path):
    path = tmp_path / "counter"
    write_private(path, "0")

    def add_one() -> None:
        for _ in range(50):
            with locked(path):
                write_private(path, str(int(path.read_text()) + 1))

    threads = [threading.Thread(target=add_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert path.read_text() == "200"
