"""``python -m infusion_monitor.pager [--nats URL] [--routes FILE]`` runs the bridge in the foreground;
``python -m infusion_monitor.pager alerts [--nats URL] [--limit N]`` lists recent alerts. (The documented
commands: ``infusion-monitor service pager`` and ``infusion-monitor alerts``.)"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..runtime.logs import configure
from ..runtime.settings import Settings
from .app import PagerSettings, run_pager_service
from .audit import run_alerts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infusion_monitor.pager")
    parser.add_argument("command", nargs="?", choices=["run", "alerts"], default="run")
    parser.add_argument("--nats", help="NATS URL (default: $NATS_URL)")
    parser.add_argument("--routes", help="routes TOML (default: $INFUSION_MONITOR_PAGER_ROUTES)")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    settings = Settings.load()
    url = args.nats or settings.nats_url
    if not url:
        print("no NATS URL (--nats or NATS_URL)", file=sys.stderr)
        return 2
    if args.command == "alerts":
        return run_alerts(url, args.limit)
    configure(settings.log_format)
    pager = PagerSettings.load()
    if args.routes:
        pager = dataclasses.replace(pager, routes_path=args.routes)
    return run_pager_service(url, settings, pager)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
