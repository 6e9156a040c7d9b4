"""Pieces every service shell repeats: opening its KV bucket, serving its HTTP app inside its
own loop, and an orderly stop of its consuming tasks, subscriptions and HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import uvicorn

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue


async def open_bucket(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    """The service's KV bucket (file storage, one revision kept), created on first use."""
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE,
                                                        replicas=replicas))


async def stop_consuming(tasks: Iterable[asyncio.Task[Any]], subs: Iterable[Any]) -> None:
    """Cancel the consuming tasks, wait for them, then unsubscribe (errors at shutdown ignored)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for sub in subs:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def stop_http(server: Any | None, server_task: asyncio.Task[Any] | None, timeout: float = 10) -> None:
    """Ask a uvicorn server to exit and wait for it (bounded)."""
    if server is None or server_task is None:
        return
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(server_task, timeout)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the service's loop: the service's own signal handling stays in charge."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_http(app: Any, bind: str, what: str, **config: Any) -> tuple[Any, asyncio.Task[Any], str]:
    """Serve an ASGI app on ``host:port`` (port 0: any free one) inside this loop; return the
    server, its task and its URL once it listens (bounded: up to 10 s)."""
    host, _, port = bind.rpartition(":")
    server = _EmbeddedServer(uvicorn.Config(app, host=host or "127.0.0.1", port=int(port), log_level="warning",
                                            lifespan="off", access_log=False, **config))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"{what} could not listen on {bind}")
    bound = server.servers[0].sockets[0].getsockname()
    return server, task, f"http://{bound[0]}:{bound[1]}"


def service_broker(service: str, nats_url: str, graceful_timeout: float = 10.0) -> Any:
    """The FastStream broker a service connects with: its own reply inbox, FastStream's logging
    quiet, and reconnecting for as long as it takes (a broker restarted by ``up`` or failing over
    must not leave a service closed for good; the watchdog says when the broker stays away)."""
    from faststream.nats import NatsBroker

    from .logs import quiet_stdlib_logger
    from .settings import nats_servers

    return NatsBroker(nats_servers(nats_url), logger=quiet_stdlib_logger("faststream"),
                      inbox_prefix=inbox_prefix(service), graceful_timeout=graceful_timeout,
                      max_reconnect_attempts=-1, reconnect_time_wait=0.5)


async def pull_batches(sub: Any, batch: int, stop: asyncio.Future[Any], log: Any, *,
                       on_idle: Callable[[], Awaitable[None]] | None = None, idle_wait: float = 0.25,
                       top_up_wait: float = 0.002, give_up_after: float = 30.0,
                       connection: Any | None = None) -> AsyncIterator[list[Any]]:
    """Batches from a JetStream pull subscription, until ``stop`` is done.

    A fetch of one message blocks while the stream is idle (then ``on_idle`` runs), and whatever
    else is ready joins it, up to ``batch``. A fetch that fails otherwise (a node failing over, a
    reconnect) is retried every half second; after ``give_up_after`` seconds of nothing but errors
    while connected the last one is raised, so the service stops and is restarted instead of
    idling deaf. While ``connection`` (the nats client) is reconnecting, it waits."""
    failing_since: float | None = None
    while not stop.done():
        try:
            msgs = await sub.fetch(1, timeout=idle_wait)
        except TimeoutError:
            failing_since = None
            if on_idle is not None:
                await on_idle()
            continue
        except Exception as exc:  # noqa: BLE001 - every transport error is retried, bounded
            now = time.monotonic()
            if connection is not None and not connection.is_connected and not connection.is_closed:
                failing_since = None  # the broker is away: wait for it (the watchdog says so)
                await asyncio.sleep(0.5)
                continue
            failing_since = failing_since or now
            if now - failing_since > give_up_after:
                raise
            log.warning("fetch failed; retrying", error=repr(exc))
            await asyncio.sleep(0.5)
            continue
        failing_since = None
        try:
            msgs += await sub.fetch(batch - 1, timeout=top_up_wait)
        except Exception:  # noqa: BLE001 - TimeoutError: nothing more ready; others: the next fetch retries
            pass
        yield msgs


def inbox_prefix(service: str) -> str:
    """A service's own reply-subject prefix (``_INBOX_<service>``): with the per-service NATS
    permissions of deploy/nats, no service can read another's replies (fetched messages, KV reads)."""
    return f"_INBOX_{service}"


def deliver_prefix(service: str) -> bytes:
    """The same prefix for JetStream pull subscriptions' deliver subjects."""
    return f"{inbox_prefix(service)}.".encode()
