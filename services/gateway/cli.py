"""Command-line pieces for the lead to wire into ``infusion-monitor`` (and ``python -m
infusion_monitor.gateway``): the ``gateway`` service, ``hl7 send`` and ``hl7 lint``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from ..runtime.settings import Settings
from .config import SECRET_ENV, GatewayConfig, MissingSecret


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", help="NATS URL (default: $NATS_URL)")
    parser.add_argument("--mllp-host", help="MLLP listen address (default 127.0.0.1)")
    parser.add_argument("--mllp-port", type=int, help="MLLP port (default 2575)")
    parser.add_argument("--http-host", help="FHIR HTTP listen address (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="FHIR HTTP port (default 8088)")
    parser.add_argument("--site-tz", help="time zone of HL7 times without an offset (default $INFUSION_MONITOR_SITE_TZ or UTC)")


def add_hl7_send_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="HL7 files (one or more messages each), sent in order")
    parser.add_argument("--host", default="127.0.0.1", help="the gateway's MLLP address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2575, help="the gateway's MLLP port (default: 2575)")
    parser.add_argument("--now", action="store_true",
                        help="replay the files as a live feed: move every time the gateway reads (MSH-7, EVN-2/6, "
                             "OBR-7/22, OBX-14, SPM-17, ...) so that the first message is now and the rest keep "
                             "their spacing, give the set fresh control ids and order numbers, and send each "
                             "message when its moved time comes (default: off, the messages as they are, at once)")
    parser.add_argument("--site-tz", help="with --now: the time zone of HL7 times without an offset "
                                          "(default: $INFUSION_MONITOR_SITE_TZ, else UTC)")


def add_hl7_lint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="HL7 files (one or more messages each) or FHIR .json")
    parser.add_argument("--config", type=Path,
                        help="the gateway's TOML configuration (default: $INFUSION_MONITOR_CONFIG)")
    parser.add_argument("--site-tz", help="time zone of HL7 times without an offset, overriding the configuration "
                                          "(default: the configuration's, else $INFUSION_MONITOR_SITE_TZ, else UTC)")


LINT_SECRET = "hl7-lint-placeholder-secret"  # when no site secret is configured: keys are not the site's


def run_hl7_lint(args: argparse.Namespace) -> int:
    """``hl7 lint``: map files with the site's configuration, no server; print row by row."""
    import os

    from .lint import lint_files

    env = dict(os.environ)
    if args.config is not None:
        env["INFUSION_MONITOR_CONFIG"] = str(args.config)
    placeholder = not env.get(SECRET_ENV)
    if placeholder:
        env[SECRET_ENV] = LINT_SECRET
    try:
        config = GatewayConfig.load(env, site_timezone=args.site_tz)
    except ValidationError as exc:
        print(f"infusion-monitor hl7 lint: bad configuration: {config_problems(exc)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"infusion-monitor hl7 lint: {exc}", file=sys.stderr)
        return 2
    if placeholder:
        print(f"(no {SECRET_ENV}: patient keys below use a placeholder secret, not the site's)")
    return lint_files(list(args.files), config)


def config_problems(exc: ValidationError) -> str:
    """What is wrong with a configuration, field by field, without echoing any input (an input
    may be the patient-key secret)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}"
                     for e in exc.errors(include_input=False, include_url=False))


def load_config(args: argparse.Namespace) -> GatewayConfig:
    return GatewayConfig.load(mllp_host=args.mllp_host, mllp_port=args.mllp_port, http_host=args.http_host,
                              http_port=args.http_port, site_timezone=args.site_tz)


def run_gateway_service(args: argparse.Namespace, settings: Settings, url: str | None = None) -> int:
    """``infusion-monitor gateway`` / ``service gateway``: run until SIGINT/SIGTERM. Exit 0 on a
    stop, 2 on bad configuration, 70 when the gateway failed (``up`` restarts it)."""
    from ..runtime.logs import configure
    from .app import run_gateway

    configure(settings.log_format)
    url = url or args.nats or settings.nats_url
    if not url:
        print("infusion-monitor gateway: no NATS URL (--nats or NATS_URL)", file=sys.stderr)
        return 2
    try:
        config = load_config(args)
    except ValidationError as exc:
        print(f"infusion-monitor gateway: bad configuration: {config_problems(exc)}", file=sys.stderr)
        return 2
    except (MissingSecret, ValueError) as exc:
        print(f"infusion-monitor gateway: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with run_gateway(settings, url, config) as running:
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({stopped, running.failed}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            return 70 if running.failed in done else 0

    return asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infusion_monitor.gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_gateway_arguments(sub.add_parser("run", help="run the gateway"))
    hl7 = sub.add_parser("send", help="send HL7 files over MLLP and print each ACK")
    add_hl7_send_arguments(hl7)
    add_hl7_lint_arguments(sub.add_parser("lint", help="map HL7 files without a server and print each row's fate"))
    args = parser.parse_args(argv)
    if args.command == "send":
        from .sender import run_hl7_send

        return run_hl7_send(args.files, args.host, args.port)
    if args.command == "lint":
        return run_hl7_lint(args)
    return run_gateway_service(args, Settings.load())
