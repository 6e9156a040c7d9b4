"""Files only their owner may read: credentials, tokens, signing keys (architecture rule 9)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


class NotPrivate(ValueError):
    """A secret file that group or others may read."""


def write_private(path: str | Path, text: str) -> Path:
    """Write (or replace) ``path`` with mode 0600 from the start, its directory 0700 when created.
    A reader sees the old file or the new one, never a part: the text goes to a temporary file of
    its own (created 0600, whatever was there before), flushed to disk, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """An exclusive lock for a read-change-write of ``path`` (``path.lock`` beside it, 0600): two
    writers take turns, and neither writes back a copy read before the other's change."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_private(path: str | Path) -> str:
    """The text of a secret file; refused when group or others may read or write it."""
    path = Path(path)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise NotPrivate(f"{path} is readable by others: chmod 600 {path}")
    return path.read_text()
