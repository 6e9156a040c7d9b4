"""``infusion-monitor board add-user NAME [--role nurse|viewer] [--name "Display name"]``: add a
board user (or give an existing one a new password) in the users file the board reads, mode 0600.

The password is asked twice on a terminal (never echoed); from a pipe or a file it is the first
line of standard input (scripts, tests): ``printf '%s\\n' "$PASSWORD" | infusion-monitor board
add-user anna``. Only its scrypt hash is written. A board that is running re-reads the file, so the
user can sign in at once (``services/board/users.py``)."""

from __future__ import annotations

import getpass
import sys
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..board.auth import NURSE, USERNAME, User, hash_password, load_users
from ..board.config import users_path
from ..board.users import with_user, write_users
from ..runtime.private import locked
from ..runtime.settings import Settings

MIN_PASSWORD = 8


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password of at least {MIN_PASSWORD} characters is needed"
    if password != password.strip():
        return "the password starts or ends with a space"
    return None


def read_new_password(stdin: TextIO, ask: Callable[[str], str] = getpass.getpass) -> str:
    """The new password: asked twice on a terminal, else the first line of ``stdin``. Raises
    ``ValueError`` with the reason when it is refused."""
    if stdin.isatty():
        password = ask("New password: ")
        if password != ask("The same password again: "):
            raise ValueError("the two passwords differ")
    else:
        password = stdin.readline().rstrip("\r\n")
    if problem := password_problem(password):
        raise ValueError(problem)
    return password


def users_file(args: Namespace, settings: Settings) -> Path:
    return Path(args.users) if getattr(args, "users", None) else users_path(args.data_dir or settings.data_dir)


def run_add_user(args: Namespace, settings: Settings, stdin: TextIO = sys.stdin,
                 ask: Callable[[str], str] = getpass.getpass) -> int:
    if not USERNAME.fullmatch(args.username):
        print("infusion-monitor board add-user: user names use A-Z a-z 0-9 _ . @ - (64 at most)", file=sys.stderr)
        return 2
    path = users_file(args, settings)
    try:  # the password first: nothing is read or locked while a person types
        password = read_new_password(stdin, ask)
    except ValueError as exc:
        print(f"infusion-monitor board add-user: {exc}; nothing changed", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\ninfusion-monitor board add-user: no password given; nothing changed", file=sys.stderr)
        return 2
    hashed = hash_password(password)
    with locked(path):  # read, change and write under one lock: a concurrent add-user is never lost
        try:
            users = load_users(path) if path.exists() else {}
        except (OSError, ValueError) as exc:
            print(f"infusion-monitor board add-user: {path} cannot be read: {exc}; nothing changed", file=sys.stderr)
            return 1
        before = users.get(args.username)
        user = User(args.username, args.display_name or (before.name if before else args.username), hashed,
                    args.role or (before.role if before else NURSE))
        write_users(path, with_user(users, user))
    what = "new password for" if before else "added"
    print(f"{what} board user {user.username} ({user.name}, role {user.role}) in {path} (mode 0600); "
          "a running board reads it at the next sign-in")
    return 0
