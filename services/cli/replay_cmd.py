"""``infusion-monitor replay``: offline by default, ``--online`` through NATS."""

from __future__ import annotations

import sys
from argparse import Namespace

from ..replay.offline import replay_file
from ..runtime.settings import Settings


def run_replay(args: Namespace, settings: Settings) -> int:
    try:
        stream = args.log.open("rb")
    except OSError as exc:
        print(f"infusion-monitor replay: cannot read {args.log}: {exc.strerror}", file=sys.stderr)
        return 1
    with stream:
        if args.board_at is not None:
            from ..board.replay import render_board_at

            print(render_board_at(stream, settings.monitor, args.board_at), end="")
            return 0
        if args.online:
            from ..replay.online import replay_online

            result = replay_online(stream, settings, until=args.until, nats_url=args.nats)
        else:
            engine = None
            if args.pager:
                from ..pager import load_routes, pager_engine

                routes = load_routes(args.pager)
                engine = lambda: pager_engine(settings.monitor, routes)  # noqa: E731 (made again if a line is set aside)
            result = replay_file(stream, settings.monitor, until=args.until, engine=engine)
    for report in result.reports:
        print(report, file=sys.stderr)
    out = args.out.open("w", encoding="utf-8", newline="\n") if args.out else sys.stdout
    try:
        out.writelines(result.jsonl())
    finally:
        if args.out:
            out.close()
    return 0
