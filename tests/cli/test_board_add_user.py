"""``infusion-monitor board add-user`` (issue 17, part B point 3): the password asked twice on a
terminal or read from a pipe, refused when short or mistyped; the users file it writes (mode 0600,
hashes only) reads back as written, and a running board's ``UsersFile`` picks up a change."""

from __future__ import annotations

import io
import os
from argparse import Namespace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infusion_monitor.board.auth import NURSE, ROLES, User, hash_password, load_users, verify_password
from infusion_monitor.board.users import UsersFile, render_users, write_users
from infusion_monitor.cli.board_cmd import read_new_password, run_add_user
from infusion_monitor.runtime.settings import Settings

HASH = hash_password("a-fixed-password")  # scrypt is slow: one hash for the properties


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _asks(*answers: str):
    queue = list(answers)
    return lambda _prompt: queue.pop(0)


@pytest.mark.parametrize(("stdin", "answers", "outcome"), [
    (io.StringIO("long enough pw\n"), (), "long enough pw"),          # a pipe: its first line
    (io.StringIO("long enough pw\r\nsecond\n"), (), "long enough pw"),
    (Terminal(), ("long enough pw", "long enough pw"), "long enough pw"),  # a terminal: asked twice
    (Terminal(), ("long enough pw", "long enough pX"), "the two passwords differ"),
    (io.StringIO("short\n"), (), "at least 8"),
    (io.StringIO(""), (), "at least 8"),                                # nothing given
    (io.StringIO(" padded pw \n"), (), "starts or ends with a space"),
])
def test_the_new_password(stdin, answers, outcome):
    try:
        assert read_new_password(stdin, _asks(*answers)) == outcome
    except ValueError as exc:
        assert outcome in str(exc)


def _args(tmp_path: Path, username: str, **changes) -> Namespace:
    return Namespace(**{"username": username, "role": None, "display_name": None, "data_dir": tmp_path, "users": None,
                        **changes})


def test_add_user_writes_a_private_file_and_a_new_password_keeps_name_and_role(tmp_path, capsys):
    settings_ = Settings.load()
    assert run_add_user(_args(tmp_path, "anna", display_name="Anna K., RN"), settings_,
                        io.StringIO("first password\n")) == 0
    path = tmp_path / "board" / "users.toml"
    assert os.stat(path).st_mode & 0o777 == 0o600 and "first password" not in path.read_text()
    assert run_add_user(_args(tmp_path, "wall", role="viewer"), settings_, io.StringIO("wall password\n")) == 0
    assert run_add_user(_args(tmp_path, "anna"), settings_, io.StringIO("second password\n")) == 0
    users = load_users(path)
    assert (users["anna"].name, users["anna"].role) == ("Anna K., RN", NURSE)
    assert verify_password("second password", users["anna"].password)
    assert not verify_password("first password", users["anna"].password)
    assert users["wall"].role == "viewer"
    assert run_add_user(_args(tmp_path, "bad name"), settings_, io.StringIO("whatever pw\n")) == 2
    assert run_add_user(_args(tmp_path, "anna"), settings_, io.StringIO("short\n")) == 2  # nothing changed
    assert verify_password("second password", load_users(path)["anna"].password)
    assert "second password" not in capsys.readouterr().out


usernames = st.from_regex(r"[A-Za-z0-9_.@-]{1,64}", fullmatch=True)
display = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)  # emoji, quotes, controls


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(usernames, st.tuples(display, st.sampled_from(sorted(ROLES))), min_size=1, max_size=6))
def test_the_users_file_reads_back_as_written(tmp_path_factory, entries):
    users = {name: User(name, shown, HASH, role) for name, (shown, role) in entries.items()}
    path = tmp_path_factory.mktemp("users") / "users.toml"
    write_users(path, users)
    assert load_users(path) == users
    assert render_users(users).count("scrypt$") == len(users)


def test_a_running_board_sees_a_changed_file_and_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "users.toml"
    seen = UsersFile(path)
    assert seen.current() == {}
    write_users(path, {"anna": User("anna", "Anna", HASH, NURSE)})
    assert set(seen.current()) == {"anna"}
    write_users(path, {"anna": User("anna", "Anna", HASH, NURSE), "ben": User("ben", "Ben", HASH, NURSE)})
    assert set(seen.current()) == {"anna", "ben"}
    path.write_text("[users.anna\nbroken")  # a half-written edit: the users read before stay
    assert set(seen.current()) == {"anna", "ben"}
    path.unlink()  # no file: nobody
    assert seen.current() == {}


def test_two_add_users_at_once_both_land(tmp_path):
    """Each reads, changes and writes the file under one lock: the second never writes back a copy
    read before the first one's change (before, the later writer silently dropped the other user)."""
    import subprocess
    import sys

    env = {**os.environ, "INFUSION_MONITOR_DATA_DIR": str(tmp_path)}
    names = [f"nurse{i}" for i in range(6)]
    running = [subprocess.Popen([sys.executable, "-m", "infusion_monitor.cli.main", "board", "add-user", name],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
               for name in names]
    for process in running:  # every one waits for its password, then all go at once
        process.stdin.write(b"long enough pw\n")
        process.stdin.close()
    assert [p.wait(timeout=120) for p in running] == [0] * len(names)
    assert sorted(load_users(tmp_path / "board" / "users.toml")) == names
