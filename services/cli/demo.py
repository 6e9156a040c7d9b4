"""``infusion-monitor demo``: the bundled clinic day through an embedded NATS server and the
live monitor (event-time clock), alerts printed as they arrive, then a summary table; the board
stays up after the replay until Ctrl-C or SIGTERM.

Stopping: the first SIGINT/SIGTERM stops the demo at once and cleanly (the replay is cancelled,
the board, the monitor and the embedded server are stopped, its temporary store removed); a
second one exits immediately. The embedded server dies with the demo whatever kills it
(``runtime.children``; signals: ``runtime.stopping``). It has ``up``'s authenticated layout
(``up.launch_embedded``): no anonymous access; the replay publishes and drives time as the admin,
the monitor and the board run as their own users, with credentials files in the temporary folder.
Exit code 0 when the demo is stopped after its replay (the way it ends), 128 + the signal number
when it is stopped during the replay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from argparse import Namespace
from collections import Counter
from pathlib import Path

from infusion_monitor.schemas.base import OutboundEvent

from ..replay.offline import ReplayResult
from ..replay.online import replay_online_async
from ..replay.pacing import expected_seconds, pacer
from ..runtime.logs import configure
from ..runtime.stopping import StopSignals, until_stopped
from ..runtime.settings import Settings

CLINIC_DAY = Path(__file__).resolve().parents[2] / "examples" / "clinic-day.jsonl"
SEVERITY_ORDER = ["critical", "high", "medium", "low", "info"]


def _alert_line(event: OutboundEvent) -> str:
    when = event.occurred_at.strftime("%Y-%m-%d %H:%M")
    marker = {"critical": "!!!", "high": "!! ", "medium": "!  "}.get(event.severity.value, "   ")
    return f"{when}  {marker} {event.severity.value.upper():<8} {event.rule.value:<4} {event.patient_id:<10} {event.summary}"


def summary(result: ReplayResult) -> str:
    outputs = result.sorted_outputs()
    alerts = [e for e in outputs if e.type == "alert.raised"]
    closed = [e for e in outputs if e.type == "session.closed"]
    lines = ["", "Sessions", f"  {'closed at':<17} {'patient':<10} {'session':<22} outcome"]
    for event in closed:
        lines.append(f"  {event.occurred_at.strftime('%Y-%m-%d %H:%M'):<17} {event.patient_id:<10} "
                     f"{event.session_id:<22} {event.outcome}")
    by_severity = Counter(a.severity.value for a in alerts)
    by_rule = Counter(a.rule.value for a in alerts)
    lines += ["", "Alerts by severity: " + ", ".join(f"{s} {by_severity[s]}" for s in SEVERITY_ORDER if by_severity[s]),
              "Alerts by rule:     " + ", ".join(f"{r} {n}" for r, n in sorted(by_rule.items())),
              f"Events replayed: {result.events}; sessions closed: {len(closed)}; alerts: {len(alerts)}"]
    if result.reports:
        lines.append(f"Input problems reported: {len(result.reports)}")
    return "\n".join(lines)


def _open_browser(url: str) -> None:
    """Only for someone at a terminal with a desktop (never a text browser in the terminal)."""
    desktop = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not (desktop and sys.stdout.isatty()):
        return
    import webbrowser

    try:
        webbrowser.open(url)
    except Exception:  # noqa: BLE001 - no browser is fine: the URL is printed
        pass


async def _demo(lines: list[bytes], settings: Settings, pace, show, board: bool) -> int:
    """The replay through an embedded server, with the live board on the same namespace; the
    board stays up after the replay until a signal."""
    import secrets
    import tempfile
    import uuid

    from ..board.auth import Authenticator, users_from_pairs
    from ..board.config import BoardConfig
    from ..board.service import start_board
    from ..runtime.names import Names
    from .up import launch_embedded, provision_embedded

    stop = StopSignals()
    names = Names(ns=f"demo{uuid.uuid4().hex[:8]}")
    password = secrets.token_urlsafe(9)
    sign_in = f"sign in as demo / {password}"
    try:
        with tempfile.TemporaryDirectory(prefix="im-demo-") as tmp:
            # up's layout: no anonymous access, one user per service with its own credentials file,
            # streams provisioned by the admin; the replay drives time as admin, the monitor and
            # the board run as their own users
            server = launch_embedded(Path(tmp), 1, port=0, names=names)
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(server.stop)
                await provision_embedded(server, 1, names)
                url = None
                if board:
                    auth = Authenticator(users_from_pairs([("demo", "Demo nurse", password)]), secrets.token_bytes(32))
                    config = BoardConfig(bind="127.0.0.1:0", clock="event", secret=secrets.token_hex(16))
                    url = await stack.enter_async_context(start_board(server.access("board"), settings, config, names,
                                                                      auth=auth))
                    print(f"The live board: {url}  ({sign_in})\n", flush=True)
                    _open_browser(url)
                result = await until_stopped(replay_online_async(
                    lines, settings, None, server.access("admin"), pace=pace, on_output=show, names=names,
                    worker=server.access("monitor")), stop)
                if result is None:
                    print("The demo was stopped during the replay.", flush=True)
                    return stop.exit_code
                for event in result.sorted_outputs():  # anything the live view missed (core NATS is at-most-once)
                    show(event)
                print(summary(result))
                for report in result.reports:
                    print(f"  {report}", file=sys.stderr)
                if url is not None:
                    print(f"\nThe replay is over. The board stays up at {url} ({sign_in}), showing the day as "
                          "it ended; Ctrl-C ends the demo.", flush=True)
                    await stop.stopped.wait()
                return 0
    finally:
        stop.close()


def run_demo(args: Namespace, settings: Settings) -> int:
    configure("json", level=40)  # the demo's own output is the story; logs only on errors
    log_path = args.log or CLINIC_DAY
    lines = log_path.read_bytes().splitlines()
    pace = pacer(args.speedup) if args.speedup > 0 else None
    timing = "no pauses" if pace is None else f"about {_duration(lines, args.speedup):.0f} s at {args.speedup:g}x real time"
    print(f"infusion-monitor demo: {log_path.name} ({len(lines)} events, {timing}) through an embedded NATS "
          "server and the live monitor. Alerts as they arrive:\n", flush=True)

    shown: set[str] = set()

    def show(event: OutboundEvent) -> None:
        if event.type == "alert.raised" and event.alert_id not in shown:
            shown.add(event.alert_id)
            print(_alert_line(event), flush=True)

    return asyncio.run(_demo(lines, settings, pace, show, board=not args.no_board))


def _duration(lines: list[bytes], speedup: float) -> float:
    from infusion_monitor.schemas import Rejection, parse_inbound

    times = [e.occurred_at for e in map(parse_inbound, lines) if not isinstance(e, Rejection)]
    return expected_seconds(times, speedup)
