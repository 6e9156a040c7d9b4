"""infusion-monitor: up, demo, replay, schemas export, deadletter tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from infusion_monitor.schemas.base import EventTime, set_patient_key_pattern
from infusion_monitor.schemas.vocab import PolicyProfile

_TIME = TypeAdapter(EventTime)


def _timestamp(text: str) -> datetime:
    try:
        return _TIME.validate_strings(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp with offset: {text!r}") from exc


def _parser() -> argparse.ArgumentParser:
    from .helptext import Parser

    parser = Parser(prog="infusion-monitor", description="The natalizumab infusion safety monitor: run the "
                    "services, replay logs, inspect alerts and dead letters. Each command has its own --help.")
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="replay a recorded JSONL log and print the outputs")
    replay.add_argument("log", type=Path, help="the log: one JSON event per line, in arrival order")
    replay.add_argument("--until", type=_timestamp, metavar="TIMESTAMP",
                        help="stop the clock here; later events are ignored (default: the latest event time + 24 h)")
    replay.add_argument("--out", type=Path, help="write outputs here (default: standard output)")
    replay.add_argument("--profile", choices=[p.value for p in PolicyProfile],
                        help="the policy profile (default: $INFUSION_MONITOR_PROFILE, else us)")
    replay.add_argument("--online", action="store_true", help="send the log through NATS and the live services")
    replay.add_argument("--pager", type=Path, metavar="ROUTES.toml",
                        help="also run the paging bridge's core (re-pages, escalations, failsafe) on event time "
                             "with this routing file (default: no paging)")
    from ..board.config import add_board_at_argument

    add_board_at_argument(replay, _timestamp)
    replay.add_argument("--nats", help="NATS URL for --online (default: an embedded server)")

    schemas = sub.add_parser("schemas", help="the contract's JSON Schema and AsyncAPI documents")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schemas_sub.add_parser("export", help="write JSON Schema for every event into DIR")
    export.add_argument("dir", type=Path, help="the folder to write into (created if missing)")

    up = sub.add_parser("up", help="run all services (embedded NATS unless NATS_URL/--nats)")
    up.add_argument("--nats", help="NATS URL (default: $NATS_URL, else an embedded server)")
    up.add_argument("--data-dir", type=Path, help="where the embedded server keeps its store, the credentials "
                                                  "and the board's users (default: $INFUSION_MONITOR_DATA_DIR, else ./var)")
    up.add_argument("--nats-port", type=int, metavar="N",
                    help="the embedded server's port; when it is taken, up takes a free one and says so "
                         "(default: $INFUSION_MONITOR_NATS_PORT, else 4222; 0: any free port)")

    demo = sub.add_parser("demo", help="replay the bundled clinic day through NATS and show the alerts")
    demo.add_argument("--speedup", type=float, default=3000.0, metavar="N",
                      help="event time runs N times faster than real time: an hour of the clinic day takes "
                           "3600/N s, and a quiet stretch of more than 6 h between two events (the months "
                           "before the day) takes no time; 0: no pauses at all, the events as fast as the "
                           "monitor takes them (default: 3000, about 17 s for the clinic day)")
    demo.add_argument("--log", type=Path, help="another log to play instead of the bundled clinic day "
                                                "(default: examples/clinic-day.jsonl)")
    demo.add_argument("--no-board", action="store_true",
                      help="no live board: the demo ends after the summary (default: the board runs, and "
                           "stays up after the replay until Ctrl-C)")

    service = sub.add_parser("service", help="run one service in the foreground (what up runs)")
    service.add_argument("name", choices=["monitor", "pager", "gateway", "board"], help="the service")
    service.add_argument("--nats", help="NATS URL (default: $NATS_URL)")
    service.add_argument("--routes", help="pager: the routing file (default: $INFUSION_MONITOR_PAGER_ROUTES)")
    service.add_argument("--partition", help="monitor: this instance's share, i/N (default: $INFUSION_MONITOR_PARTITION)")
    service.add_argument("--clock", choices=["wall", "event"], default=None,
                         help="monitor, board: wall clock (live) or event time only (replays, fault drills) "
                              "(default: $INFUSION_MONITOR_CLOCK, else wall)")
    service.add_argument("--bind", help="board: host:port to serve on (default 127.0.0.1:8090; 'off': none)")
    service.add_argument("--users", help="board: users file (TOML with scrypt hashes) "
                                         "(default: $INFUSION_MONITOR_BOARD_USERS)")
    service.add_argument("--lookback-hours", type=float,
                         help="board: history read from the streams at start (default: 24)")

    from ..gateway.cli import add_gateway_arguments, add_hl7_lint_arguments, add_hl7_send_arguments

    gateway = sub.add_parser("gateway", help="the HL7 v2 (MLLP) and FHIR R4 gateway in the foreground")
    add_gateway_arguments(gateway)
    hl7 = sub.add_parser("hl7", help="HL7 v2 tools")
    hl7_sub = hl7.add_subparsers(dest="hl7_command", required=True)
    add_hl7_send_arguments(hl7_sub.add_parser("send", help="send HL7 files over MLLP and print each ACK"))
    add_hl7_lint_arguments(hl7_sub.add_parser(
        "lint", help="map HL7 files (or FHIR .json) without a server and print what each row would become"))

    alerts = sub.add_parser("alerts", help="recent alerts, their state (raised, delivered, acknowledged, ...) "
                                            "and each paging destination's delivery state")
    _add_running_up_arguments(alerts)
    alerts.add_argument("--limit", type=int, default=20, help="how many of the latest alerts to show")

    status = sub.add_parser("status", help="what each running service says about itself: position, lag, counts, "
                                           "last error (its heartbeats)")
    _add_running_up_arguments(status)
    status.add_argument("--seconds", type=float, help="how long to listen (default: one heartbeat interval + 1 s)")

    provision = sub.add_parser("provision", help="create and update the streams and KV buckets (admin credential; "
                                                  "up does it for its embedded server)")
    _add_running_up_arguments(provision)
    provision.add_argument("--monitor-instances", type=int,
                           help="monitor instances to make state buckets for (default $INFUSION_MONITOR_MONITOR_INSTANCES or 1)")

    board = sub.add_parser("board", help="the board's users")
    board_sub = board.add_subparsers(dest="board_command", required=True)
    add_user = board_sub.add_parser(
        "add-user", help="add a board user, or give one a new password (asked twice; from standard input when it "
                         "is not a terminal); a running board reads it at the next sign-in")
    add_user.add_argument("username", help="the sign-in name (A-Z a-z 0-9 _ . @ -)")
    add_user.add_argument("--role", choices=["nurse", "viewer"],
                          help="nurse: sees the board and acknowledges alerts; viewer: sees it only, e.g. a wall "
                               "display (default: nurse; an existing user keeps theirs)")
    add_user.add_argument("--name", dest="display_name", metavar="DISPLAY_NAME",
                          help="the name shown on the board and in the audit trail, e.g. \"Anna K., RN\" "
                               "(default: the user name; an existing user keeps theirs)")
    add_user.add_argument("--data-dir", type=Path, help="the data directory of the up whose board this is "
                                                        "(default: $INFUSION_MONITOR_DATA_DIR, else ./var)")
    add_user.add_argument("--users", help="the users file (default: $INFUSION_MONITOR_BOARD_USERS, else "
                                          "DATA_DIR/board/users.toml)")

    dead = sub.add_parser("deadletter", help="inspect and re-drive dead letters")
    dead_sub = dead.add_subparsers(dest="deadletter_command", required=True)
    for name, what in (("list", "list the dead letters"), ("show", "show one dead letter, headers and bytes"),
                       ("redrive", "send one dead letter (or a corrected version) through again")):
        cmd = dead_sub.add_parser(name, help=what)
        _add_running_up_arguments(cmd)
        cmd.add_argument("--stream", choices=["monitor", "gateway"], default="monitor",
                         help="the monitor's dead letters (default) or the gateway's raw HL7/FHIR ones")
        if name != "list":
            cmd.add_argument("seq", type=int, help="the dead letter's stream sequence")
        if name == "redrive":
            cmd.add_argument("--file", help="send this corrected event instead of the original bytes "
                                            "(default: the original bytes)")
    return parser


def _add_running_up_arguments(parser: argparse.ArgumentParser) -> None:
    """--nats and --data-dir of the verbs that talk to a running system (alerts, status, ...)."""
    parser.add_argument("--nats", help="NATS URL, with the credentials file of $INFUSION_MONITOR_NATS_CREDENTIALS "
                                       "(default: the running up of --data-dir when given, else $NATS_URL, "
                                       "else the running up of $INFUSION_MONITOR_DATA_DIR or ./var)")
    parser.add_argument("--data-dir", type=Path,
                        help="find the running up of this data directory: the URL in DIR/nats.url and the operator's "
                             "credentials in DIR/credentials/; given, it wins over $NATS_URL "
                             "(default: $INFUSION_MONITOR_DATA_DIR, else ./var)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ..runtime.settings import Settings

    try:
        settings = Settings.load(profile=getattr(args, "profile", None))
    except ValueError as exc:
        print(f"infusion-monitor: {exc}", file=sys.stderr)
        return 2
    set_patient_key_pattern(settings.patient_key_pattern)
    from ..runtime.logs import configure

    configure(settings.log_format)  # logs go to standard error from the start (stdout is the command's output)
    from ..runtime.access import CannotConnect

    try:
        return _command(args, settings)
    except CannotConnect as exc:  # alerts, status, deadletter: a wrong URL or credential, said at once
        print(f"infusion-monitor {args.command}: {exc}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace, settings) -> int:  # noqa: ANN001 - Settings, imported late
    match args.command:
        case "replay":
            from .replay_cmd import run_replay

            return run_replay(args, settings)
        case "schemas":
            from infusion_monitor.schemas.export import export_json_schemas

            for path in export_json_schemas(args.dir):
                print(path)
            return 0
        case "up":
            from .up import run_up

            return run_up(args, settings)
        case "demo":
            from .demo import run_demo

            return run_demo(args, settings)
        case "service":
            from .up import run_service

            return run_service(args, settings)
        case "board":
            from .board_cmd import run_add_user

            return run_add_user(args, settings)
        case "deadletter":
            from .deadletter import run_deadletter

            return run_deadletter(args, settings)
        case "gateway":
            from ..gateway.cli import run_gateway_service
            from .up import resolve_nats

            return run_gateway_service(args, settings, resolve_nats(args, settings, "gateway"))
        case "hl7" if args.hl7_command == "lint":
            from ..gateway.cli import run_hl7_lint

            return run_hl7_lint(args)
        case "hl7":
            from ..gateway.sender import run_hl7_send

            return run_hl7_send(args.files, args.host, args.port, now=args.now, site_tz=args.site_tz)
        case "alerts":
            from ..pager.audit import run_alerts
            from .up import running_up

            access = running_up("alerts", args, settings, "operator")
            return run_alerts(access, args.limit) if access else 2
        case "provision":
            from ..runtime.provision import run_provision
            from .up import running_up

            access = running_up("provision", args, settings, "admin")
            return run_provision(args, access) if access else 2
        case "status":
            from .status import run_status
            from .up import running_up

            access = running_up("status", args, settings, "operator")
            return run_status(access, args.seconds) if access else 2
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
