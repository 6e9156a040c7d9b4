"""``infusion-monitor status``: what every running service says about itself (its heartbeats,
``im.health.>``): position in its input, lag, the last defect met, and its counts (rejected,
duplicate, future-dated, unmatched, set aside, republished outputs the server dropped, ...)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from infusion_monitor.schemas.outbound import ServiceHeartbeat

from ..runtime.access import NatsAccess, access_for
from ..runtime.health import heartbeat_interval
from ..runtime.names import Names


async def collect(target: str | NatsAccess, seconds: float, names: Names = Names()) -> dict[str, ServiceHeartbeat]:
    """The latest heartbeat of every service heard within ``seconds`` (``target``: a URL, or where
    and as whom to connect)."""
    latest: dict[str, ServiceHeartbeat] = {}
    nc = await access_for(target).connect_once("operator")
    try:
        async def heard(msg) -> None:  # noqa: ANN001 - a nats message
            try:
                beat = ServiceHeartbeat.model_validate_json(msg.data)
            except ValueError:
                return
            latest[f"{beat.service}/{beat.instance}"] = beat

        sub = await nc.subscribe(names.health_all, cb=heard)
        await asyncio.sleep(seconds)
        await sub.unsubscribe()
    finally:
        await nc.close()
    return latest


def render(latest: dict[str, ServiceHeartbeat], now: datetime) -> str:
    if not latest:
        return "no service heard (is `infusion-monitor up` running?)\n"
    lines = [f"{'service':<12} {'up since (UTC)':<20} {'position':>9} {'lag':>6}  counts; last error"]
    for name in sorted(latest):
        beat = latest[name]
        counts = ", ".join(f"{k} {v}" for k, v in sorted(beat.counters.items()) if v)
        error = f"; last error: {beat.last_error}" if beat.last_error else ""
        lines.append(f"{name:<12} {beat.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  "
                     f"{beat.position if beat.position is not None else '-':>9} "
                     f"{beat.lag if beat.lag is not None else '-':>6}  {counts or '-'}{error}")
    return "\n".join(lines) + "\n"


def run_status(access: NatsAccess, seconds: float | None = None) -> int:
    wait = seconds if seconds is not None else heartbeat_interval() + 1.0
    latest = asyncio.run(collect(access, wait))
    sys.stdout.write(render(latest, datetime.now(UTC)))
    return 0 if latest else 1
