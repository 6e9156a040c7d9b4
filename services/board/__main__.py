"""``python -m infusion_monitor.board [run] [--nats URL] [--bind HOST:PORT] [--users FILE]`` runs the board;
``python -m infusion_monitor.board hash-password`` prints an scrypt hash for the users file (the password
is read from standard input, or asked for on a terminal);
``python -m infusion_monitor.board board-at LOG.jsonl TIMESTAMP`` prints the board at that moment of a log.
(The documented commands: ``infusion-monitor service board``, ``board add-user NAME`` (writes the
users file) and ``replay LOG --board-at T``.)"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from ..runtime.logs import configure
from ..runtime.settings import Settings
from .config import BoardConfig, add_board_arguments, apply_board_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infusion_monitor.board")
    parser.add_argument("command", nargs="?", choices=["run", "hash-password", "board-at"], default="run")
    parser.add_argument("args", nargs="*", help="board-at: LOG TIMESTAMP")
    parser.add_argument("--nats", help="NATS URL (default: $NATS_URL)")
    add_board_arguments(parser)
    args = parser.parse_args(argv)
    if args.command == "hash-password":
        from .auth import hash_password

        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not password:
            print("empty password", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    settings = Settings.load()
    if args.command == "board-at":
        from datetime import datetime

        from .replay import render_board_at

        if len(args.args) != 2:
            print("usage: python -m infusion_monitor.board board-at LOG.jsonl TIMESTAMP", file=sys.stderr)
            return 2
        lines = Path(args.args[0]).read_bytes().splitlines()
        print(render_board_at(lines, settings.monitor, datetime.fromisoformat(args.args[1].replace("Z", "+00:00"))), end="")
        return 0
    url = args.nats or settings.nats_url
    if not url:
        print("no NATS URL (--nats or NATS_URL)", file=sys.stderr)
        return 2
    configure(settings.log_format)
    from .service import run_board_service

    config = apply_board_arguments(BoardConfig.load(data_dir=settings.data_dir), args)
    return run_board_service(url, settings, config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
