"""Give every NATS user of deploy/nats/*.conf a new random password (bcrypt-hashed in the configs).

    pip install bcrypt
    python deploy/nats/set_passwords.py --env-out /etc/infusion-monitor/nats.env \\
        deploy/nats/accounts.conf deploy/nats/cluster-node1.conf deploy/nats/cluster-node2.conf \\
        deploy/nats/cluster-node3.conf

Rewrites each ``PW_<USER>: "<bcrypt hash>"`` line in the given files (the same hash in every
file, so the cluster nodes agree) and writes the plain passwords, one ``IM_NATS_<USER>_PASSWORD=``
line each, to ``--env-out`` (created with mode 0600; keep it out of version control). Passwords
are URL-safe (``secrets.token_urlsafe``) so they can sit in ``nats://user:pass@host`` URLs.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--env-out", type=Path, required=True, help="where the plain passwords go (mode 0600)")
    parser.add_argument("--users", help="comma-separated users to rotate (default: all)")
    args = parser.parse_args(argv)
    try:
        import bcrypt
    except ImportError:
        print("set_passwords: needs the bcrypt package (pip install bcrypt)", file=sys.stderr)
        return 2
    texts = {path: path.read_text() for path in args.configs}
    users = sorted({m for text in texts.values() for m in re.findall(r'^PW_([A-Z0-9_]+): ".*"$', text, flags=re.M)})
    if args.users:
        wanted = {u.strip().upper() for u in args.users.split(",")}
        unknown = wanted - set(users)
        if unknown:
            print(f"set_passwords: no such user(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        users = sorted(wanted)
    lines = []
    for user in users:
        password = secrets.token_urlsafe(32)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(COST)).decode()
        for path in texts:
            texts[path] = re.sub(rf'^PW_{user}: ".*"$', f'PW_{user}: "{hashed}"', texts[path], flags=re.M)
        lines.append(f"IM_NATS_{user}_PASSWORD={password}\n")
    fd = os.open(args.env_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(lines)
    for path, text in texts.items():
        path.write_text(text)
    print(f"set_passwords: new passwords for {', '.join(u.lower() for u in users)}; "
          f"hashes in {len(texts)} file(s), passwords in {args.env_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
