"""``infusion-monitor replay``: offline by default, ``--online`` through NATS.

Standard output carries the outputs as JSON lines and nothing else: reports and logs (warnings
and errors only) go to standard error, so ``replay --online > out.jsonl`` is byte-identical to
the offline replay. SIGINT or SIGTERM stops an online replay at once: its monitor, connection
and embedded server are stopped and its temporary store removed; exit code 128 + the signal."""

from __future__ import annotations

import asyncio
import logging
import sys
from argparse import Namespace

from ..replay.offline import ReplayResult, replay_file
from ..runtime.logs import configure
from ..runtime.settings import Settings
from ..runtime.stopping import StopSignals, until_stopped


def run_replay(args: Namespace, settings: Settings) -> int:
    configure(settings.log_format, level=logging.WARNING)
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
            result, code = asyncio.run(_online(list(stream), settings, args))
            if result is None:
                print("infusion-monitor replay: stopped", file=sys.stderr)
                return code
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


async def _online(lines: list[bytes], settings: Settings, args: Namespace) -> tuple[ReplayResult | None, int]:
    from ..replay.online import replay_online_async

    with StopSignals(announce=None) as stop:
        result = await until_stopped(replay_online_async(lines, settings, args.until, args.nats or settings.nats_url), stop)
        return result, stop.exit_code
