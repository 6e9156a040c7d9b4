"""Files only their owner may read: credentials, tokens, signing keys (architecture rule 9)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotPrivate(ValueError):
    """A secret file that group or others may read."""


def write_private(path: str | Path, text: str) -> Path:
    """Write (or replace) ``path`` with mode 0600 from the start, its directory 0700 when created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


def read_private(path: str | Path) -> str:
    """The text of a secret file; refused when group or others may read or write it."""
    path = Path(path)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise NotPrivate(f"{path} is readable by others: chmod 600 {path}")
    return path.read_text()
