"""Pieces every service shell repeats: serving its HTTP app inside its own loop, pulling batches,
failing for a clean restart, the wall clock that drives its timers, and an orderly stop of its
consuming tasks, subscriptions and HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .access import inbox_prefix
from .tls import ServerTls


def fail(failed: asyncio.Future[BaseException], exc: BaseException, log: Any, what: str) -> None:
    """Stop the shell for a clean restart: logged (the exception's repr, never a payload), and
    ``failed`` resolved with the first failure."""
    log.critical(f"{what} failed; stopping for a clean restart", error=repr(exc))
    if not failed.done():
        failed.set_result(exc)


def start_wall_clock(advance: Callable[[datetime], Awaitable[Any]], every_s: float,
                     failed: asyncio.Future[BaseException], log: Any) -> AsyncIOScheduler:
    """The live clock: ``advance(now)`` every ``every_s`` (the first at once; a late run is merged
    with the next, never two at a time); a failure stops the shell through ``failed``."""
    scheduler = AsyncIOScheduler(timezone=UTC)

    async def wall_tick() -> None:
        try:
            await advance(datetime.now(UTC))
        except Exception as exc:
            fail(failed, exc, log, "timer advance")

    scheduler.add_job(wall_tick, "interval", seconds=every_s, max_instances=1, coalesce=True,
                      next_run_time=datetime.now(UTC))
    scheduler.start()
    return scheduler


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


class CannotListen(OSError):
    """A listener's address is taken or not ours: the caller decides (the bridge keeps paging)."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when the host is), non-blocking, address reuse on."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def start_http(app: Any, bind: str, what: str, tls: ServerTls | None = None,
                     **config: Any) -> tuple[Any, asyncio.Task[Any], str]:
    """Serve an ASGI app on ``host:port`` (port 0: any free one) inside this loop, over TLS when
    ``tls`` is given; return the server, its task and its URL once it listens (bounded: 10 s).
    The socket is bound here, so a taken port raises ``CannotListen`` (uvicorn itself would exit
    the process)."""
    host, port = split_bind(bind)
    try:
        sock = listen_socket(host, port)
    except OSError as exc:
        raise CannotListen(exc.errno, f"{what} could not listen on {bind}: {exc.strerror}") from None
    options = {**(tls.uvicorn_options() if tls else {}), **config}
    server = _EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        sock.close()
        if task.done() and task.exception() is not None:
            raise CannotListen(0, f"{what} could not start on {bind}: {task.exception()!r}")
        raise CannotListen(0, f"{what} could not listen on {bind}")
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return server, task, f"{'https' if tls else 'http'}://{shown}:{bound[1]}"


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


def deliver_prefix(service: str) -> bytes:
    """The same prefix for JetStream pull subscriptions' deliver subjects."""
    return f"{inbox_prefix(service)}.".encode()
