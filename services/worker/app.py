"""The monitor service shell: FastStream batch pull consumer -> MonitorRunner -> ack.

Run with ``infusion-monitor service monitor`` (``infusion-monitor up`` supervises it).
``clock="wall"``: APScheduler advances the engine on the wall clock every second (window
closes, gaps, no-end). ``clock="event"``: only event time moves the clock (online replay).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.nats.message import NatsBatchMessage

from ..engine.bus import Engine
from ..engine.cores import all_cores
from ..runtime.logs import get_logger, quiet_stdlib_logger
from ..runtime.names import Names
from ..runtime.settings import Settings, nats_servers
from ..runtime.streams import ensure_consumer, ensure_streams, worker_consumer
from .runner import SERVICE, MonitorRunner
from .store import StateStore

BATCH = 256
DURABLE = "monitor"


async def _batch_itself(msg: NatsBatchMessage) -> NatsBatchMessage:
    """Decoder: hand the handler the batch untouched (bad bytes must reach our own validation)."""
    return msg


@dataclass
class RunningWorker:
    broker: NatsBroker
    runner: MonitorRunner
    failed: asyncio.Future[BaseException]


@asynccontextmanager
async def run_worker(settings: Settings, nats_url: str, names: Names = Names(),
                     clock: str = "wall", tick_seconds: float = 1.0) -> AsyncIterator[RunningWorker]:
    log = get_logger(SERVICE)
    broker = NatsBroker(nats_servers(nats_url), logger=quiet_stdlib_logger("faststream"), graceful_timeout=10.0)
    failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    holder: dict[str, MonitorRunner] = {}

    @broker.subscriber(
        f"{names.ns}.in.>",
        stream=JStream(names.stream_in, declare=False),
        durable=DURABLE,
        pull_sub=PullSub(batch_size=BATCH, timeout=0.1, batch=True),
        ack_policy=AckPolicy.MANUAL,
        decoder=_batch_itself,
        config=worker_consumer(DURABLE, f"{names.ns}.in.>", BATCH * 2),
    )
    async def on_batch(batch: NatsBatchMessage) -> None:
        if failed.done():
            return  # shutting down after a failure: leave the batch for redelivery
        try:
            await holder["runner"].process(batch.raw_message)
        except Exception as exc:  # crash-only: state in memory may be ahead of storage
            log.critical("batch failed; stopping for a clean restart", error=repr(exc))
            if not failed.done():
                failed.set_result(exc)

    async with broker:
        js = broker.config.connection_state.stream
        await ensure_streams(js, names)
        await ensure_consumer(js, names.stream_in, worker_consumer(DURABLE, f"{names.ns}.in.>", BATCH * 2))
        store = await StateStore.open(js, names.state_bucket(SERVICE))
        stored = await store.load()
        clock_at = stored.meta.get("clock")
        engine = Engine(
            settings.monitor, all_cores(), stored.records,
            clock=datetime.fromisoformat(clock_at) if clock_at else None,
            timer_seq=int(stored.meta.get("timer_seq", 0)),
        )
        engine.tick_seen = dict(stored.meta.get("tick_seen", {}))
        runner = holder["runner"] = MonitorRunner(engine, js, names, store, log, stored.meta)
        log.info("monitor starting", patients=len(stored.records), clock=clock_at, clock_mode=clock)
        scheduler = None
        if clock == "wall":
            scheduler = AsyncIOScheduler(timezone=UTC)

            async def wall_tick() -> None:
                try:
                    await runner.advance(datetime.now(UTC))
                except Exception as exc:
                    log.critical("timer advance failed; stopping", error=repr(exc))
                    if not failed.done():
                        failed.set_result(exc)

            scheduler.add_job(wall_tick, "interval", seconds=tick_seconds, max_instances=1,
                              coalesce=True, next_run_time=datetime.now(UTC))
            scheduler.start()
        await broker.start()
        try:
            yield RunningWorker(broker, runner, failed)
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            log.info("monitor stopping", processed=runner.processed)
