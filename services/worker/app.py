"""The monitor service shell: JetStream pull consumer -> MonitorRunner -> ack.

Run with ``infusion-monitor service monitor`` (``infusion-monitor up`` supervises it).
``clock="wall"``: APScheduler advances the engine on the wall clock every second (window
closes, gaps, no-end, antibody-test due dates). ``clock="event"``: only event time moves the
clock (online replay).

The FastStream broker owns the connection. Consumption is a plain loop on nats-py's pull
subscription over that connection, not a FastStream subscriber: FastStream 0.7.8's batch pull
loop catches ``nats.errors.TimeoutError`` while nats-py raises a plain ``asyncio.TimeoutError``
after a partial fetch, which discards the messages already collected (they come back only after
``ack_wait``, out of order), and it waits for a full batch before handing it over, which adds up
to its timeout to every alert's latency. Here a fetch of one message blocks while the stream is
idle, and whatever else is ready joins it in the same batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream.nats import NatsBroker

from ..engine.bus import Engine
from ..cores import all_cores
from ..runtime.access import NatsAccess, access_for
from ..runtime.health import Heartbeats, instance_name
from ..runtime.logs import get_logger
from ..runtime.names import Names
from ..runtime.settings import Settings
from ..runtime.shells import deliver_prefix, fail, pull_batches, start_wall_clock
from ..runtime.streams import ensure_consumer, ensure_streams, policy_from_env, worker_consumer
from .partition import Partition
from .runner import CHECKPOINT_MESSAGES, SERVICE, MonitorRunner
from .store import StateStore, StoredState

BATCH = 256
DURABLE = "monitor"
MAX_UNACKED = CHECKPOINT_MESSAGES + 4 * BATCH  # the consumer's max_ack_pending
IDLE_WAIT_S = 0.25  # how long one idle fetch waits for the next message (then: checkpoint)
TOP_UP_WAIT_S = 0.002  # how long to wait for more of an already started batch


@dataclass
class RunningWorker:
    broker: NatsBroker
    runner: MonitorRunner
    failed: asyncio.Future[BaseException]


async def _consume(sub: Any, runner: MonitorRunner, failed: asyncio.Future[BaseException], log: Any,
                   connection: Any = None) -> None:
    try:
        async for msgs in pull_batches(sub, BATCH, failed, log, on_idle=runner.checkpoint, idle_wait=IDLE_WAIT_S,
                                       top_up_wait=TOP_UP_WAIT_S, connection=connection):
            await runner.process(msgs)
    except Exception as exc:  # crash-only: memory may be ahead of storage
        fail(failed, exc, log, "consumer")


def runner_status(runner: MonitorRunner, js: Any, names: Names) -> Any:
    """What the monitor's heartbeat says: where it stands in the inbound stream, how far behind,
    the last defect it met, and its counts (rejected, duplicate, future, unmatched, quarantined, ...)."""
    async def status() -> dict[str, Any]:
        last = (await js.stream_info(names.stream_in)).state.last_seq
        return {"position": runner.stream_seq, "lag": max(0, last - runner.stream_seq),
                "last_error": runner.last_error, "counters": dict(runner.counts)}
    return status


@asynccontextmanager
async def run_worker(settings: Settings, nats_url: str | NatsAccess, names: Names = Names(),
                     clock: str = "wall", tick_seconds: float = 1.0,
                     partition: Partition = Partition()) -> AsyncIterator[RunningWorker]:
    log = get_logger(SERVICE).bind(partition=f"{partition.index}/{partition.count}")
    durable = DURABLE + partition.suffix
    broker = access_for(nats_url).broker(SERVICE, graceful_timeout=10.0)
    failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    await broker.connect()  # no FastStream subscribers here: we close the connection ourselves
    try:
        js = broker.config.connection_state.stream
        policy = policy_from_env()
        await ensure_streams(js, names, policy, needed=(names.stream_in, names.stream_alerts, names.stream_out,
                                                        names.stream_dlq))
        consumer = worker_consumer(durable, f"{names.ns}.in.>", MAX_UNACKED)
        await ensure_consumer(js, names.stream_in, consumer)
        store = await StateStore.open(js, names.state_bucket(SERVICE + partition.suffix), policy.replicas)
        stored = await store.load()
        clock_at = stored.meta.get("clock")

        def engine_from(stored: StoredState) -> Engine:
            at = stored.meta.get("clock")
            engine = Engine(settings.monitor, all_cores(), stored.records,
                            clock=datetime.fromisoformat(at) if at else None,
                            timer_seq=int(stored.meta.get("timer_seq", 0)),
                            owns=None if partition.single else partition.owns)
            engine.tick_seen = dict(stored.meta.get("tick_seen", {}))
            return engine

        tolerance = timedelta(seconds=settings.future_tolerance_s)
        runner = MonitorRunner(engine_from(stored), js, names, store, log, stored.meta, durable,
                               owns=None if partition.single else partition.owns, reload=engine_from,
                               retries=settings.message_retries,
                               ceiling=(lambda: datetime.now(UTC) + tolerance) if clock == "wall" else None)
        runner.on_failure = lambda exc: fail(failed, exc, log, "checkpoint")
        caught_up = await runner.catch_up()
        log.info("monitor starting", patients=len(stored.records), clock=clock_at, clock_mode=clock,
                 stream_seq=runner.stream_seq, caught_up=caught_up)
        scheduler = start_wall_clock(runner.advance, tick_seconds, failed, log) if clock == "wall" else None
        sub = await js.pull_subscribe_bind(durable, names.stream_in, inbox_prefix=deliver_prefix("monitor"))
        consuming = asyncio.create_task(_consume(sub, runner, failed, log, broker.connection))
        instance = str(partition.index) if not partition.single else instance_name()
        heartbeats = Heartbeats(broker.connection, names, SERVICE, instance, runner_status(runner, js, names), log=log)
        if names.ns == Names().ns:  # (an online replay in its own namespace is nobody's to watch)
            heartbeats.start()
        try:
            yield RunningWorker(broker, runner, failed)
        finally:
            await heartbeats.stop()
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consuming
            if not failed.done():
                with contextlib.suppress(Exception):
                    await runner.checkpoint(wait=True)  # a clean stop leaves nothing to recompute
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            log.info("monitor stopping", processed=runner.processed, gap_filled=runner.gap_filled)
    finally:
        # everything owed is written and acked (or left for redelivery): close rather than
        # drain, which waits up to 30 s for pull deliveries still in flight
        with contextlib.suppress(Exception):
            await broker.connection.close()
