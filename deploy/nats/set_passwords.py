"""Give every NATS user of deploy/nats/*.conf a new random password (bcrypt-hashed in the configs).

    pip install bcrypt
    python deploy/nats/set_passwords.py --creds-dir /etc/infusion-monitor/credentials \\
        deploy/nats/accounts.conf deploy/nats/cluster-node1.conf deploy/nats/cluster-node2.conf \\
        deploy/nats/cluster-node3.conf

Rewrites each ``PW_<USER>: "<bcrypt hash>"`` line in the given files (the same hash in every
file, so the cluster nodes agree) and writes the plain passwords into ``--creds-dir`` as one
credentials file per user, ``<user>.creds`` (TOML ``user``/``password``, mode 0600, directory 0700;
what ``INFUSION_MONITOR_NATS_CREDENTIALS`` names for a service), and/or to ``--env-out`` as
``IM_NATS_<USER>_PASSWORD=`` lines (mode 0600). Keep both out of version control.
``--users monitor,pager`` rotates only those. bcrypt cost 11 (about 0.1 s per connect check).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

COST = 11
PASSWORD_LINE = r'^PW_{user}: ".*"$'  # one per user in every config (services/runtime/permissions.py)


def password_users(texts) -> list[str]:  # type: ignore[no-untyped-def]
    """The users (upper case, as in ``PW_<USER>``) whose password lines the configs hold."""
    pattern = PASSWORD_LINE.format(user="([A-Z0-9_]+)")
    return sorted({m for text in texts for m in re.findall(pattern, text, flags=re.M)})


def bcrypt_hash(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(COST)).decode()


def set_hash(text: str, user: str, hashed: str) -> str:
    """``text`` with ``user``'s password line holding ``hashed``."""
    return re.sub(PASSWORD_LINE.format(user=user), lambda _: f'PW_{user}: "{hashed}"', text, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--creds-dir", type=Path, help="one <user>.creds file per user goes here (mode 0600)")
    parser.add_argument("--env-out", type=Path, help="the plain passwords as an env file (mode 0600)")
    parser.add_argument("--users", help="comma-separated users to rotate (default: all)")
    args = parser.parse_args(argv)
    if args.creds_dir is None and args.env_out is None:
        parser.error("say where the new passwords go: --creds-dir and/or --env-out")
    try:
        import bcrypt  # noqa: F401 - checked here, used by bcrypt_hash
    except ImportError:
        print("set_passwords: needs the bcrypt package (pip install bcrypt)", file=sys.stderr)
        return 2
    texts = {path: path.read_text() for path in args.configs}
    users = password_users(texts.values())
    if args.users:
        wanted = {u.strip().upper() for u in args.users.split(",")}
        unknown = wanted - set(users)
        if unknown:
            print(f"set_passwords: no such user(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        users = sorted(wanted)
    lines = []
    passwords = {}
    for user in users:
        password = secrets.token_urlsafe(32)
        hashed = bcrypt_hash(password)
        for path in texts:
            texts[path] = set_hash(texts[path], user, hashed)
        lines.append(f"IM_NATS_{user}_PASSWORD={password}\n")
        passwords[user.lower()] = password
    if args.env_out is not None:
        _private(args.env_out, "".join(lines))
    if args.creds_dir is not None:
        args.creds_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for user, password in passwords.items():
            _private(args.creds_dir / f"{user}.creds", f'# NATS credentials of user "{user}" (infusion-monitor); '
                                                       f'keep mode 0600\nuser = "{user}"\npassword = "{password}"\n')
    for path, text in texts.items():
        path.write_text(text)
    where = " and ".join(str(p) for p in (args.creds_dir, args.env_out) if p is not None)
    print(f"set_passwords: new passwords for {', '.join(u.lower() for u in users)}; "
          f"hashes in {len(texts)} file(s), passwords in {where}")
    return 0


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    raise SystemExit(main())
