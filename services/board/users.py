"""The board's users file on disk: written by ``infusion-monitor board add-user`` (mode 0600),
re-read by a running board when it changes, so a user added while ``up`` runs can sign in at
once, and a user removed is signed out at their next request.

A file that cannot be read or parsed while the board runs keeps the users it last read (logged
once per change, naming the file, never a hash); a file that is gone means no users.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..runtime.private import write_private
from .auth import NURSE, User, load_users

HEADER = ("# The board's users (infusion-monitor board add-user NAME [--role nurse|viewer] writes this file).\n"
          "# password: an scrypt hash, never the password; role: nurse (sees and acknowledges) or viewer (sees only).\n"
          "# A running board re-reads this file when it changes.\n")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: any character but the quote, the backslash and the control
    characters as itself (JSON's escapes would write a character beyond U+FFFF as a surrogate pair,
    which TOML refuses: a display name with one would leave the board without users)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_users(users: dict[str, User]) -> str:
    """The users file's text (TOML)."""
    out = [HEADER]
    for username in sorted(users):
        user = users[username]
        out.append(f"[users.{toml_string(username)}]")
        out.append(f"name = {toml_string(user.name)}")
        if user.password:
            out.append(f"password = {toml_string(user.password)}")
        if user.role != NURSE:
            out.append(f"role = {toml_string(user.role)}")
        out.append("")
    return "\n".join(out)


def with_user(users: dict[str, User], user: User) -> dict[str, User]:
    """``users`` with ``user`` added, or replacing the entry of the same name."""
    return {**users, user.username: user}


def write_users(path: Path, users: dict[str, User]) -> Path:
    return write_private(path, render_users(users))


class UsersFile:
    """The users of ``path`` as they are now: re-read when the file's identity, size or time
    changes. ``current()`` is what ``Authenticator.reload`` calls on every sign-in and request."""

    def __init__(self, path: str | Path, log: Any = None) -> None:
        self.path = Path(path)
        self.log = log
        self._seen: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}
        self._failed_at: tuple[int, int, int] | None = None

    def current(self) -> dict[str, User]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._users = None, {}
            return self._users
        except OSError:
            return self._users
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._seen or stamp == self._failed_at:
            return self._users
        try:
            users = load_users(self.path)
        except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
            self._failed_at = stamp
            if self.log is not None:
                self.log.error("board users file not usable; keeping the users read before", path=str(self.path),
                               error=str(exc) if isinstance(exc, ValueError) else type(exc).__name__)
            return self._users
        self._seen, self._users, self._failed_at = stamp, users, None
        return self._users
