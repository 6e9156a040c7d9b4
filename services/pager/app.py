"""The bridge's live shell: two durable pull consumers -> PagerRunner -> KV -> ack -> one
delivery queue per destination (HTTP, MLLP), plus the acknowledgement endpoint and the IHE ACM
status listeners.

Run with ``infusion-monitor service pager`` (``up`` supervises it). Consumers, on the
connection of a FastStream broker like the monitor worker (plain nats-py pull loops; see
``services/worker/app.py`` for why not a FastStream subscriber):

- ``pager`` on ``{NS}_ALERTS``, filter ``{ns}.alert.>`` (raised, acknowledged, resolved; its own
  ``alert.escalated`` is skipped);
- ``pager-sessions`` on ``{NS}_OUT``, filter ``{ns}.out.*.session.closed``.

A new durable starts at the wall clock minus ``lookback_minutes`` (so a bridge deployed onto a
400-day alert stream does not page its history); after that it keeps its position. The engine
(``PagerCore`` only) keeps its state in the KV bucket ``{ns}-state-pager``. ``clock="wall"``:
APScheduler moves the engine clock every ``tick_seconds`` (re-pages, escalations); a tick
waits for the lock (held for a batch's decode-store-ack only, never for a delivery), so timers
run on the clock whatever the destinations do. The acknowledgement endpoint (``ack.py``: callers'
tokens in ``callers.py``) is served on ``ack_bind`` (``None``: off) by ``endpoint.py``, whose
failure never stops the bridge (an operator alert, retried); each ``acm`` destination with a
``status_listen`` gets a PCD-05 listener (``acm_listener.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from faststream.nats import NatsBroker
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from infusion_monitor.schemas.outbound import AlertAcknowledged

from ..engine.bus import Engine
from ..runtime.access import NatsAccess, access_for
from ..runtime.health import Heartbeats, instance_name
from ..runtime.shells import deliver_prefix, fail, pull_batches, start_wall_clock, stop_consuming
from ..runtime.tls import ServerTls
from ..runtime.tokens import TokenFile
from ..runtime.logs import get_logger
from ..runtime.names import Names
from ..runtime.settings import Settings
from ..runtime.streams import ensure_consumer, ensure_streams
from ..worker.store import StateStore
from .ack import ack_app
from .callers import Callers
from .endpoint import RETRY_S, AckEndpoint
from .acm_listener import AcmStatusListener
from .core import PagerCore
from .delivery import Dispatcher, make_dispatcher
from .reports import Reports
from .routes import PagerRoutes
from .runner import SERVICE, PagerRunner
from .watch import WatchdogShell
from .watchdog import WatchdogSettings

BATCH = 64
DURABLE_ALERTS = "pager"
DURABLE_SESSIONS = "pager-sessions"
IDLE_WAIT_S = 1.0
TOP_UP_WAIT_S = 0.002
ACK_WAIT_S = 60.0  # redelivery of an unacked batch after a crash (a batch never waits for a delivery)


@dataclass(frozen=True)
class PagerSettings:
    """The bridge's own settings (environment variables, ``docs/paging.md``)."""

    routes_path: str | None = None  # INFUSION_MONITOR_PAGER_ROUTES
    ack_bind: str | None = "127.0.0.1:8089"  # INFUSION_MONITOR_PAGER_ACK_BIND ("off": none)
    callers_path: Path | None = None  # INFUSION_MONITOR_PAGER_ACK_CALLERS (default DATA_DIR/pager/ack-callers.toml)
    pagerduty_webhook_secret: str | None = field(default=None, repr=False)  # INFUSION_MONITOR_PAGER_PD_WEBHOOK_SECRET
    allowed_origins: frozenset[str] = frozenset()  # INFUSION_MONITOR_PAGER_ACK_ORIGINS (browsers: none)
    tls: ServerTls | None = None  # INFUSION_MONITOR_PAGER_ACK_TLS_CERT / _KEY / _CLIENT_CA
    ack_retry_s: float = RETRY_S  # how often a failed endpoint is tried again
    lookback_minutes: float = 60.0  # INFUSION_MONITOR_PAGER_LOOKBACK_MINUTES
    ack_wait_s: float = ACK_WAIT_S  # INFUSION_MONITOR_PAGER_ACK_WAIT_S: redelivery after a crash
    env: dict[str, str] = field(default_factory=dict, repr=False)  # routing keys and tokens come from here

    @classmethod
    def load(cls, env: dict[str, str] | None = None) -> PagerSettings:
        env = dict(os.environ if env is None else env)
        bind = env.get("INFUSION_MONITOR_PAGER_ACK_BIND", "127.0.0.1:8089")
        data = Path(env.get("INFUSION_MONITOR_DATA_DIR", "var"))
        origins = env.get("INFUSION_MONITOR_PAGER_ACK_ORIGINS", "")
        return cls(
            routes_path=env.get("INFUSION_MONITOR_PAGER_ROUTES") or None,
            ack_bind=None if bind.lower() in ("", "off", "none") else bind,
            callers_path=Path(env.get("INFUSION_MONITOR_PAGER_ACK_CALLERS") or data / "pager" / "ack-callers.toml"),
            pagerduty_webhook_secret=env.get("INFUSION_MONITOR_PAGER_PD_WEBHOOK_SECRET") or None,
            allowed_origins=frozenset(o.strip() for o in origins.split(",") if o.strip()),
            tls=ServerTls.from_env(env, "INFUSION_MONITOR_PAGER_ACK"),
            lookback_minutes=float(env.get("INFUSION_MONITOR_PAGER_LOOKBACK_MINUTES", "60")),
            ack_wait_s=float(env.get("INFUSION_MONITOR_PAGER_ACK_WAIT_S", str(ACK_WAIT_S))),
            env=env,
        )


@dataclass
class RunningPager:
    broker: NatsBroker
    runner: PagerRunner
    failed: asyncio.Future[BaseException]
    ack_url: str | None
    dispatcher: Dispatcher
    reports: Reports
    acm_status: dict[str, tuple[str, int]]  # acm destination -> address of its PCD-05 listener
    watch: WatchdogShell
    endpoint: AckEndpoint | None = None


def pager_consumer(durable: str, filter_subject: str, start: datetime, ack_wait: float = ACK_WAIT_S) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=filter_subject,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=start.isoformat().replace("+00:00", "Z"),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=BATCH * 2,
    )


async def initial_cursor(js: Any, stream: str, durable: str) -> int:
    """Where order checking starts when no cursor is stored (a new bridge): the consumer's ack
    floor, or just before the first message its start position delivers (peeked with an
    ephemeral consumer of the same filter and start), so the first batch is checked for gaps
    like every other (a message of a crashed first batch comes back after newer ones)."""
    info = await js.consumer_info(stream, durable)
    if info.ack_floor is not None and info.ack_floor.stream_seq:
        return info.ack_floor.stream_seq
    config = info.config
    last = (await js.stream_info(stream)).state.last_seq
    sub = await js.pull_subscribe(config.filter_subject, durable=None, stream=stream, inbox_prefix=deliver_prefix("pager"), config=ConsumerConfig(
        deliver_policy=config.deliver_policy, opt_start_time=config.opt_start_time,
        opt_start_seq=config.opt_start_seq, ack_policy=AckPolicy.NONE, inactive_threshold=30.0))
    try:
        if not (await sub.consumer_info()).num_pending:
            return last
        try:
            (msg,) = await sub.fetch(1, timeout=5.0)
        except TimeoutError:
            return last
        return msg.metadata.sequence.stream - 1
    finally:
        await sub.unsubscribe()


def _status(runner: PagerRunner, dispatcher: Dispatcher) -> Any:
    async def status() -> dict[str, Any]:
        return {"counters": {"processed": runner.processed, "requested": runner.requested, "sent": dispatcher.sent}}
    return status


async def _consume(sub: Any, stream: str, runner: PagerRunner, failed: asyncio.Future[BaseException],
                   log: Any, connection: Any = None) -> None:
    try:
        async for msgs in pull_batches(sub, BATCH, failed, log, idle_wait=IDLE_WAIT_S, top_up_wait=TOP_UP_WAIT_S,
                                       connection=connection):
            await runner.process(stream, msgs)
    except Exception as exc:  # crash-only: memory may be ahead of storage
        fail(failed, exc, log, "consumer")


def _restored_engine(settings: Settings, routes: PagerRoutes, stored: Any) -> Engine:
    """The pager core's engine as the last checkpoint left it (records, clock, timer order)."""
    clock_at = stored.meta.get("clock")
    return Engine(settings.monitor, [PagerCore(routes)], stored.records,
                  clock=datetime.fromisoformat(clock_at) if clock_at else None,
                  timer_seq=int(stored.meta.get("timer_seq", 0)))


async def _start_acm_listeners(stack: contextlib.AsyncExitStack, routes: PagerRoutes, runner: PagerRunner,
                               publish_events: Callable[[list[Any]], Awaitable[None]],
                               log: Any) -> dict[str, tuple[str, int]]:
    """A PCD-05 status listener per ACM destination that asks for one; their addresses by name."""
    addresses: dict[str, tuple[str, int]] = {}
    for name, dest in routes.destinations.items():
        if dest.adapter == "acm" and dest.acm_settings.status_listen:
            listener = AcmStatusListener(name, dest, runner.locate, publish_events, log)
            addresses[name] = await listener.start()
            stack.push_async_callback(listener.stop)
    return addresses


async def _start_ack_endpoint(stack: contextlib.AsyncExitStack, pager: PagerSettings, routes: PagerRoutes,
                              runner: PagerRunner, publish_ack: Callable[[AlertAcknowledged], Awaitable[None]],
                              log: Any) -> AckEndpoint | None:
    """The acknowledgement endpoint, when bound and someone may call it (a caller token or the
    PagerDuty webhook secret); never without a credential."""
    if not pager.ack_bind:
        return None
    callers = Callers.load_or_create(pager.callers_path) if pager.callers_path else Callers(TokenFile([]))
    if not callers and not pager.pagerduty_webhook_secret:
        log.warning("acknowledgement endpoint off: no caller (INFUSION_MONITOR_PAGER_ACK_CALLERS) and no "
                    "PagerDuty webhook secret")
        return None
    app = ack_app(runner.locate, publish_ack, callers=callers,
                  pagerduty_secret=pager.pagerduty_webhook_secret, allowed_origins=pager.allowed_origins,
                  destinations=frozenset(routes.destinations), log=log)
    endpoint = AckEndpoint(app, pager.ack_bind, runner.observe, log, pager.tls, pager.ack_retry_s)
    await endpoint.start()
    stack.push_async_callback(endpoint.stop)
    return endpoint


@asynccontextmanager
async def run_pager(settings: Settings, nats_url: str | NatsAccess, routes: PagerRoutes, names: Names = Names(),
                    clock: str = "wall", *, pager: PagerSettings | None = None,
                    tick_seconds: float | None = None,
                    http_client: httpx.AsyncClient | None = None,
                    worker_options: dict[str, Any] | None = None) -> AsyncIterator[RunningPager]:
    """The bridge, running until the context exits. ``pager``: its settings (default: from the
    environment); ``http_client``: for tests (default: a fresh client)."""
    pager = pager or PagerSettings.load()
    log = get_logger(SERVICE)
    broker = access_for(nats_url).broker(SERVICE, graceful_timeout=10.0)
    failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(broker)
        client = http_client or await stack.enter_async_context(httpx.AsyncClient())
        js = broker.config.connection_state.stream
        await ensure_streams(js, names, needed=(names.stream_alerts, names.stream_out, names.stream_dlq,
                                                names.stream_audit))
        start = datetime.now(UTC) - timedelta(minutes=pager.lookback_minutes)
        subjects = {names.stream_alerts: (DURABLE_ALERTS, f"{names.ns}.alert.>"),
                    names.stream_out: (DURABLE_SESSIONS, f"{names.ns}.out.*.session.closed")}
        for stream, (durable, subject) in subjects.items():
            await ensure_consumer(js, stream, pager_consumer(durable, subject, start, pager.ack_wait_s))
        store = await StateStore.open(js, names.state_bucket(SERVICE))
        stored = await store.load()
        clock_at = stored.meta.get("clock")
        engine = _restored_engine(settings, routes, stored)
        runner_box: list[PagerRunner] = []

        async def observe(event: Any) -> None:
            await runner_box[0].observe(event)

        connection = broker.connection
        reports = Reports(js, names, observe, log, failed, connected=lambda: connection.is_connected)
        dispatcher = make_dispatcher(routes, client, settings.monitor, reports, log, env=pager.env or None,
                                     **(worker_options or {}))
        runner = PagerRunner(engine, js, names, store, dispatcher.submit, log, stored.meta)
        runner_box.append(runner)
        for stream, (durable, _) in subjects.items():
            if stream not in runner.cursors:
                runner.cursors[stream] = await initial_cursor(js, stream, durable)
        reports.start()
        dispatcher.start()
        stack.push_async_callback(reports.stop)
        stack.push_async_callback(dispatcher.stop)
        backlog = runner.pending_pages()
        dispatcher.submit(backlog)  # the outboxes: requests a previous run did not get delivered
        watch = await WatchdogShell(connection, names, WatchdogSettings.load(pager.env or None), routes, observe,
                                    dispatcher.submit, client, log, failed=failed).start()
        stack.push_async_callback(watch.stop)
        heartbeats = Heartbeats(connection, names, SERVICE, instance_name(), _status(runner, dispatcher), log=log).start()
        stack.push_async_callback(heartbeats.stop)
        log.info("pager starting", patients=len(stored.records), clock=clock_at, clock_mode=clock,
                 routes=[r.name for r in routes.routes], destinations=sorted(routes.destinations),
                 pending_requests=len(backlog))

        async def publish_events(events: list[Any]) -> None:
            await asyncio.gather(*(js.publish(names.outbound(e.type, e.patient_id),
                                              e.model_dump_json(exclude_none=True).encode(),
                                              headers={"Nats-Msg-Id": e.event_id}) for e in events))

        async def publish_ack(event: AlertAcknowledged) -> None:
            await publish_events([event])

        acm_status = await _start_acm_listeners(stack, routes, runner, publish_events, log)
        endpoint = await _start_ack_endpoint(stack, pager, routes, runner, publish_ack, log)
        ack_url = endpoint.url if endpoint is not None else None
        scheduler = None
        if clock == "wall":
            scheduler = start_wall_clock(runner.advance, tick_seconds or settings.tick_seconds, failed, log)
        subs = []
        tasks = []
        for stream, (durable, _) in subjects.items():
            sub = await js.pull_subscribe_bind(durable, stream, inbox_prefix=deliver_prefix("pager"))
            subs.append(sub)
            tasks.append(asyncio.create_task(_consume(sub, stream, runner, failed, log, connection)))
        try:
            yield RunningPager(broker, runner, failed, ack_url, dispatcher, reports, acm_status, watch, endpoint)
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            await stop_consuming(tasks, subs)
            log.info("pager stopping", processed=runner.processed, requested=runner.requested,
                     delivered=dispatcher.sent)


def run_pager_service(nats_url: str | NatsAccess, settings: Settings, pager: PagerSettings | None = None) -> int:
    """``infusion-monitor service pager``: the bridge in the foreground until SIGINT/SIGTERM.
    Exit codes: 0 stopped, 70 failed (``up`` restarts it), 2 bad routes file."""
    import signal

    from pydantic import ValidationError

    from .routes import load_routes, record_only

    pager = pager or PagerSettings.load()
    log = get_logger(SERVICE)
    try:
        routes = load_routes(pager.routes_path) if pager.routes_path else record_only()
    except (OSError, ValueError, ValidationError) as exc:
        log.critical("routes file not usable", path=pager.routes_path, error=str(exc))
        return 2
    if not pager.routes_path:
        log.warning("no routes file (INFUSION_MONITOR_PAGER_ROUTES): alerts are recorded, not paged")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with run_pager(settings, nats_url, routes, clock="wall", pager=pager) as running:
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({stopped, running.failed}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            return 70 if running.failed in done else 0

    return asyncio.run(main())
