"""The paging bridge: alerts from the alert stream to paging systems, with acknowledgement,
escalation, a failsafe and an audit trail (``docs/paging.md``).

- ``core.py``: the pure core (routing, re-page, escalation, failsafe, resolve, the outbox,
  escalation of undeliverable triggers, operator alerts) on event time;
- ``routes.py``: the routing configuration (TOML);
- ``adapters.py``: PagerDuty Events API v2, generic-webhook and FHIR request bodies (pure);
- ``acm.py``: IHE PCD ACM, pure: PCD-04 (``ORU^R40``), ACKs, PCD-05 (``ORA^R41``/``ORU^R41``);
- ``fhir.py``: a FHIR R4 ``CommunicationRequest`` per alert (pure);
- ``delivery.py``: one queue per destination (HTTP, MLLP), own retries, backoff and cap;
- ``reports.py``: what the delivery learns, published (``page.attempted``, ``alert.delivery``);
- ``runner.py`` / ``app.py``: the live shell (JetStream consumers, KV state, ack, queues);
- ``acm_listener.py``: the PCD-05 listener of an ``acm`` destination;
- ``ack.py``: the HTTP acknowledgement endpoint (API and PagerDuty v3 webhooks);
- ``audit.py``: ``infusion-monitor alerts`` (recent alerts, their state, each destination's).
"""

from __future__ import annotations

from ..engine.bus import Engine
from ..engine.config import MonitorConfig
from ..cores import all_cores
from .core import PagerCore
from .routes import PagerRoutes, load_routes, record_only


def pager_engine(config: MonitorConfig, routes: PagerRoutes) -> Engine:
    """Every core of the monitor plus the pager, for a replay with paging:
    ``replay_lines(lines, config, until, engine=pager_engine(config, routes))``."""
    return Engine(config, [*all_cores(), PagerCore(routes)])


__all__ = ["PagerCore", "PagerRoutes", "load_routes", "pager_engine", "record_only"]
