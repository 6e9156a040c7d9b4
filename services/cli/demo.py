"""``infusion-monitor demo``: the bundled clinic day through an embedded NATS server and the
live monitor (event-time clock), alerts printed as they arrive, then a summary table."""

from __future__ import annotations

import asyncio
import sys
from argparse import Namespace
from collections import Counter
from pathlib import Path

from schemas.base import OutboundEvent

from ..replay.offline import ReplayResult
from ..replay.online import replay_online_async, speedup_pacer
from ..runtime.logs import configure
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


async def _with_board(lines: list[bytes], settings: Settings, pace, show, board: bool) -> ReplayResult:
    """The replay through an embedded server, with the live board on the same namespace."""
    import secrets
    import tempfile
    import uuid
    import webbrowser

    from ..board.auth import Authenticator, users_from_pairs
    from ..board.config import BoardConfig
    from ..board.service import start_board
    from ..runtime.embedded import EmbeddedNats
    from ..runtime.names import Names

    if not board:
        return await replay_online_async(lines, settings, None, None, pace=pace, on_output=show)
    names = Names(ns=f"demo{uuid.uuid4().hex[:8]}")
    password = secrets.token_urlsafe(9)
    auth = Authenticator(users_from_pairs([("demo", "Demo nurse", password)]), secrets.token_bytes(32))
    with tempfile.TemporaryDirectory(prefix="im-demo-") as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        config = BoardConfig(bind="127.0.0.1:0", clock="event", secret=secrets.token_hex(16))
        async with start_board(server.url, settings, config, names, auth=auth) as url:
            print(f"The live board: {url}  (sign in as demo / {password})\n", flush=True)
            try:
                webbrowser.open(url)
            except Exception:  # noqa: BLE001 - no browser on a server is fine
                pass
            return await replay_online_async(lines, settings, None, server.url, pace=pace, on_output=show,
                                             names=names)


def run_demo(args: Namespace, settings: Settings) -> int:
    configure("json", level=40)  # the demo's own output is the story; logs only on errors
    log_path = args.log or CLINIC_DAY
    lines = log_path.read_bytes().splitlines()
    print(f"infusion-monitor demo: {log_path.name} ({len(lines)} events) through an embedded NATS "
          "server and the live monitor. Alerts as they arrive:\n", flush=True)

    shown: set[str] = set()

    def show(event: OutboundEvent) -> None:
        if event.type == "alert.raised" and event.alert_id not in shown:
            shown.add(event.alert_id)
            print(_alert_line(event), flush=True)

    pace = speedup_pacer(args.speedup) if args.speedup > 0 else None
    result = asyncio.run(_with_board(lines, settings, pace, show, board=not args.no_board))
    for event in result.sorted_outputs():  # anything the live view missed (core NATS is at-most-once)
        show(event)
    print(summary(result))
    for report in result.reports:
        print(f"  {report}", file=sys.stderr)
    return 0
