"""The paging bridge: alerts from the alert stream to paging systems, with acknowledgement,
escalation, a failsafe and an audit trail (``docs/paging.md``).

- ``core.py``: the pure core (routing, re-page, escalation, failsafe, resolve) on event time;
- ``routes.py``: the routing configuration (TOML);
- ``adapters.py``: PagerDuty Events API v2 and generic-webhook request bodies (pure);
- ``delivery.py``: HTTP delivery with timeouts, retries and backoff;
- ``runner.py`` / ``app.py``: the live shell (JetStream consumers, KV state, deliver, ack);
- ``ack.py``: the HTTP acknowledgement endpoint (API and PagerDuty v3 webhooks);
- ``audit.py``: ``infusion-monitor alerts`` (recent alerts and their state).
"""

from __future__ import annotations

from ..engine.bus import Engine
from ..engine.config import MonitorConfig
from ..engine.cores import all_cores
from .core import PagerCore
from .routes import PagerRoutes, load_routes, record_only


def pager_engine(config: MonitorConfig, routes: PagerRoutes) -> Engine:
    """Every core of the monitor plus the pager, for a replay with paging:
    ``replay_lines(lines, config, until, engine=pager_engine(config, routes))``."""
    return Engine(config, [*all_cores(), PagerCore(routes)])


__all__ = ["PagerCore", "PagerRoutes", "load_routes", "pager_engine", "record_only"]
